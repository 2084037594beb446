"""The 3DPW benchmark end to end on a tiny synthetic set written in 3DPW's format."""
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_synthetic  # noqa: E402
import threedpw  # noqa: E402


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pw3d")
    paths = make_synthetic.make_synthetic(root, sequences=1, frames=4, seed=3)
    return root, paths


def test_files_have_3dpw_format(tiny_set):
    root, paths = tiny_set
    assert len(paths) == 1 and paths[0].parent == root / "sequenceFiles" / "test"
    with open(paths[0], "rb") as f:
        d = pickle.load(f, encoding="latin1")
    P, T = len(d["poses"]), len(d["img_frame_ids"])
    assert P == 1 and T == 4 and d["genders"][0] in ("m", "f")
    assert d["poses"][0].shape == (T, 72) and d["trans"][0].shape == (T, 3) and d["betas"][0].shape == (10,)
    assert d["poses2d"][0].shape == (T, 3, 18) and d["cam_poses"].shape == (T, 4, 4)
    assert d["jointPositions"][0].shape == (T, 72) and d["campose_valid"][0].shape == (T,)
    K = d["cam_intrinsics"]
    assert K.shape == (3, 3) and abs(K[0, 0] - 1962) < 30 and (K[0, 2], K[1, 2]) == (540.0, 960.0)
    R = d["cam_poses"][:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(R), 1.0)
    # detected points lie inside the 1080 x 1920 image, undetected ones are (0, 0, 0)
    kp = d["poses2d"][0].transpose(0, 2, 1)
    det = kp[..., 2] > 0
    assert det.mean() > 0.7
    assert (kp[det, 0] >= 0).all() and (kp[det, 0] < 1080).all() and (kp[det, 1] < 1920).all()
    assert (kp[~det] == 0).all()
    # the camera sees the person in front of it: joints have positive depth
    J = d["jointPositions"][0].reshape(T, 24, 3)
    depth = np.einsum("tij,tkj->tki", R, J)[..., 2] + d["cam_poses"][:, None, 2, 3]
    assert (depth > 1.0).all()


def test_deterministic_under_seed(tmp_path):
    a = make_synthetic.make_synthetic(tmp_path / "a", sequences=1, frames=3, seed=7)[0]
    b = make_synthetic.make_synthetic(tmp_path / "b", sequences=1, frames=3, seed=7)[0]
    c = make_synthetic.make_synthetic(tmp_path / "c", sequences=1, frames=3, seed=8)[0]
    load = lambda p: pickle.load(open(p, "rb"), encoding="latin1")  # noqa: E731
    assert np.array_equal(load(a)["poses2d"][0], load(b)["poses2d"][0])
    assert not np.array_equal(load(a)["poses2d"][0], load(c)["poses2d"][0])


def test_openpose18_to_coco17_by_name():
    kp = np.zeros((18, 3))
    kp[:, 0] = np.arange(18)
    coco = threedpw.openpose18_to_coco17(kp)
    # COCO: nose, l_eye, r_eye, l_ear, r_ear, l_sho, r_sho, ... ; OpenPose-18 indices of those
    assert coco[:, 0].tolist() == [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
    with pytest.raises(ValueError, match="18, 3"):
        threedpw.openpose18_to_coco17(np.zeros((17, 3)))


def test_benchmark_pipeline(tiny_set, tmp_path):
    root, _ = tiny_set
    res = threedpw.main(["--root", str(root), "--smpl-dir", "open", "--split", "test",
                         "--methods", "gt,spin,default", "--out", str(tmp_path)])
    s = res["summary"]
    n = s["gt"]["people"]
    assert 1 <= n <= 4 and s["spin"]["people"] == s["default"]["people"] == n
    # ground truth against itself: zero 3D error, zero 2D error against the clean projection,
    # and a 2D error against the corrupted detections of the size of the corruption
    for k in ("mpjpe14", "pa_mpjpe14", "mpjpe24", "pa_mpjpe24", "pve", "gt2d_px"):
        assert s["gt"][k] == pytest.approx(0.0, abs=1e-3), k
    assert 1.0 < s["gt"]["reproj_px"] < 40.0
    for m in ("spin", "default"):
        for k in threedpw.METRICS:
            assert math.isfinite(s[m][k]), (m, k)
        assert s[m]["people_per_s"] > 0 and s[m]["mpjpe14"] >= s[m]["pa_mpjpe14"]
    assert s["default"]["pa_mpjpe14"] < 150.0
    assert s["default"]["reproj_px"] < 80.0  # measured ~50 px on detector-like corrupted keypoints
    assert "| default |" in res["table"] and "| spin |" in res["table"]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "table.md").is_file()
    lines = (tmp_path / "per_sequence.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 3


def test_refining_a_stand_in_regressor(tiny_set):
    """INIT+CONFIG methods start the fit from another method's estimate; weights.X overrides a loss weight."""
    root, _ = tiny_set
    methods = ["noisy_gt", "noisy_gt+default", "noisy_gt+default@weights.init_pull=0"]
    res = threedpw.run_benchmark(root, methods=methods, verbose=False)
    s = res["summary"]
    # the refined fits follow the keypoints far better than the perturbed start
    assert s["noisy_gt+default"]["reproj_px"] < 0.5 * s["noisy_gt"]["reproj_px"]
    # the pull towards the start changes the result (it is active when a start is given)
    assert s["noisy_gt+default"]["pa_mpjpe14"] != s["noisy_gt+default@weights.init_pull=0"]["pa_mpjpe14"]
    method = threedpw.method_factory("noisy_gt+default@weights.init_pull=0@pose_starts=3")()
    assert method.config.pose_starts == 3
    assert [st.weights.get("init_pull") for st in method.config.stages] == [None, 0.0, 0.0]
    assert "| noisy_gt | " in res["table"] and res["table"].count(" - |") == 1  # no speed for the stand-in


def test_bad_inputs(tmp_path, tiny_set):
    with pytest.raises(FileNotFoundError, match="no sequence files"):
        threedpw.run_benchmark(tmp_path, methods=["gt"])
    root, _ = tiny_set
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        threedpw.run_benchmark(root, methods=["nope"])
    with pytest.raises(ValueError, match="not key=value"):
        threedpw.run_benchmark(root, methods=["default@pose_prior"])
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"sequence": "x"}))
    with pytest.raises(ValueError, match="not a 3DPW sequence file"):
        threedpw.load_sequence_file(bad)


