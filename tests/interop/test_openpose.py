"""OpenPose JSON frames: read, ordered as a folder, refused when broken (naming file and field), and fitted
through ``fitlib.fit`` and ``fitlib fit --keypoints``."""
import json
import os

import numpy as np
import pytest

import fitlib
from fitlib.body.layouts import convert_keypoints
from fitlib.cli import main
from fitlib.interop import foreign_keypoints, list_openpose_files, read_openpose, read_openpose_folder


def _person(kps, pid=-1):
    return {"person_id": [pid], "pose_keypoints_2d": np.asarray(kps, float).reshape(-1).tolist(),
            "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []}


def _write(path, people, version=1.3):
    path.write_text(json.dumps({"version": version, "people": people}))
    return path


def test_reads_body25_people(tmp_path):
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 500, (25, 2)), rng.uniform(0.1, 1, (25, 1))], 1)
    b = a + [3.0, 4.0, 0.0]
    a[7] = [0, 0, 0]  # a point OpenPose did not find
    b[0, 2] = 1.0004  # a confidence a hair above 1 is clipped
    p = _write(tmp_path / "walk_000000000012_keypoints.json", [_person(a, 4), _person(b)])
    frame = read_openpose(p)
    assert frame.layout == "body25" and frame.keypoints.shape == (2, 25, 3) and len(frame) == 2
    np.testing.assert_allclose(frame.keypoints[0], a)
    assert frame.keypoints[1, 0, 2] == 1.0
    assert frame.person_ids.tolist() == [4, -1]
    assert frame.name == "walk_000000000012" and frame.frame == 12
    kp = frame.to_keypoints()
    assert kp.layout == "body25" and kp.boxes.shape == (2, 4)
    found = a[a[:, 2] > 0]
    np.testing.assert_allclose(kp.boxes[0], [*found[:, :2].min(0), *found[:, :2].max(0)])
    np.testing.assert_allclose(kp.scores[0], found[:, 2].mean())


def test_eighteen_point_model_and_nobody(tmp_path):
    p = _write(tmp_path / "a_keypoints.json", [_person(np.ones((18, 3)) * 0.5)])
    assert read_openpose(p).layout == "openpose18" and read_openpose(p).keypoints.shape == (1, 18, 3)
    empty = read_openpose(_write(tmp_path / "b_keypoints.json", []))
    assert empty.keypoints.shape == (0, 25, 3) and empty.frame is None and empty.name == "b"
    # parsed data is accepted as it is
    assert read_openpose({"version": 1.3, "people": [_person(np.ones((25, 3)))]}).keypoints.shape == (1, 25, 3)


def test_folder_in_frame_order(tmp_path):
    for n in (10, 2, 1, 100):
        _write(tmp_path / f"clip_{n:012d}_keypoints.json", [_person(np.full((25, 3), n / 1000.0))])
    (tmp_path / ".clip_000000000003_keypoints.json").write_text("garbage")  # hidden: not listed
    (tmp_path / "notes.txt").write_text("not json")
    frames = read_openpose_folder(tmp_path)
    assert [f.frame for f in frames] == [1, 2, 10, 100]
    assert [p.name for p in list_openpose_files(tmp_path)][0] == "clip_000000000001_keypoints.json"
    (tmp_path / "clip_000000000005_keypoints.json").write_text("{")
    with pytest.raises(ValueError, match="clip_000000000005_keypoints.json is not readable JSON"):
        read_openpose_folder(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="no .json files"):
        read_openpose_folder(tmp_path / "sub")
    with pytest.raises(ValueError, match="does not exist"):
        read_openpose_folder(tmp_path / "missing")


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe not text", "not UTF-8"),
    (b"{\"people\": [", "not readable JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b"{\"version\": 1.3}", "'people' must be a list"),
    (b"{\"people\": {\"a\": 1}}", "'people' must be a list"),
    (b"{\"people\": [3]}", r"people\[0\] must be an object"),
    (b"{\"people\": [{\"face_keypoints_2d\": []}]}", r"people\[0\] has no 'pose_keypoints_2d'"),
    (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 74}]}).encode(), r"pose_keypoints_2d must hold 75 numbers.*got 74"),
    (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 74 + ["x"]}]}).encode(), r"pose_keypoints_2d must hold numbers only"),
    (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 74 + [True]}]}).encode(), r"numbers only, found bool"),
    (b"{\"people\": [{\"pose_keypoints_2d\": [" + b", ".join([b"1.0"] * 74 + [b"NaN"]) + b"]}]}", "'NaN', which is not a JSON number"),
    (b"{\"people\": [{\"pose_keypoints_2d\": [" + b", ".join([b"1.0"] * 74 + [b"1e999"]) + b"]}]}", "non-finite"),
    (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 74 + [-0.5]}]}).encode(), "negative confidence"),
    (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 75}, {"pose_keypoints_2d": [1.0] * 54}]}).encode(),
     r"people\[1\].*one OpenPose model"),
    (json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 75, "person_id": "me"}]}).encode(), r"person_id must be a whole"),
    (b"[" * 100000 + b"]" * 100000, "not readable JSON"),
])
def test_broken_files_name_file_and_field(tmp_path, content, message):
    p = tmp_path / "frame_keypoints.json"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_openpose(p)
    assert str(p) in str(info.value)


def test_huge_and_special_files_refused(tmp_path):
    p = _write(tmp_path / "big_keypoints.json", [_person(np.ones((25, 3)))] * 50)
    with pytest.raises(ValueError, match="MiB"):
        read_openpose(p, max_bytes=1000)
    with pytest.raises(ValueError, match="is a folder"):
        read_openpose(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe_keypoints.json")
        with pytest.raises(ValueError, match="FIFO"):
            read_openpose(tmp_path / "pipe_keypoints.json")
    with pytest.raises(FileNotFoundError):
        read_openpose(tmp_path / "missing.json")


def test_fit_takes_openpose_path_dict_and_cli(messi, tmp_path):
    image, result = messi
    body25 = convert_keypoints(result.keypoints, "coco17", "body25")
    body25 = np.where(np.isfinite(body25), body25, 0.0)  # OpenPose writes (0, 0, 0) for points it lacks
    data = {"version": 1.3, "people": [_person(k) for k in body25]}
    p = tmp_path / "messi5_keypoints.json"
    p.write_text(json.dumps(data))
    assert foreign_keypoints(str(p)).layout == "body25"
    assert foreign_keypoints(tmp_path / "other.npy") is None and foreign_keypoints({"predictions": []}) is None
    for given in (p, data):
        fit = fitlib.fit(image, given)
        assert fit.layout == "body25" and fit.keypoints.shape == (len(result), 25, 3)
        assert fit.fitted.all() and np.nanmax(fit.reprojection_error) < 25.0
    out = tmp_path / "out"
    assert main(["fit", str(image), "--out", str(out), "--keypoints", str(p), "--config", "fast"]) == 0
    saved = json.loads((out / "messi5.json").read_text())
    assert saved["layout"] == "body25" and saved["provenance"]["keypoints"]["file"] == p.name
    p.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 70}]}))
    assert main(["fit", str(image), "--out", str(out), "--keypoints", str(p), "--overwrite"]) == 2
