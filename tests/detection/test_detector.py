from pathlib import Path

import cv2
import numpy as np
import pytest

from fitlib.detection.blazepose import BlazePose, ssd_anchors, weighted_nms
from fitlib.detection import Keypoints, detect
from fitlib.io.images import load_image

DATA = Path(__file__).parents[1] / "data"
NOSE, L_SH, R_SH, L_HIP, R_HIP, L_ANK, R_ANK = 0, 5, 6, 11, 12, 15, 16


@pytest.fixture(scope="module")
def astronaut():
    return load_image(DATA / "astronaut.jpg")


@pytest.fixture(scope="module")
def astronaut_kp(astronaut):
    return detect(astronaut)


def _check_structure(k: Keypoints, hw, joints=17):
    p = len(k)
    assert k.keypoints.shape == (p, joints, 3) and k.boxes.shape == (p, 4) and k.scores.shape == (p,)
    assert k.image_size == hw
    assert np.all((k.keypoints[..., 2] >= 0) & (k.keypoints[..., 2] <= 1))
    assert np.all((k.scores >= 0) & (k.scores <= 1)) and np.all(np.diff(k.scores) <= 0)
    h, w = hw
    assert np.all(k.boxes[:, :2] < k.boxes[:, 2:])
    assert np.all(k.boxes >= -0.5) and np.all(k.boxes[:, [2, 3]] <= [w - 0.5, h - 0.5])


def test_anchors_match_model_output_count():
    a = ssd_anchors()
    assert a.shape == (2254, 2) and a.min() > 0 and a.max() < 1
    assert np.allclose(a[0], [0.5 / 28, 0.5 / 28]) and np.allclose(a[0], a[1])  # 2 anchors per cell


def test_weighted_nms_merges_overlaps_only():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.6, 0.8])
    b, s, e = weighted_nms(boxes, scores, boxes[:, :1], iou=0.3)
    assert np.allclose(s, [0.9, 0.8])
    assert np.isclose(b[0, 0], 0.6 / 1.5) and np.allclose(b[1], boxes[2]) and np.isclose(e[0, 0], b[0, 0])


def test_astronaut_one_plausible_frontal_person(astronaut, astronaut_kp):
    k = astronaut_kp
    _check_structure(k, (512, 512))
    assert len(k) == 1
    kp = k.keypoints[0]
    assert np.all(kp[[NOSE, L_SH, R_SH], 2] > 0.9)
    assert kp[NOSE, 1] < min(kp[L_SH, 1], kp[R_SH, 1])  # nose above the shoulders
    assert kp[NOSE, 1] < min(kp[L_HIP, 1], kp[R_HIP, 1])  # ... and above the hips
    # she faces the camera: her left shoulder is on the image's right, by a real margin
    assert kp[L_SH, 0] - kp[R_SH, 0] > 100
    assert kp[L_SH, 0] > kp[NOSE, 0] > kp[R_SH, 0]
    # the face is in the upper part of the photo (ground truth by eye: nose near (225, 135))
    assert np.hypot(*(kp[NOSE, :2] - [225, 135])) < 25
    x1, y1, x2, y2 = k.boxes[0]
    conf = kp[:, 2] > 0.5
    assert np.all((kp[conf, 0] >= x1) & (kp[conf, 0] <= x2) & (kp[conf, 1] >= y1) & (kp[conf, 1] <= y2))


def test_two_people_in_grayscale_basketball_photo():
    k = detect(DATA / "basketball1.png")
    _check_structure(k, (480, 640))
    assert len(k) == 2
    # one person stands on the left, one on the right (the one seen from behind)
    centres = np.sort((k.boxes[:, 0] + k.boxes[:, 2]) / 2)
    assert centres[0] < 250 and centres[1] > 400
    for kp in k.keypoints:  # both upright: shoulders above hips
        assert kp[[L_SH, R_SH], 1].mean() < kp[[L_HIP, R_HIP], 1].mean()


def test_single_level_detection_misses_the_smaller_scale():
    # the windows of the second level are what finds the second person
    assert len(detect(DATA / "basketball1.png", levels=1)) == 1


def test_messi_kicking_body_order():
    k = detect(DATA / "messi5.jpg")
    assert len(k) >= 1  # the crowd is too small to count
    kp = k.keypoints[0]
    assert kp[NOSE, 1] < kp[[L_HIP, R_HIP], 1].min() < kp[[L_ANK, R_ANK], 1].max()


def test_rgba_and_gray_arrays_match_rgb(astronaut, astronaut_kp):
    rgba = np.concatenate([astronaut, np.full((512, 512, 1), 255, np.uint8)], axis=2)
    assert np.allclose(detect(rgba).keypoints, astronaut_kp.keypoints)
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    k = detect(gray)
    assert len(k) == 1
    head = slice(0, 5)  # clearly visible; the suit hides the other joints, whose guesses differ
    assert np.all(k.keypoints[0, head, 2] > 0.5)
    assert np.abs(k.keypoints[0, head, :2] - astronaut_kp.keypoints[0, head, :2]).max() < 15


