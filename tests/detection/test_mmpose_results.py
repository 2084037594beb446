import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fitlib.detection import detect
from fitlib.body.layouts import COCO17_NAMES, FEET_NAMES
from fitlib.detection.mmpose_backend import run_mmpose
from fitlib.detection.mmpose_results import keypoints_from_mmpose

DATA = Path(__file__).parents[1] / "data"
HAS_MMPOSE = importlib.util.find_spec("mmpose") is not None


@pytest.fixture(scope="module")
def real():
    """Keypoints detected on a real photo (2 people): the data the mmpose structures carry."""
    k = detect(DATA / "basketball1.png")
    assert len(k) == 2
    return k


def _persons(k, tuple_bbox=True):
    """split_instances-style per-person dicts (bbox as mmpose writes it: a 1-tuple of a list)."""
    return [dict(keypoints=k.keypoints[i, :, :2].tolist(), keypoint_scores=k.keypoints[i, :, 2].tolist(),
                 bbox=(k.boxes[i].tolist(),) if tuple_bbox else k.boxes[i].tolist(),
                 bbox_score=float(k.scores[i])) for i in range(len(k))]


def _same(a, b):
    assert a.layout == b.layout and len(a) == len(b)
    assert np.allclose(a.keypoints, b.keypoints) and np.allclose(a.boxes, b.boxes) and np.allclose(a.scores, b.scores)


def _coco_meta():  # dataset_meta as json_tricks writes it (numpy arrays encoded)
    return {"dataset_name": "coco", "num_keypoints": 17,
            "keypoint_id2name": {str(i): n for i, n in enumerate(COCO17_NAMES)},
            "sigmas": {"__ndarray__": [0.026] * 17, "dtype": "float32", "shape": [17]}}


def test_inferencer_result_dict(real):
    result = {"visualization": [], "predictions": [_persons(real)]}
    _same(keypoints_from_mmpose(result), real)
    two_images = {"predictions": [_persons(real), _persons(real.select(1))]}
    with pytest.raises(ValueError, match="frame"):
        keypoints_from_mmpose(two_images)
    _same(keypoints_from_mmpose(two_images, frame=1), real.select(1))


def test_person_dict_list_and_pred_out_dir_file(real, tmp_path):
    _same(keypoints_from_mmpose(_persons(real, tuple_bbox=False)), real)
    path = tmp_path / "basketball1.json"
    path.write_text(json.dumps(_persons(real), indent="  "))
    _same(keypoints_from_mmpose(path), real)
    _same(keypoints_from_mmpose(str(path)), real)


def test_demo_script_json_image_and_video(real, tmp_path):
    path = tmp_path / "results_basketball1.json"
    path.write_text(json.dumps({"meta_info": _coco_meta(), "instance_info": _persons(real)}, indent="\t"))
    _same(keypoints_from_mmpose(path), real)
    video = {"meta_info": _coco_meta(), "instance_info": [
        {"frame_id": 1, "instances": _persons(real)}, {"frame_id": 2, "instances": []}]}
    path.write_text(json.dumps(video))
    with pytest.raises(ValueError, match="2 frames"):
        keypoints_from_mmpose(path)
    _same(keypoints_from_mmpose(path, frame=0), real)
    empty = keypoints_from_mmpose(path, frame=1)
    assert len(empty) == 0 and empty.keypoints.shape == (0, 17, 3)


def test_pose_data_sample_and_inference_topdown_list(real):
    inst = SimpleNamespace(keypoints=real.keypoints[..., :2], keypoint_scores=real.keypoints[..., 2],
                           bboxes=real.boxes, bbox_scores=real.scores)
    sample = SimpleNamespace(pred_instances=inst, metainfo={"ori_shape": (480, 640)})
    out = keypoints_from_mmpose(sample)
    _same(out, real)
    assert out.image_size == (480, 640)
    _same(keypoints_from_mmpose(inst), real)
    # inference_topdown: one sample per box, possibly holding torch tensors
    per_box = [SimpleNamespace(pred_instances=SimpleNamespace(
        keypoints=torch.tensor(real.keypoints[i:i + 1, :, :2]), keypoint_scores=torch.tensor(real.keypoints[i:i + 1, :, 2]),
        bboxes=real.boxes[i:i + 1], bbox_scores=real.scores[i:i + 1])) for i in range(2)]
    _same(keypoints_from_mmpose(per_box), real)


