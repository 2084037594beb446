"""The 3DPW benchmark end to end on a tiny synthetic set written in 3DPW's format (the library's runner,
and the two scripts under benchmarks/ that wrap it)."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fitlib.datasets import threedpw
from fitlib.datasets.synthetic import make_synthetic
from fitlib.evaluation.benchmark import METRICS, run_benchmark
from fitlib.evaluation.methods import method_factory

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import depth_signs  # noqa: E402  (benchmarks/depth_signs.py)
import detect_3dpw  # noqa: E402
import feet_detections  # noqa: E402  (benchmarks/feet_detections.py)
import make_standin_model  # noqa: E402  (benchmarks/make_standin_model.py)
import threedpw as threedpw_script  # noqa: E402  (benchmarks/threedpw.py, the command line)


def test_benchmark_pipeline(tiny_3dpw, tmp_path):
    root, _ = tiny_3dpw
    res = threedpw_script.main(["--root", str(root), "--smpl-dir", "open", "--split", "test",
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
        for k in METRICS:
            assert math.isfinite(s[m][k]), (m, k)
        assert s[m]["people_per_s"] > 0 and s[m]["mpjpe14"] >= s[m]["pa_mpjpe14"]
    assert s["default"]["pa_mpjpe14"] < 150.0
    assert s["default"]["reproj_px"] < 80.0  # measured ~50 px on detector-like corrupted keypoints
    assert "| default |" in res["table"] and "| spin |" in res["table"]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "table.md").is_file()
    lines = (tmp_path / "per_sequence.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 3


def test_refining_a_stand_in_regressor(tiny_3dpw):
    """INIT+CONFIG methods start the fit from another method's estimate; overrides reach nested settings
    (refine.weights.X), a loss weight in every stage (weights.X), or turn the refine path off (refine=null)."""
    root, _ = tiny_3dpw
    methods = ["noisy_gt", "noisy_gt+default", "noisy_gt+default@refine.weights.init_pull=0",
               "noisy_gt+default@refine=null"]
    res = run_benchmark(root, methods=methods, verbose=False)
    s = res["summary"]
    # the refined fits follow the keypoints far better than the perturbed start
    assert s["noisy_gt+default"]["reproj_px"] < 0.5 * s["noisy_gt"]["reproj_px"]
    # the pull towards the start changes the result (it is active when a start is given), so do the stages
    assert s["noisy_gt+default"]["pa_mpjpe14"] != s["noisy_gt+default@refine.weights.init_pull=0"]["pa_mpjpe14"]
    assert s["noisy_gt+default"]["pa_mpjpe14"] != s["noisy_gt+default@refine=null"]["pa_mpjpe14"]
    method = method_factory("noisy_gt+default@weights.init_pull=0@pose_starts=3@refine.max_iterations=4")()
    assert method.config.pose_starts == 3 and method.config.refine.max_iterations == 4
    assert [st.weights.get("init_pull") for st in method.config.stages] == [None, 0.0, 0.0]
    assert "| noisy_gt | " in res["table"] and res["table"].count(" - |") == 1  # no speed for the stand-in
    with pytest.raises(ValueError, match="'nope' is not a section"):
        method_factory("default@nope.x=1")


def test_methods_fit_with_another_model(tiny_3dpw, tmp_path):
    """--fit-model: the ground truth stays the open model's, the methods fit with (and are scored as) another
    model's bodies: the reshaped stand-in, whose betas mean other bodies, puts the ground-truth parameters off
    the truth, and a fit with it still follows the keypoints."""
    root, _ = tiny_3dpw
    standin = make_standin_model.main(["--kind", "reshaped", "--out", str(tmp_path / "standin.pkl")])
    res = threedpw_script.main(["--root", str(root), "--smpl-dir", "open", "--fit-model", str(standin),
                                "--split", "test", "--methods", "gt,default"])
    s = res["summary"]
    assert res["fit_model"] == str(standin)
    assert s["gt"]["pa_mpjpe14"] > 2.0 and s["gt"]["gt2d_px"] > 1.0  # the same parameters, another body
    assert math.isfinite(s["gt"]["pve"])  # the same mesh topology
    assert s["default"]["reproj_px"] < 80.0 and s["default"]["pa_mpjpe14"] < 150.0


def test_a_feet_detections_file_reaches_the_methods_in_its_layout(tiny_3dpw, tmp_path):
    """A coco17_feet detections file: the sequence, the ground-truth points and the methods keep its 23 points (the
    feet reach the fit), and its COCO-17 part is the set's own poses2d."""
    root, files = tiny_3dpw
    path = feet_detections.main(["--root", str(root), "--out", str(tmp_path / "feet.npz")])
    with np.load(path) as f:
        kp = {k: f[k] for k in f.files if k != "layout"}
        assert str(f["layout"]) == "coco17_feet"
    data = threedpw.load_sequence_file(files[0])
    seq = threedpw.build_sequence(data, "open", kp, layout="coco17_feet")
    plain = threedpw.build_sequence(data, "open")
    assert seq.layout == "coco17_feet" and seq.keypoints.shape[1:] == (23, 3) and seq.gt_keypoints.shape[1] == 23
    torch.testing.assert_close(seq.keypoints[:, :17], plain.keypoints, equal_nan=True)
    assert (seq.keypoints[:, 17:, 2] > 0).any()
    res = run_benchmark(root, keypoints=str(path), methods=["gt", "default"], verbose=False)
    s = res["summary"]
    assert s["gt"]["gt2d_px"] == pytest.approx(0.0, abs=1e-3) and 0.5 < s["gt"]["reproj_px"] < 40.0
    assert s["default"]["reproj_px"] < 80.0 and math.isfinite(s["default"]["pa_mpjpe14"])