def test_huge_image_downscaled_and_mapped_back():
    img = load_image(DATA / "messi5.jpg")
    ref = detect(img)
    big = cv2.resize(img, (548 * 6, 342 * 6), interpolation=cv2.INTER_CUBIC)
    k = detect(big, max_side=1024)
    _check_structure(k, (2052, 3288))
    assert len(k) == len(ref)
    ok = (k.keypoints[0, :, 2] > 0.5) & (ref.keypoints[0, :, 2] > 0.5)
    back = (k.keypoints[0, ok, :2] + 0.5) / 6 - 0.5
    assert ok.sum() >= 12 and np.abs(back - ref.keypoints[0, ok, :2]).max() < 6


def test_nobody_is_a_result_not_an_error(astronaut):
    for img in (np.full((300, 400, 3), 128, np.uint8), np.ascontiguousarray(astronaut[:60, :60])):
        k = detect(img)
        assert len(k) == 0 and k.keypoints.shape == (0, 17, 3) and k.boxes.shape == (0, 4)
        assert k.image_size == img.shape[:2]


def test_bad_images_raise(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        detect(np.zeros((0, 0, 3), np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ValueError, match="decode"):
        detect(bad)


def test_layouts(astronaut, astronaut_kp):
    feet = detect(astronaut, layout="coco17_feet")
    assert feet.keypoints.shape == (1, 23, 3) and feet.layout == "coco17_feet"
    assert np.allclose(feet.keypoints[:, :17], astronaut_kp.keypoints)
    assert np.all(feet.keypoints[0, [18, 21], 2] == 0)  # no small toes in BlazePose
    full = detect(astronaut, layout="mediapipe33")
    assert full.keypoints.shape == (1, 33, 3)
    assert np.allclose(full.keypoints[0, [0, 11, 12, 27]], astronaut_kp.keypoints[0, [0, 5, 6, 15]])
    with pytest.raises(ValueError, match="layout"):
        detect(astronaut, layout="smpl24")
    with pytest.raises(ValueError, match="backend"):
        detect(astronaut, backend="openpose")
    with pytest.raises(ValueError, match="mediapipe33"):
        detect(astronaut, backend="mmpose", layout="mediapipe33", config="x", checkpoint="y")


def test_detector_options_validated():
    with pytest.raises(ValueError, match="min_presence"):
        BlazePose(min_presence=2.0)
    with pytest.raises(ValueError, match="tflite"):
        BlazePose(model="heavy")
    with pytest.raises(FileNotFoundError):
        BlazePose(model="/nonexistent/pose_landmark_heavy.tflite")


def test_keypoints_validation_and_select(astronaut_kp):
    with pytest.raises(ValueError, match="layout"):
        Keypoints(np.zeros((1, 17, 3)), np.zeros((1, 4)), np.ones(1), layout="coco18")
    with pytest.raises(ValueError, match="17"):
        Keypoints(np.zeros((1, 23, 3)), np.zeros((1, 4)), np.ones(1), layout="coco17")
    with pytest.raises(ValueError, match="confidence"):
        Keypoints(np.full((1, 17, 3), 2.0), np.zeros((1, 4)), np.ones(1))
    with pytest.raises(ValueError, match="people"):
        Keypoints(np.zeros((2, 17, 3)), np.zeros((1, 4)), np.ones(2))
    one = astronaut_kp.select(0)
    assert len(one) == 1 and np.array_equal(one.keypoints, astronaut_kp.keypoints)
    assert len(astronaut_kp.select(np.zeros(1, bool))) == 0


def test_world_landmarks_are_the_body_seen_along_the_ray():
    """BlazePose's world landmarks come out in metres, between the hips, in the frame fitlib simulates them in
    (look_at_person of the camera frame): on the bus photo they agree with the fitted bodies' own points
    to a few degrees, and far better than with their depth axis reversed."""
    import torch

    import fitlib
    from fitlib.body.layouts import get_layout
    from fitlib.body.model import shared_body_model
    from fitlib.datasets.synthetic import look_at_person
    from fitlib.body.layouts import WORLD_POINTS

    det = detect(DATA / "bus.jpg")
    assert det.world.shape == (len(det), 33, 3) and np.isfinite(det.world).all()
    res = fitlib.fit(DATA / "bus.jpg", det, config="multistart")
    idx = [get_layout("mediapipe33").index(n) for n in WORLD_POINTS]
    hips = [WORLD_POINTS.index("left_hip"), WORLD_POINTS.index("right_hip")]
    model = shared_body_model("open")

    def turn(a, b):  # degrees of the rotation best taking a onto b (hip-centred point sets)
        u, _, vt = np.linalg.svd(a.T @ b)
        R = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
        return np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))

    checked = 0
    for p in np.argsort(res.reprojection_error)[:2]:
        assert res.fitted[p] and res.reprojection_error[p] < 4
        t = lambda a: torch.as_tensor(a[p:p + 1], dtype=torch.float32)  # noqa: E731
        pts = model(t(res.pose).view(1, 24, 3), t(res.betas), t(res.transl), layout="mediapipe33").keypoints[0]
        pts = pts.double().numpy()[idx]
        fitted = look_at_person(pts, pts[hips].mean(0))
        w = det.world[p][idx]
        assert np.linalg.norm(w[hips].mean(0)) < 0.02 and w[WORLD_POINTS.index("nose"), 1] < -0.3  # hips at 0, y down
        w = w - w[hips].mean(0)
        assert turn(w, fitted) < 15 and np.linalg.norm(w - fitted, axis=-1).mean() < 0.12
        assert turn(w * [1, 1, -1], fitted) > turn(w, fitted) + 10
        checked += 1
    assert checked == 2
