"""COCO keypoint annotation JSON: per-image people (crowds and unlabelled people left out), visibility as
confidence, broken files refused naming file and field, and ``fitlib fit IMAGE --keypoints annotations.json``."""
import json

import numpy as np
import pytest

from fitlib.cli import main
from fitlib.interop import coco_image, foreign_keypoints, read_coco_keypoints


def _kps(seed, v=None):
    rng = np.random.default_rng(seed)
    k = np.concatenate([rng.uniform(0, 300, (17, 2)).round(1), rng.integers(1, 3, (17, 1))], 1)
    if v is not None:
        k[:, 2] = v
    return k


def _coco():
    a, b = _kps(1), _kps(2)
    a[3, 2] = 0  # not labelled
    return {
        "info": {"description": "test"},
        "images": [{"id": 7, "file_name": "photos/messi5.jpg", "width": 640, "height": 480},
                   {"id": 9, "file_name": "empty.jpg", "width": 100, "height": 50}],
        "annotations": [
            {"id": 101, "image_id": 7, "category_id": 1, "iscrowd": 0, "num_keypoints": 16,
             "keypoints": a.reshape(-1).tolist(), "bbox": [10.0, 20.0, 100.0, 200.0]},
            {"id": 102, "image_id": 7, "category_id": 1, "iscrowd": 1, "num_keypoints": 0,
             "keypoints": [0] * 51, "bbox": [0, 0, 640, 480]},
            {"id": 103, "image_id": 9, "category_id": 1, "iscrowd": 0, "num_keypoints": 0,
             "keypoints": [0] * 51, "bbox": [1, 2, 3, 4]},
            {"id": 104, "image_id": 7, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
             "keypoints": b.reshape(-1).astype(int).tolist(), "bbox": [50, 60, 70, 80]},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }, a, b


def test_reads_people_per_image(tmp_path):
    data, a, b = _coco()
    p = tmp_path / "person_keypoints_val.json"
    p.write_text(json.dumps(data))
    images = read_coco_keypoints(p)
    assert [im.file_name for im in images] == ["photos/messi5.jpg", "empty.jpg"]
    first, empty = images
    assert first.image_id == 7 and (first.width, first.height) == (640, 480)
    assert first.annotation_ids.tolist() == [101, 104]  # the crowd left out
    assert first.keypoints.shape == (2, 17, 3) and empty.keypoints.shape == (0, 17, 3) and len(empty) == 0
    np.testing.assert_allclose(first.keypoints[0, :, :2], a[:, :2])
    assert first.keypoints[0, :, 2].tolist() == [1.0] * 3 + [0.0] + [1.0] * 13  # v = 1 and 2 -> 1, v = 0 -> 0
    np.testing.assert_allclose(first.keypoints[1, :, :2], b[:, :2].astype(int))
    np.testing.assert_allclose(first.boxes, [[10, 20, 100, 200], [50, 60, 70, 80]])
    np.testing.assert_allclose(first.boxes_xyxy[0], [10, 20, 110, 220])
    kp = first.to_keypoints()
    assert kp.layout == "coco17" and kp.image_size == (480, 640) and kp.scores.tolist() == [1.0, 1.0]
    assert coco_image(images, "/data/x/messi5.jpg") is first and coco_image(images, "photos/messi5.jpg") is first
    with pytest.raises(ValueError, match="no image named 'bus.jpg'"):
        coco_image(images, "bus.jpg")
    with pytest.raises(ValueError, match="hold 2 images"):
        foreign_keypoints(p)
    assert foreign_keypoints(p, image="messi5.jpg").keypoints.shape == (2, 17, 3)
    # an annotation without bbox gets its labelled points' extent
    del data["annotations"][0]["bbox"]
    box = read_coco_keypoints(data)[0].boxes[0]
    pts = a[a[:, 2] > 0, :2]
    np.testing.assert_allclose(box, [*pts.min(0), *(pts.max(0) - pts.min(0))])


def _broken(edit):
    data, _, _ = _coco()
    edit(data)
    return json.dumps(data).encode()


def _set(path, value):
    def edit(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return edit


@pytest.mark.parametrize("content, message", [
    (b"not json", "not readable JSON"),
    (b"[]", "expected a JSON object"),
    (_broken(_set(["images"], KeyError)), "'images' must be a list, got nothing"),
    (_broken(_set(["annotations"], {"a": 1})), "'annotations' must be a list, got dict"),
    (_broken(_set(["images", 1, "id"], 7)), r"images\[1\].id 7 is repeated"),
    (_broken(_set(["images", 0, "id"], "7")), r"images\[0\].id must be a whole number"),
    (_broken(_set(["images", 0, "file_name"], 3)), r"images\[0\].file_name must be the image's file name"),
    (_broken(_set(["images", 0, "width"], -4)), r"images\[0\].width must be at least 1"),
    (_broken(_set(["annotations", 0, "image_id"], 8)), r"annotations\[0\].image_id 8 names no image"),
    (_broken(_set(["annotations", 0, "keypoints"], [1] * 50)), r"annotations\[0\].keypoints must hold 51 numbers"),
    (_broken(_set(["annotations", 0, "keypoints"], "1 2 3")), r"annotations\[0\].keypoints must be a list"),
    (_broken(_set(["annotations", 3, "keypoints"], [1, 2, 3] * 16 + [1, 2, None])), r"annotations\[3\].keypoints must hold numbers only"),
    (_broken(_set(["annotations", 0, "keypoints"], [1, 2, 3] * 17)), r"annotations\[0\].keypoints: visibility must be 0, 1 or 2, got 3"),
    (_broken(_set(["annotations", 0, "bbox"], [1, 2, -3, 4])), r"annotations\[0\].bbox must be x, y, width, height"),
    (_broken(_set(["annotations", 0, "bbox"], [1, 2, 3])), r"annotations\[0\].bbox must hold 4 numbers"),
    (_broken(_set(["annotations", 0, "iscrowd"], 2)), r"annotations\[0\].iscrowd must be 0 or 1"),
    (_broken(_set(["annotations", 0, "id"], None)), r"annotations\[0\].id must be a whole number"),
    (_broken(_set(["annotations", 0, "num_keypoints"], -1)), r"annotations\[0\].num_keypoints must be at least 0"),
    (_broken(_set(["annotations", 2], "x")), r"annotations\[2\] must be an object"),
    (b'{"images": [], "annotations": [], "x": NaN}', "'NaN', which is not a JSON number"),
])
def test_broken_files_name_file_and_field(tmp_path, content, message):
    p = tmp_path / "ann.json"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_coco_keypoints(p)
    assert str(p) in str(info.value)


def test_size_limit(tmp_path):
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(_coco()[0]))
    with pytest.raises(ValueError, match="MiB"):
        read_coco_keypoints(p, max_bytes=100)


def test_cli_fits_the_image_named_in_the_annotations(messi, tmp_path):
    image, result = messi
    kps = np.where(result.keypoints[..., 2:] > 0.3, np.concatenate([result.keypoints[..., :2],
                                                                    np.full_like(result.keypoints[..., :1], 2)], -1), 0)
    data = {"images": [{"id": 1, "file_name": "bus.jpg", "width": 810, "height": 1080},
                       {"id": 2, "file_name": "val2017/messi5.jpg", "width": 549, "height": 342}],
            "annotations": [{"id": 10 + i, "image_id": 2, "iscrowd": 0, "num_keypoints": int((k[:, 2] > 0).sum()),
                             "keypoints": k.reshape(-1).tolist(), "bbox": [0, 0, 10, 10]} for i, k in enumerate(kps)]}
    p = tmp_path / "person_keypoints.json"
    p.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["fit", str(image), "--out", str(out), "--keypoints", str(p), "--config", "fast"]) == 0
    saved = json.loads((out / "messi5.json").read_text())
    assert saved["layout"] == "coco17" and len(saved["fitted"]) == len(result) and all(saved["fitted"])
    np.testing.assert_allclose(np.array(saved["keypoints"])[..., 2], (kps[..., 2] > 0).astype(float))
    data["images"][1]["file_name"] = "other.jpg"
    p.write_text(json.dumps(data))
    assert main(["fit", str(image), "--out", str(out), "--keypoints", str(p), "--overwrite"]) == 2