def test_rtmpose_scores_are_clipped_to_unit_interval(real):
    people = _persons(real)
    people[0]["keypoint_scores"] = [1.17, -0.2] + [0.4] * 15
    out = keypoints_from_mmpose(people)
    assert np.allclose(out.keypoints[0, :3, 2], [1.0, 0.0, 0.4])


def _wholebody(real, k=133):
    rng = np.random.default_rng(0)
    kps = rng.uniform(0, 400, (len(real), k, 2))
    scores = rng.uniform(0, 1, (len(real), k))
    kps[:, :17], scores[:, :17] = real.keypoints[..., :2], real.keypoints[..., 2]
    return kps, scores


def test_wholebody_by_count_and_by_names(real):
    kps, scores = _wholebody(real)
    out = keypoints_from_mmpose({"keypoints": kps, "keypoint_scores": scores})
    assert out.layout == "coco17_feet" and out.keypoints.shape == (2, 23, 3)
    assert np.allclose(out.keypoints[..., :2], kps[:, :23]) and np.allclose(out.keypoints[:, :17], real.keypoints)
    assert keypoints_from_mmpose({"keypoints": kps, "keypoint_scores": scores}, layout="coco17").layout == "coco17"
    # the same model with its metadata, in a shuffled order: mapped by name
    perm = np.random.default_rng(1).permutation(133)
    names = list(COCO17_NAMES) + list(FEET_NAMES) + [f"face-{i}" for i in range(110)]
    meta = {"keypoint_id2name": {int(j): names[i] for j, i in enumerate(perm)}}
    shuffled = {"keypoints": kps[:, perm], "keypoint_scores": scores[:, perm]}
    assert np.allclose(keypoints_from_mmpose(shuffled, meta=meta).keypoints, out.keypoints)


def test_halpe26_feet_reordered(real):
    kps, scores = _wholebody(real, 26)
    out = keypoints_from_mmpose({"keypoints": kps, "keypoint_scores": scores})
    assert out.layout == "coco17_feet"
    # Halpe: 20 L big toe, 21 R big toe, 22 L small toe, 23 R small toe, 24 L heel, 25 R heel
    assert np.allclose(out.keypoints[:, 17:, :2], kps[:, [20, 22, 24, 21, 23, 25]])


def test_bad_inputs_raise(real, tmp_path):
    with pytest.raises(ValueError, match="21 mmpose keypoints"):  # a hand model
        keypoints_from_mmpose({"keypoints": np.zeros((1, 21, 2)), "keypoint_scores": np.zeros((1, 21))})
    hand_meta = {"keypoint_id2name": {i: f"thumb{i}" for i in range(17)}}
    with pytest.raises(ValueError, match="COCO body joints"):
        keypoints_from_mmpose(_persons(real), meta=hand_meta)
    with pytest.raises(ValueError, match="no foot"):
        keypoints_from_mmpose(_persons(real), layout="coco17_feet")
    with pytest.raises(ValueError, match="disagree"):
        keypoints_from_mmpose({"keypoints": np.zeros((2, 17, 2)), "keypoint_scores": np.zeros((2, 16))})
    with pytest.raises(ValueError, match="unrecognised"):
        keypoints_from_mmpose({"people": []})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        keypoints_from_mmpose(bad)


@pytest.mark.skipif(HAS_MMPOSE, reason="mmpose installed")
def test_run_mmpose_without_mmpose_says_how_to_install():
    with pytest.raises(ImportError, match="scripts/install_mmpose.sh"):
        run_mmpose(np.zeros((8, 8, 3), np.uint8), "cfg.py", "ckpt.pth")


# --- each person and field checked, with a ValueError naming it -------------------------------------------

def test_every_person_is_checked(real):
    people = _persons(real)
    del people[1]["keypoint_scores"]
    with pytest.raises(ValueError, match="person 1 has no 'keypoint_scores'"):
        keypoints_from_mmpose(people)
    people = _persons(real)
    people[1]["keypoints"], people[1]["keypoint_scores"] = people[1]["keypoints"][:5], people[1]["keypoint_scores"][:5]
    with pytest.raises(ValueError, match="person 1 has 5 keypoints but person 0 has 17"):
        keypoints_from_mmpose(people)
    people = _persons(real)
    people[1]["keypoint_scores"] = people[1]["keypoint_scores"][:16]
    with pytest.raises(ValueError, match="person 1: 17 'keypoints' but 16 'keypoint_scores'"):
        keypoints_from_mmpose(people)
    people = _persons(real)
    people[0]["keypoints"] = np.ravel(people[0]["keypoints"]).tolist()
    with pytest.raises(ValueError, match=r"person 0: 'keypoints' must be \[K\]\[2\]"):
        keypoints_from_mmpose(people)
    people = _persons(real)
    people[1]["keypoints"][3] = ["a", "b"]
    with pytest.raises(ValueError, match="person 1: 'keypoints' is not a numeric array"):
        keypoints_from_mmpose(people)
    people = _persons(real)
    people[1]["keypoints"][0] = [float("nan"), 3.0]  # a detected point (score > 0) without a position
    people[1]["keypoint_scores"][0] = 0.9
    with pytest.raises(ValueError, match="person 1: keypoints with a score above 0 must have finite"):
        keypoints_from_mmpose(people)


