"""SPIN npz: SPIN's keys, no pickles, SPIN's 24-point and BODY_25 orders filled by point name, centre and
scale from boxes as SPIN's preprocessing makes them, a real fit exported, bad input refused."""
import numpy as np
import pytest

from fitlib.body.layouts import get_layout
from fitlib.interop import export_training_file, results_to_arrays, spin_keypoints, write_spin_npz

SPIN_KEYS = {"imgname", "center", "scale", "pose", "shape", "has_smpl", "part", "openpose"}


def _kps(n, J, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(0, 400, (n, J, 2)), rng.uniform(0.2, 1, (n, J, 1))], -1)


def test_round_trip_coco17(tmp_path):
    rng = np.random.default_rng(1)
    kps = _kps(2, 17)
    kps[1, 0, 2] = 0.0  # nose not found
    pose, betas = rng.normal(0, 0.3, (2, 72)), rng.normal(0, 1, (2, 10))
    path = write_spin_npz(tmp_path / "train.npz", imgname=["a/1.jpg", "a/2.jpg"], pose=pose, betas=betas,
                          keypoints=kps, layout="coco17", boxes=[[10, 20, 110, 220], [0, 0, 50, 40]])
    with np.load(path, allow_pickle=False) as d:
        assert set(d.files) == SPIN_KEYS
        assert d["imgname"].tolist() == ["a/1.jpg", "a/2.jpg"]
        np.testing.assert_allclose(d["center"], [[60, 120], [25, 20]])
        np.testing.assert_allclose(d["scale"], [1.2 * 200 / 200, 1.2 * 50 / 200])
        np.testing.assert_allclose(d["pose"], pose)
        np.testing.assert_allclose(d["shape"], betas)
        assert d["has_smpl"].tolist() == [1.0, 1.0]
        part, op = d["part"], d["openpose"]
    assert part.shape == (2, 24, 3) and op.shape == (2, 25, 3)
    # SPIN's order (constants.JOINT_NAMES[25:]): right ankle first, nose at 19, right ear last
    np.testing.assert_allclose(part[:, 0], kps[:, 16])
    np.testing.assert_allclose(part[:, 11], kps[:, 9])  # left wrist
    np.testing.assert_allclose(part[0, 19], kps[0, 0])
    assert part[1, 19].tolist() == [0, 0, 0]  # confidence 0 -> (0, 0, 0)
    np.testing.assert_allclose(part[:, 23], kps[:, 4])
    assert not part[:, 12:19].any()  # LSP neck / head top, MPII, H36M points: no COCO counterpart
    np.testing.assert_allclose(op[:, 2], kps[:, 6])  # OpenPose right shoulder
    assert not op[:, 1].any() and not op[:, 8].any()  # OpenPose neck and mid-hip are not COCO points
    assert not op[:, 19:].any()  # no feet in COCO-17


def test_body25_fills_openpose_and_center_scale(tmp_path):
    kps = _kps(1, 25)
    part, op = spin_keypoints(kps, "body25")
    np.testing.assert_allclose(op, kps)
    names = get_layout("body25").names
    np.testing.assert_allclose(part[0, 0], kps[0, names.index("right_ankle")])
    path = write_spin_npz(tmp_path / "x.npz", imgname=["x.jpg"], pose=np.zeros((1, 72)), betas=np.zeros((1, 10)),
                          keypoints=kps, layout="body25", center=[[5.0, 6.0]], scale=[0.7], has_smpl=[False])
    with np.load(path) as d:
        assert d["center"].tolist() == [[5.0, 6.0]] and d["scale"].tolist() == [0.7] and d["has_smpl"][0] == 0


def test_unfitted_rows_are_zero(tmp_path):
    pose = np.full((2, 72), 0.1)
    pose[1] = np.nan
    path = write_spin_npz(tmp_path / "x.npz", imgname=["a", "b"], pose=pose, betas=np.zeros((2, 10)),
                          keypoints=_kps(2, 17), layout="coco17")
    with np.load(path) as d:
        assert d["has_smpl"].tolist() == [1.0, 0.0] and not d["pose"][1].any() and np.isfinite(d["pose"]).all()
        assert (d["scale"] > 0).all()  # default box: the keypoints' extent


@pytest.mark.parametrize("change, message", [
    (dict(boxes=[[0, 0, 1, 1]], center=[[0, 0]], scale=[1]), "not both"),
    (dict(center=[[0, 0]]), "go together"),
    (dict(center=[[0, 0]], scale=[0.0]), "scale must be positive"),
    (dict(expand=-1), "expand must be a positive number"),
    (dict(keypoints=np.full((1, 17, 3), 2.0)), r"confidences .* in \[0, 1\]"),
    (dict(betas=np.zeros((2, 10))), r"betas must have shape \[1, 10\]"),
    (dict(layout="nope"), "unknown keypoint layout"),
])
def test_bad_input(tmp_path, change, message):
    args = {**dict(imgname=["a.jpg"], pose=np.zeros((1, 72)), betas=np.zeros((1, 10)), keypoints=_kps(1, 17),
                   layout="coco17"), **change}
    with pytest.raises(ValueError, match=message):
        write_spin_npz(tmp_path / "x.npz", **args)


def test_real_fit_exported(messi, tmp_path):
    image, result = messi
    arrays = results_to_arrays([result, result], ["m/a.jpg", "m/b.jpg"])
    assert len(arrays) == 2 * len(result) and arrays.person_index.tolist() == list(range(len(result))) * 2
    path = export_training_file(tmp_path / "spin.npz", arrays, "spin", expand=1.0)
    with np.load(path, allow_pickle=False) as d:
        assert set(d.files) == SPIN_KEYS and len(d["imgname"]) == 2 * len(result)
        np.testing.assert_allclose(d["pose"][: len(result)], result.pose)
        box = arrays.boxes[0]
        np.testing.assert_allclose(d["scale"][0], max(box[2] - box[0], box[3] - box[1]) / 200)
        assert (d["part"][..., 2] > 0).sum() == 2 * (result.keypoints[..., 2] > 0).sum()
