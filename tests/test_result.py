"""FitResult: save/load round trips, meshes, overlay."""
import numpy as np
import pytest

import fitlib
from fitlib.result import FitResult


@pytest.fixture(scope="module")
def result(data_dir):
    return fitlib.fit(data_dir / "messi5.jpg")


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_identical(result, tmp_path, suffix):
    path = result.save(tmp_path / f"r{suffix}")
    back = FitResult.load(path)
    for name in ("pose", "betas", "transl", "K", "keypoints", "joints", "reprojection_error", "fitted"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert back.layout == result.layout and back.image_size == result.image_size


def test_meshes_and_overlay(result, tmp_path, data_dir, open_model):
    paths = result.export_meshes(tmp_path, fmt="ply")
    assert len(paths) == int(result.fitted.sum()) >= 1
    img = fitlib.load_image(data_dir / "messi5.jpg")
    overlay = result.render_overlay(img)
    assert overlay.shape == img.shape
    assert np.abs(overlay.astype(int) - img.astype(int)).sum() > 0


def test_load_rejects_garbage(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(ValueError, match="lacks"):
        FitResult.load(p)
    with pytest.raises(FileNotFoundError):
        FitResult.load(tmp_path / "missing.npz")
    p.write_text('{"pose": [[0.1, ')  # a truncated file
    with pytest.raises(ValueError, match="not a readable fit result"):
        FitResult.load(p)
    z = tmp_path / "x.npz"
    z.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="not a readable fit result"):
        FitResult.load(z)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_nobody_round_trip_and_geometry(tmp_path, suffix, open_model):
    empty = fitlib.fit(np.full((120, 160, 3), 128, np.uint8))
    assert len(empty) == 0
    back = FitResult.load(empty.save(tmp_path / f"e{suffix}"))
    for name in ("pose", "betas", "transl", "keypoints", "projected", "joints"):
        assert getattr(back, name).shape == getattr(empty, name).shape, name
    assert back.vertices(open_model).shape == (0, open_model.num_vertices, 3)
    assert back.export_meshes(tmp_path / "m", body_model=open_model) == []
    again = fitlib.fit(np.full((120, 160, 3), 128, np.uint8), init=back)  # a video frame after an empty one
    assert len(again) == 0


def test_overlay_takes_what_fit_takes(result, data_dir):
    from_path = result.render_overlay(data_dir / "messi5.jpg")
    img = fitlib.load_image(data_dir / "messi5.jpg")
    assert np.array_equal(from_path, result.render_overlay(img))
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], -1)
    assert np.array_equal(result.render_overlay(rgba), from_path)
    with pytest.raises(ValueError, match="fit was made on"):
        result.render_overlay(img[:100])