def test_bad_inputs(tmp_path, tiny_3dpw):
    with pytest.raises(FileNotFoundError, match="no sequence files"):
        run_benchmark(tmp_path, methods=["gt"])
    root, _ = tiny_3dpw
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_benchmark(root, methods=["nope"])
    with pytest.raises(ValueError, match="not key=value"):
        run_benchmark(root, methods=["default@pose_prior"])


def test_detections_file_feeds_the_benchmark(tmp_path):
    """detect_3dpw over a set's images (a stand-in detector returning the true projections of the
    people in shuffled order plus a stray person), then threedpw on that file."""
    import cv2

    from fitlib.camera import project
    from fitlib.detection import Keypoints

    root = tmp_path / "pw3d"
    paths = make_synthetic(root, sequences=2, frames=3, seed=5)
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
    res = run_benchmark(root, keypoints=str(out), methods=["gt"], verbose=False)
    assert res["summary"]["gt"]["reproj_px"] < 1e-3  # the file's keypoints are the true projections


def test_depth_sign_variants_mirror_a_segment_and_keep_its_2d(open_model):
    """benchmarks/depth_signs.py: each variant of a limb mirrors its segments in depth (their depth shares change
    sign), moves the limb's 2D by a few pixels at most and leaves the rest of the body untouched."""
    from fitlib.camera import project
    from fitlib.datasets.mocap import load_mocap

    clip = load_mocap("train")["walk"]
    n = 6
    pose = torch.as_tensor(clip.poses[::len(clip.poses) // n][:n], dtype=torch.float32).clone()
    pose[:, :3] = torch.tensor([np.pi, 0.0, 0.0])  # facing the camera, upright (OpenCV axes)
    betas, transl = torch.zeros(n, 10), torch.tensor([[0.0, 0.2, 4.0]]).expand(n, 3)
    K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]])
    # bend the left elbow and knee so that both segments of those limbs leave the image plane
    pose[:, 3 * 16:3 * 16 + 3] = torch.tensor([0.0, 0.6, 0.0])
    joints = open_model(pose, betas, transl).joints
    share, xy = depth_signs.depth_share(joints), project(joints, K)
    tall = float((xy[..., 1].max(-1).values - xy[..., 1].min(-1).values).min())  # px, ~400
    for li, limb in enumerate(depth_signs.LIMBS[:2]):
        variants = depth_signs.limb_variants(open_model, pose, betas, transl, limb)
        assert torch.equal(variants[0], pose)
        for k, (up, low) in enumerate([(False, True), (True, False), (True, True)], start=1):
            j = open_model(variants[k], betas, transl).joints
            s_k = depth_signs.depth_share(j)
            expect = share.clone()
            if up:
                expect[:, 2 * li] = -share[:, 2 * li]
            if low:
                expect[:, 2 * li + 1] = -share[:, 2 * li + 1]
            assert torch.allclose(s_k, expect, atol=0.06), (limb, k)
            moved = (project(j, K) - xy)[:, list(limb)].norm(dim=-1)  # px
            # exact under weak perspective; in perspective off by the segment's image length x its depth change / distance
            assert moved.max() < 0.06 * tall and moved.mean() < 0.02 * tall
            others = [i for i in range(24) if not _below(i, limb[0])]
            assert torch.allclose(j[:, others], joints[:, others], atol=1e-5)


def _below(joint: int, ancestor: int) -> bool:
    """Whether ``joint`` is in the kinematic subtree under ``ancestor`` (not ``ancestor`` itself)."""
    from fitlib.body.skeleton import SMPL_PARENTS

    while joint >= 0:
        joint = SMPL_PARENTS[joint]
        if joint == ancestor:
            return True
    return False