def test_associate_matches_by_2d_distance():
    import detect_3dpw

    ref = np.zeros((2, 17, 3))
    ref[0, :, :2] = np.stack([np.linspace(100, 200, 17), np.linspace(100, 400, 17)], -1)
    ref[1, :, :2] = ref[0, :, :2] + [500, 0]
    ref[..., 2] = 1.0
    dets = np.stack([ref[1] + [3, -2, 0], ref[0] + [2, 2, 0], ref[0] + [900, 900, 0]])
    assert detect_3dpw.associate(dets, ref).tolist() == [1, 0]
    assert detect_3dpw.associate(dets[2:], ref).tolist() == [-1, -1]  # too far from both
    assert detect_3dpw.associate(np.zeros((0, 17, 3)), ref).tolist() == [-1, -1]


def test_detections_file_feeds_the_benchmark(tmp_path):
    """detect_3dpw over a set's images (a stand-in detector returning the true projections of the
    people in shuffled order plus a stray person), then threedpw on that file."""
    import cv2
    import detect_3dpw

    from fitlib.camera import project
    from fitlib.detect import Keypoints

    root = tmp_path / "pw3d"
    paths = make_synthetic.make_synthetic(root, sequences=2, frames=3, seed=5)
    truth = {}
    for path in paths:
        data = threedpw.load_sequence_file(path)
        seq = threedpw.build_sequence(data, "open")
        kp2d = project(seq.gt_keypoints, seq.K).numpy()
        frames = np.asarray(data["img_frame_ids"]).reshape(-1)
        for row, (p, t) in enumerate(zip(seq.person, seq.frame)):
            truth.setdefault((seq.name, int(frames[t])), {})[int(p)] = kp2d[row]
        folder = root / "imageFiles" / seq.name
        folder.mkdir(parents=True)
        for f in frames:
            cv2.imwrite(str(folder / f"image_{int(f):05d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert any(len(people) == 2 for people in truth.values())

    def stand_in_detector(image: Path) -> Keypoints:
        people = truth[(image.parent.name, int(image.stem.split("_")[1]))]
        kps = [np.concatenate([people[p], np.ones((17, 1))], -1) for p in sorted(people, reverse=True)]
        kps.append(kps[0] + [2000.0, 2000.0, 0.0])  # somebody who is not in the dataset
        kps = np.stack(kps)
        boxes = np.concatenate([kps[..., :2].min(1), kps[..., :2].max(1)], -1)
        return Keypoints(kps, boxes, np.ones(len(kps)), "coco17")

    tracks = detect_3dpw.detect_sequences(root, "test", stand_in_detector)
    for (seq_name, frame), people in truth.items():
        data = threedpw.load_sequence_file(root / "sequenceFiles" / "test" / f"{seq_name}.pkl")
        t = int(np.nonzero(np.asarray(data["img_frame_ids"]).reshape(-1) == frame)[0][0])
        for p, kp in people.items():
            np.testing.assert_allclose(tracks[f"{seq_name}/{p}"][t, :, :2], kp, atol=1e-6)
    out = tmp_path / "dets.npz"
    np.savez_compressed(out, layout=np.array("coco17"), **tracks)
    res = threedpw.run_benchmark(root, keypoints=str(out), methods=["gt"], verbose=False)
    assert res["summary"]["gt"]["reproj_px"] < 1e-3  # the file's keypoints are the true projections
