from pathlib import Path

import cv2
import numpy as np
import pytest

from fitlib.io.images import load_image

DATA = Path(__file__).parents[1] / "data"


def test_load_jpeg_is_rgb():
    img = load_image(DATA / "messi5.jpg")
    assert img.shape == (342, 548, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    # the grass at the bottom is green: G dominates R and B in RGB order
    grass = img[-40:, :100].reshape(-1, 3).mean(0)
    assert grass[1] > grass[0] + 20 and grass[1] > grass[2] + 20


def test_load_grayscale_png_gives_three_equal_channels():
    img = load_image(str(DATA / "basketball1.png"))
    assert img.shape == (480, 640, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])


def test_arrays(tmp_path):
    rgb = load_image(DATA / "astronaut.jpg")
    assert np.array_equal(load_image(rgb), rgb) and load_image(rgb) is not rgb
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    assert np.array_equal(load_image(rgba), rgb)
    gray = rgb[..., 1]
    assert np.array_equal(load_image(gray)[..., 2], gray)
    assert np.array_equal(load_image(gray[..., None]), load_image(gray))
    # an RGBA file: alpha dropped, colours kept in RGB order
    path = tmp_path / "rgba.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert np.array_equal(load_image(path), rgb)


@pytest.mark.parametrize("bad", [
    np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0), np.uint8), np.zeros((4, 4, 2), np.uint8),
    np.zeros((4, 4, 3), np.float32), np.zeros((2, 4, 4, 3), np.uint8), [[1, 2], [3, 4]],
])
def test_bad_arrays_raise(bad):
    with pytest.raises(ValueError):
        load_image(bad)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_image(empty)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    with pytest.raises(ValueError, match="decode"):
        load_image(corrupt)
    with pytest.raises(ValueError, match="directory"):
        load_image(tmp_path)
