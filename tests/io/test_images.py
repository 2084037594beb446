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


def _huge_png(path, width: int, height: int) -> None:
    """A valid grayscale PNG of width x height black pixels, written row by row (a 20000 x 20000 one is
    about 1 MB on disk and 400 MB decoded, 1.2 GB as RGB)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row, parts = zlib.compressobj(9), b"\x00" * (width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    """A 20000 x 20000 PNG (1 MB on disk) is refused from its header: the process does not grow (decoding it
    took 2.4 GB here)."""
    import subprocess
    import sys

    path = tmp_path / "huge.png"
    _huge_png(path, 20000, 20000)
    assert path.stat().st_size < 2_000_000
    code = ("import resource, sys\nfrom fitlib.io.images import load_image\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_image(sys.argv[1])\nexcept ValueError as exc:\n    print(exc)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    message, grown_mb = out.stdout.strip().splitlines()
    assert "20000x20000 px (400 megapixels), more than the limit of 50 megapixels" in message
    assert int(grown_mb) < 50
    small = tmp_path / "small.png"
    _huge_png(small, 300, 200)
    assert load_image(small).shape == (200, 300, 3)
    with pytest.raises(ValueError, match="limit of 0.05 megapixels"):
        load_image(small, max_pixels=50_000)
    assert load_image(path.parent / "small.png", max_pixels=None).shape == (200, 300, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tif", ".ppm", ".pgm"])
def test_header_sizes(suffix):
    from fitlib.io.images import header_size

    img = np.zeros((37, 53, 3), np.uint8)
    ok, buf = cv2.imencode(suffix, img[..., 0] if suffix == ".pgm" else img)
    assert ok and header_size(buf.tobytes()) == (53, 37)
    assert header_size(buf.tobytes()[:6]) is None  # cut short: unknown, decoded and checked after


def test_fifo_is_refused_without_blocking(tmp_path):
    import os
    import threading

    fifo = tmp_path / "a.jpg"
    os.mkfifo(fifo)
    errors = []

    def read():
        try:
            load_image(fifo)
        except ValueError as exc:
            errors.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "load_image blocked on a FIFO"
    assert errors and "FIFO" in errors[0]


def test_save_image_is_atomic(tmp_path, monkeypatch):
    import errno
    import os

    from fitlib.io import images

    img = load_image(DATA / "messi5.jpg")
    path = images.save_image(img, tmp_path / "o.png")
    assert np.array_equal(load_image(path), img)
    with pytest.raises(ValueError, match="encode"):
        images.save_image(img, tmp_path / "o.unknown")

    def full_disk(fd):  # the data is written, then syncing it fails as on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        images.save_image(img, tmp_path / "full.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]  # no partial file, no temporary file