def test_box_fields_are_checked_per_person(real):
    people = _persons(real)
    people[1]["bbox_score"] = []
    with pytest.raises(ValueError, match="person 1: 'bbox_score' must be one number, got 0"):
        keypoints_from_mmpose(people)
    people = _persons(real)
    people[0]["bbox"] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="person 0: 'bbox' must be 4 numbers"):
        keypoints_from_mmpose(people)
    people = _persons(real)  # mmpose's forms: a 1-tuple of a list, a 1-element score list
    people[0]["bbox_score"] = [people[0]["bbox_score"]]
    _same(keypoints_from_mmpose(people), real)


def test_keypoint_names_beyond_the_keypoint_count(real, tmp_path):
    """COCO-WholeBody metadata (feet at 17-22) saved with 17-point COCO data: the names do not fit."""
    names = list(COCO17_NAMES) + list(FEET_NAMES) + [f"face-{i}" for i in range(110)]
    wholebody = {"dataset_name": "coco_wholebody", "num_keypoints": 133,
                 "keypoint_id2name": {str(i): n for i, n in enumerate(names)}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta_info": wholebody, "instance_info": _persons(real)}))
    with pytest.raises(ValueError, match=r"indices \(left_big_toe: 17.*data has 17 keypoints per person"):
        keypoints_from_mmpose(path)
    with pytest.raises(ValueError, match="data has 17 keypoints"):
        keypoints_from_mmpose(_persons(real),
                              meta={"keypoint_id2name": {i + 100: n for i, n in enumerate(COCO17_NAMES)}})
    with pytest.raises(ValueError, match="integer indices"):
        keypoints_from_mmpose(_persons(real), meta={"keypoint_id2name": {n: n for n in COCO17_NAMES}})
    # a frame with nobody has no keypoint count to contradict the names: an empty result in their layout
    empty = keypoints_from_mmpose({"meta_info": wholebody, "instance_info": []})
    assert len(empty) == 0 and empty.layout == "coco17_feet" and empty.keypoints.shape == (0, 23, 3)
    # the same metadata with 133-point data is fine
    kps, scores = _wholebody(real)
    out = keypoints_from_mmpose({"keypoints": kps, "keypoint_scores": scores}, meta=wholebody)
    assert out.layout == "coco17_feet" and np.allclose(out.keypoints[:, :17], real.keypoints)


def test_bad_json_tricks_array_is_a_value_error(real):
    people = _persons(real)
    people[0]["keypoints"] = {"__ndarray__": "b64:AAAA", "dtype": "float32", "shape": [17, 2]}
    with pytest.raises(ValueError, match="json_tricks"):
        keypoints_from_mmpose({"instance_info": people})


# --- fitlib's own detection output (`fitlib detect --out`) ----------------------------------------------------

@pytest.fixture(scope="module")
def astronaut():
    k = detect(DATA / "astronaut.jpg")
    assert len(k) >= 1
    return k


def test_fitlib_detect_json_round_trip(astronaut, tmp_path):
    """fitlib.detect -> the JSON `fitlib detect --out` writes -> the same keypoints back."""
    from fitlib.cli import main

    path = tmp_path / "astronaut_kp.json"
    assert main(["detect", str(DATA / "astronaut.jpg"), "--out", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["layout"] == "coco17"
    for parsed in (keypoints_from_mmpose(path), keypoints_from_mmpose(str(path)), keypoints_from_mmpose(data)):
        _same(parsed, astronaut)
        assert parsed.keypoints.dtype == np.float64
    # the image size travels with it (a Keypoints' full content); and from a Keypoints object itself
    assert data["image_size"] == [512, 512] and keypoints_from_mmpose(data).image_size == (512, 512)
    _same(keypoints_from_mmpose(astronaut), astronaut)
    # `fitlib fit --keypoints` reads it
    out = tmp_path / "out"
    assert main(["fit", str(DATA / "astronaut.jpg"), "--keypoints", str(path), "--out", str(out)]) == 0
    fitted = json.loads((out / "astronaut.json").read_text())
    assert len(fitted["pose"]) == len(astronaut)


def test_fitlib_detection_layouts(astronaut):
    feet = detect(DATA / "astronaut.jpg", layout="coco17_feet")
    data = {"layout": "coco17_feet", "keypoints": feet.keypoints.tolist(), "boxes": feet.boxes.tolist(),
            "scores": feet.scores.tolist()}
    _same(keypoints_from_mmpose(data), feet)
    as_coco = keypoints_from_mmpose(data, layout="coco17")  # converted: the body part
    assert as_coco.layout == "coco17" and np.allclose(as_coco.keypoints, feet.keypoints[:, :17])
    mp = detect(DATA / "astronaut.jpg", layout="mediapipe33")
    parsed = keypoints_from_mmpose({"layout": "mediapipe33", "keypoints": mp.keypoints.tolist(),
                                    "boxes": mp.boxes.tolist(), "scores": mp.scores.tolist()})
    assert parsed.layout == "mediapipe33" and np.allclose(parsed.keypoints, mp.keypoints)
    coco = {"layout": "coco17", "keypoints": astronaut.keypoints.tolist()}  # boxes, scores optional
    parsed = keypoints_from_mmpose(coco)
    assert np.allclose(parsed.keypoints, astronaut.keypoints) and np.allclose(parsed.scores, 1.0)
    seen = astronaut.keypoints[0, astronaut.keypoints[0, :, 2] > 0, :2]
    assert np.allclose(parsed.boxes[0], np.concatenate([seen.min(0), seen.max(0)]))
    with pytest.raises(ValueError, match=r"layout 'coco17'\) has no .*left_big_toe"):
        keypoints_from_mmpose(coco, layout="coco17_feet")
    nobody = keypoints_from_mmpose({"layout": "coco17", "keypoints": [], "boxes": [], "scores": []})
    assert len(nobody) == 0 and nobody.keypoints.shape == (0, 17, 3)


def test_fitlib_detection_bad_fields(astronaut):
    good = {"layout": "coco17", "keypoints": astronaut.keypoints.tolist(), "boxes": astronaut.boxes.tolist(),
            "scores": astronaut.scores.tolist()}
    cases = [({"layout": "coco18"}, "'layout' must be one of fitlib's layouts"),
             ({"layout": 17}, "'layout' must be one of"),
             ({"layout": "coco17_feet"}, r"'keypoints' must be \[P\]\[23\]\[3\]"),
             ({"keypoints": astronaut.keypoints[..., :2].tolist()}, r"'keypoints' must be \[P\]\[17\]\[3\]"),
             ({"keypoints": [[["x", 1, 1]] * 17]}, "'keypoints' is not a numeric array"),
             ({"keypoints": (astronaut.keypoints * [1, 1, 2]).tolist()}, r"confidences .* in \[0, 1\]"),
             ({"boxes": astronaut.boxes[:, :3].tolist()}, "'boxes' must be"),
             ({"scores": [2.0] * len(astronaut)}, "'scores' must be"),
             ({"scores": []}, "'scores' must be"),
             ({"image_size": [512]}, "'image_size' must be"),
             ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            keypoints_from_mmpose({**good, **change})
    with pytest.raises(ValueError, match="no 'keypoints'"):
        keypoints_from_mmpose({"layout": "coco17"})
    nan_xy = astronaut.keypoints.copy()
    nan_xy[0, 0] = [np.nan, np.nan, 0.8]
    with pytest.raises(ValueError, match="finite where the confidence"):
        keypoints_from_mmpose({**good, "keypoints": nan_xy.tolist()})


def test_boxes_from_detected_points_only():
    """Without boxes, a person's box spans the points with a score above 0 (an undetected point may be NaN)."""
    xy = np.array([[10.0 + 5 * k, 20.0 + 10 * k] for k in range(17)])
    scores = np.ones(17)
    xy[16], scores[16] = np.nan, 0.0
    k = keypoints_from_mmpose([{"keypoints": xy.tolist(), "keypoint_scores": scores.tolist()}])
    np.testing.assert_allclose(k.boxes, [[10.0, 20.0, 85.0, 170.0]])
