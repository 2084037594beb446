"""AMASS-style npz per track: the keys AMASS readers use, round trip, refusals."""
import numpy as np
import pytest

from fitlib.interop.amass import read_amass_npz, write_amass_npz


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    poses, trans, betas = rng.normal(0, 0.3, (7, 72)), rng.normal(0, 1, (7, 3)), rng.normal(0, 1, 10)
    path = write_amass_npz(tmp_path / "t.npz", poses, trans, betas, 25.0, frame_indices=np.arange(0, 14, 2),
                           track_id=np.array(3))
    with np.load(path, allow_pickle=False) as data:  # readable by plain numpy, no pickles
        assert data["poses"].shape == (7, 72) and data["trans"].shape == (7, 3) and data["betas"].shape == (10,)
        assert float(data["mocap_framerate"]) == 25.0 and str(data["gender"]) == "neutral"
        np.testing.assert_allclose(data["timestamps"], np.arange(0, 14, 2) / 25.0)
        assert str(data["coordinate_frame"]) == "opencv_camera" and int(data["track_id"]) == 3
    back = read_amass_npz(path)
    np.testing.assert_array_equal(back["poses"], poses)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]  # atomic: no temporary file left


def test_refusals(tmp_path):
    ok = dict(poses=np.zeros((3, 72)), trans=np.zeros((3, 3)), betas=np.zeros(10), fps=30.0)
    with pytest.raises(ValueError, match=r"poses must be \[T, 72\]"):
        write_amass_npz(tmp_path / "a.npz", **{**ok, "poses": np.zeros((3, 69))})
    with pytest.raises(ValueError, match="trans"):
        write_amass_npz(tmp_path / "a.npz", **{**ok, "trans": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="fps"):
        write_amass_npz(tmp_path / "a.npz", **{**ok, "fps": 0})
    with pytest.raises(ValueError, match="non-finite"):
        write_amass_npz(tmp_path / "a.npz", **{**ok, "betas": np.full(10, np.nan)})
    with pytest.raises(ValueError, match=".npz"):
        write_amass_npz(tmp_path / "a.pkl", **ok)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        read_amass_npz(tmp_path / "other.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.npz"]
