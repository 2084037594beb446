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
