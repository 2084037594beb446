"""Label sources: image folders, videos, COCO / OpenPose / mmpose keypoint files, 3DPW-format sets."""
import json
import shutil

import cv2
import numpy as np
import pytest

from fitlib import convert_keypoints, detect
from fitlib.labels import items, run_label_job


@pytest.fixture(scope="module")
def messi(data_dir):
    kp = detect(str(data_dir / "messi5.jpg"))
    return kp


def test_image_folder_is_recursive_and_stable(tmp_path, data_dir):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(data_dir / "messi5.jpg", tmp_path / "a" / "b" / "x.jpg")
    shutil.copy(data_dir / "astronaut.jpg", tmp_path / "a" / "y.jpg")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    got = [(it.dataset, it.item) for it in items([tmp_path / "a"])]
    assert got == [("a", "b/x.jpg"), ("a", "y.jpg")]


def test_threedpw_items(label_set):
    its = list(items([label_set]))
    assert all(it.keypoints.shape[1:] == (17, 3) and it.K.shape == (3, 3) and it.image_size for it in its)
    assert {it.dataset.split("_", 2)[0] for it in its} == {"3dpw/synthetic"}
    assert max(len(it.keypoints) for it in its) == 2 and its[0].person_ids == ["0"]


def test_coco_annotations_source(tmp_path, data_dir, messi):
    shutil.copy(data_dir / "messi5.jpg", tmp_path / "messi5.jpg")
    kp = messi.keypoints
    h, w = messi.image_size
    anns = [{"id": 100 + i, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": int((k[:, 2] > 0).sum()),
             "bbox": [0, 0, 10, 10], "keypoints": [v for x, y, c in k for v in (float(x), float(y), 2 if c > 0.3 else 0)]}
            for i, k in enumerate(kp)]
    coco = {"images": [{"id": 1, "file_name": "messi5.jpg", "width": w, "height": h}], "annotations": anns,
            "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "person_keypoints.json").write_text(json.dumps(coco))
    its = list(items([tmp_path / "person_keypoints.json"]))
    assert len(its) == 1 and its[0].person_ids == [str(100 + i) for i in range(len(kp))]
    s = run_label_job(its, tmp_path / "s.sqlite", progress=False)
    assert s.failed == 0 and s.new == len(kp)


def test_openpose_folder_source(tmp_path, data_dir, messi):
    folder = tmp_path / "op"
    folder.mkdir()
    b25 = np.nan_to_num(convert_keypoints(messi.keypoints, "coco17", "body25"))  # OpenPose writes 0 for missing points
    for name in ("frame_000000", "frame_000001"):
        (folder / f"{name}_keypoints.json").write_text(json.dumps(
            {"version": 1.3, "people": [{"pose_keypoints_2d": p.reshape(-1).tolist()} for p in b25]}))
    h, w = messi.image_size
    its = list(items([folder], image_size=(h, w)))
    assert [it.item for it in its] == ["frame_000000_keypoints.json", "frame_000001_keypoints.json"]
    assert its[0].layout == "body25" and its[0].keypoints.shape == (len(b25), 25, 3)
    (folder / "frame_000002_keypoints.json").write_text("{broken")
    its = list(items([folder], image_size=(h, w)))
    assert its[-1].error and "frame_000002" in its[-1].item
    s = run_label_job(its, tmp_path / "s.sqlite", progress=False)
    assert s.done == 2 and s.failed == 1 and s.new >= 2


def test_video_source_every_nth_frame(tmp_path, data_dir):
    img = cv2.imread(str(data_dir / "messi5.jpg"))
    img = cv2.resize(img, (320, 200))
    path = tmp_path / "clip.avi"
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (img.shape[1], img.shape[0]))
    for i in range(6):
        wr.write(np.roll(img, 4 * i, axis=1))
    wr.release()
    its = list(items([path], every=2))
    assert [it.item for it in its] == ["clip.avi#000000", "clip.avi#000002", "clip.avi#000004"]
    assert its[0].image.shape == (img.shape[0], img.shape[1], 3)
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    bad = list(items([tmp_path / "bad.mp4"]))
    assert len(bad) == 1 and bad[0].error


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(items([tmp_path / "nothing"]))
    (tmp_path / "x.csv").write_text("a,b")
    assert "not a label source" in next(iter(items([tmp_path / "x.csv"]))).error
