"""The synthetic 3DPW-format set: the files have 3DPW's fields and shapes, and are deterministic under a seed."""
import pickle

import numpy as np
import pytest

from fitlib.datasets.synthetic import make_synthetic


def test_files_have_3dpw_format(tiny_3dpw):
    root, paths = tiny_3dpw
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
    a = make_synthetic(tmp_path / "a", sequences=1, frames=3, seed=7)[0]
    b = make_synthetic(tmp_path / "b", sequences=1, frames=3, seed=7)[0]
    c = make_synthetic(tmp_path / "c", sequences=1, frames=3, seed=8)[0]
    load = lambda p: pickle.load(open(p, "rb"), encoding="latin1")  # noqa: E731
    assert np.array_equal(load(a)["poses2d"][0], load(b)["poses2d"][0])
    assert not np.array_equal(load(a)["poses2d"][0], load(c)["poses2d"][0])


def test_look_at_person_is_a_rotation_about_the_hips():
    from fitlib.datasets.synthetic import look_at_person

    rng = np.random.default_rng(0)
    hips = np.array([[1.5, -0.8, 6.0], [0.0, 0.0, 4.0]])
    pts = hips[:, None] + rng.normal(0, 0.5, (2, 20, 3))
    w = look_at_person(pts, hips)
    # distances to the hips and between points are kept; a point on the ray lies on the new z axis
    d = lambda a: np.linalg.norm(a[:, :, None] - a[:, None], axis=-1)  # noqa: E731
    assert np.allclose(d(w), d(pts)) and np.allclose(np.linalg.norm(w, axis=-1), np.linalg.norm(pts - hips[:, None], axis=-1))
    on_ray = look_at_person(hips[:, None] * 1.1, hips)[:, 0]
    assert np.allclose(on_ray[:, :2], 0, atol=1e-12) and (on_ray[:, 2] > 0).all()
    assert np.allclose(w[1], pts[1] - hips[1])  # straight ahead: no turn


def test_simulated_world_landmarks_errors():
    from fitlib.datasets.synthetic import WorldNoise, look_at_person, simulate_world_landmarks
    from fitlib.body.layouts import WORLD_POINTS

    rng = np.random.default_rng(1)
    pts = np.array([0.0, 0.0, 5.0]) + rng.normal(0, 0.4, (500, len(WORLD_POINTS), 3))
    ix = WORLD_POINTS.index
    hips = 0.5 * (pts[:, ix("left_hip")] + pts[:, ix("right_hip")])
    exact = look_at_person(pts, hips)
    none = WorldNoise(sigma=0.0, scale=0.0, depth_scale=0.0, limb_flip=0.0)
    assert np.allclose(simulate_world_landmarks(pts, WORLD_POINTS, rng, none), exact)
    noisy = simulate_world_landmarks(pts, WORLD_POINTS, rng, WorldNoise(sigma=0.03, scale=0, depth_scale=0, limb_flip=0))
    assert abs((noisy - exact).std() - 0.03) < 0.002
    flip = simulate_world_landmarks(pts, WORLD_POINTS, rng, WorldNoise(sigma=0, scale=0, depth_scale=0, limb_flip=1.0))
    torso = [ix(n) for n in ("nose", "left_shoulder", "right_shoulder", "left_hip", "right_hip")]
    assert np.allclose(flip[:, torso], exact[:, torso]) and np.allclose(flip[..., :2], exact[..., :2])
    knee, hip = ix("left_knee"), ix("left_hip")
    assert np.allclose(flip[:, knee, 2] - flip[:, hip, 2], -(exact[:, knee, 2] - exact[:, hip, 2]))


def test_corruption_in_any_layout_swaps_a_leg_with_its_foot():
    """corrupt_keypoints takes the points' names: in BODY_25 a swapped leg takes its foot points along, a point's
    noise does not depend on the layout, and a name count that does not match is an error."""
    from fitlib.body.layouts import get_layout
    from fitlib.datasets.synthetic import Corruption, corrupt_keypoints

    lay = get_layout("body25")
    xy = np.random.default_rng(0).uniform(200, 800, (400, len(lay), 2))
    out = corrupt_keypoints(xy, np.random.default_rng(1), Corruption(noise=0.0, swap=1.0, drop=0.0, low_conf=0.0),
                            (1000, 1000), lay.names)
    moved = np.linalg.norm(out[..., :2] - xy, axis=-1) > 1e-9  # [T, J]: swapped points
    for side in ("left", "right"):
        knee, ankle = lay.index(f"{side}_knee"), lay.index(f"{side}_ankle")
        feet = [lay.index(f"{side}_{f}") for f in ("big_toe", "small_toe", "heel")]
        legs = moved[:, knee] & moved[:, ankle]
        assert legs.any() and (moved[legs][:, feet]).all()  # a swapped leg, its foot with it
        assert not moved[~moved[:, ankle]][:, feet].any()  # feet move only with their leg
    noisy = corrupt_keypoints(xy, np.random.default_rng(2), Corruption(swap=0.0, drop=0.0, low_conf=0.0),
                              (1000, 1000), lay.names)
    err = np.linalg.norm(noisy[..., :2] - xy, axis=-1)
    assert err[:, lay.index("left_heel")].mean() == pytest.approx(err[:, lay.index("left_ankle")].mean(), rel=0.15)
    with pytest.raises(ValueError, match="names 25"):
        corrupt_keypoints(xy[:, :18], np.random.default_rng(1), Corruption(), (1000, 1000), lay.names)
