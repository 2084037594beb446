"""SPIN-style person crops on real photos: the crop matrix puts image content where it maps the coordinates (a
dot drawn at a detected keypoint is found where crop_keypoints puts the point), flips re-label left and right as
the mirrored SMPL pose does, the pose augmentation turns the body as the image turns (checked by projecting the
open body model), SPIN's augmentation distributions."""
import numpy as np
import pytest
import torch

from fitlib.body.layouts import get_layout
from fitlib.camera import default_intrinsics, project
from fitlib.datasets.crops import (IDENTITY, AugmentConfig, augment_matrix, augment_points3d, augment_pose,
                                   crop_image, crop_keypoints, crop_matrix, crop_to_full, draw_augmentation,
                                   full_to_crop)
from fitlib.io import load_image

COCO = get_layout("coco17")
RES = 224


def _h(M):
    return np.vstack([M, [0.0, 0.0, 1.0]])


def _apply(M, xy):
    return np.asarray(xy, float) @ M[:, :2].T + M[:, 2]


def test_box_fills_the_crop_and_the_inverse():
    c, s = np.array([300.5, 120.25]), 180.0
    M = crop_matrix(c, s, RES)
    # box edges -> crop edges (-0.5 and res - 0.5), box centre -> crop centre
    np.testing.assert_allclose(_apply(M, [c - s / 2, c + s / 2, c]), [[-0.5, -0.5], [RES - 0.5, RES - 0.5],
                                                                        [(RES - 1) / 2] * 2], atol=1e-9)
    pts = np.random.default_rng(0).uniform(0, 500, (7, 2))
    np.testing.assert_allclose(crop_to_full(_apply(M, pts), c, s, RES), pts, atol=1e-9)
    np.testing.assert_allclose(full_to_crop(pts, c, s, RES), _apply(M, pts), atol=1e-9)
    # batched: [B, N, 2] with centre [B, 2], size [B]
    cs, ss = np.stack([c, c + 10]), np.array([s, 2 * s])
    back = crop_to_full(full_to_crop(np.stack([pts, pts]), cs, ss, RES), cs, ss, RES)
    np.testing.assert_allclose(back, np.stack([pts, pts]), atol=1e-9)
    # rotation about the box centre, counter-clockwise on screen: a point right of the centre goes up (y down)
    R = crop_matrix(c, s, RES, rotation_deg=90)
    np.testing.assert_allclose(_apply(R, [c + [s / 4, 0]]), [[(RES - 1) / 2, (RES - 1) / 2 - RES / 4]], atol=1e-9)
    F = crop_matrix(c, s, RES, flip=True)
    np.testing.assert_allclose(_apply(F, [c - [s / 4, 0]]), [[(RES - 1) / 2 + RES / 4, (RES - 1) / 2]], atol=1e-9)
    with pytest.raises(ValueError, match="size"):
        crop_matrix(c, 0.0, RES)
    with pytest.raises(ValueError, match="center"):
        crop_matrix([np.nan, 1.0], s, RES)
    with pytest.raises(ValueError, match="res"):
        crop_matrix(c, s, 0)


@pytest.mark.parametrize("rot,flip", [(0.0, False), (27.0, False), (-40.0, True), (0.0, True)])
def test_crop_is_the_unrotated_box_of_the_augmented_full_image(rot, flip):
    c, s, pp = np.array([410.0, 250.0]), 230.0, np.array([320.0, 240.0])
    A = augment_matrix(rot, flip, pp)
    c_aug = _apply(A, [c])[0]
    np.testing.assert_allclose(_h(crop_matrix(c, s, RES, rot, flip)), _h(crop_matrix(c_aug, s, RES)) @ _h(A),
                               atol=1e-9)
    np.testing.assert_allclose(_apply(A, [pp]), [pp], atol=1e-9)  # the pivot stays


def _dot_centroid(image, xy, sigma, M, res):
    """Centroid (crop px) of a Gaussian dot drawn at ``xy`` on a darkened copy of ``image``, cropped with M."""
    h, w = image.shape[:2]
    base = (image // 2).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    dot = 120.0 * np.exp(-((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2) / (2 * sigma ** 2))
    dotted = np.clip(np.rint(base + dot[..., None]), 0, 255).astype(np.uint8)
    diff = crop_image(dotted, M, res) - crop_image(base.astype(np.uint8), M, res)
    wgt = np.clip(diff.sum(0), 0, None)
    yy, xx = np.mgrid[0:res, 0:res]
    return np.array([(wgt * xx).sum(), (wgt * yy).sum()]) / wgt.sum()


@pytest.mark.parametrize("photo,aug", [
    ("messi5.jpg", dict(rot=0.0, scale=1.0, flip=False)),
    ("messi5.jpg", dict(rot=35.0, scale=1.2, flip=True)),
    ("astronaut.jpg", dict(rot=-50.0, scale=0.8, flip=False)),
    ("bus.jpg", dict(rot=12.0, scale=1.25, flip=True)),
    ("basketball1.png", dict(rot=-20.0, scale=0.75, flip=True)),
])
def test_dot_at_a_keypoint_lands_where_crop_keypoints_puts_it(photo_set, photo, aug):
    i = photo_set.imgname.index(photo)
    image = load_image(photo_set.root / photo)
    kp = photo_set.keypoints[i]
    box = photo_set.boxes[i]
    c, s = (box[:2] + box[2:]) / 2, 1.2 * (box[2:] - box[:2]).max() * aug["scale"]
    M = crop_matrix(c, s, RES, aug["rot"], aug["flip"])
    crop_kp = crop_keypoints(kp, M, aug["flip"], "coco17")
    sigma = 1.5 * s / RES  # ~1.5 crop px
    checked = 0
    for name in ("left_wrist", "right_ankle", "nose"):
        j = COCO.index(name)
        row = COCO.flip_index[j] if aug["flip"] else j
        inside = np.all((kp[j, :2] > 5) & (kp[j, :2] < np.array(image.shape[1::-1]) - 5))
        if kp[j, 2] < 0.3 or not inside or not np.all((crop_kp[row, :2] > 8) & (crop_kp[row, :2] < RES - 8)):
            continue
        found = _dot_centroid(image, kp[j, :2], sigma, M, RES)
        # the dot at the image's left wrist is the mirrored person's right wrist
        mirrored = name.replace("left", "#").replace("right", "left").replace("#", "right")
        assert COCO.names[row] == (mirrored if aug["flip"] else name)
        np.testing.assert_allclose(found, crop_kp[row, :2], atol=0.1)  # crop px (measured: < 0.02)
        assert crop_kp[row, 2] == kp[j, 2]
        checked += 1
    assert checked >= 2


def test_crop_keypoints_missing_points_and_shapes():
    kp = np.random.default_rng(1).uniform(10, 300, (2, 17, 3))
    kp[0, 3, 2] = 0.0
    kp[1, 5, :2] = np.nan
    M = crop_matrix([150, 150], 300, RES, 10, True)
    out = crop_keypoints(kp, M, True, "coco17")
    assert out.shape == (2, 17, 3)
    assert (out[0, COCO.flip_index[3]] == 0).all() and (out[1, COCO.flip_index[5]] == 0).all()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[..., 2], np.where(out[..., 2] > 0, kp[:, list(COCO.flip_index), 2], 0))
    with pytest.raises(ValueError, match=r"\[\.\.\., 25, 3\]"):
        crop_keypoints(kp, M, False, "body25")


def test_crop_image_colour_border_and_input(photo_set):
    image = load_image(photo_set.root / "astronaut.jpg")
    M = crop_matrix([100.0, 100.0], 400.0, 64)  # reaches beyond the top-left corner
    plain = crop_image(image, M, 64)
    assert plain.shape == (3, 64, 64) and plain.dtype == np.float32
    assert plain.min() >= 0 and plain.max() <= 1
    assert (plain[:, :10, :10] == 0).all()  # black outside the image
    col = np.array([1.4, 0.6, 1.0])
    noisy = crop_image(image, M, 64, col)
    np.testing.assert_allclose(noisy, np.clip(plain * col[:, None, None].astype(np.float32), 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        crop_image(image.astype(np.float32), M, 64)
    with pytest.raises(ValueError, match="colour"):
        crop_image(image, M, 64, [1.0, 1.0])


def test_augmentation_draws_follow_spin():
    cfg = AugmentConfig()
    assert (cfg.rotation_deg, cfg.rotation_prob, cfg.scale, cfg.flip, cfg.colour_noise) == (30, 0.4, 0.25, 0.5, 0.4)
    rng = np.random.default_rng(0)
    draws = [draw_augmentation(rng, cfg) for _ in range(4000)]
    rot = np.array([d.rotation_deg for d in draws])
    scale = np.array([d.scale for d in draws])
    colour = np.stack([d.colour for d in draws])
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.03
    assert abs(np.mean(rot != 0) - 0.4) < 0.03 and np.abs(rot).max() <= 60 and np.abs(rot).max() > 55
    assert abs(rot[rot != 0].std() - 30) < 2.5
    assert scale.min() == 0.75 and scale.max() == 1.25 and abs(scale.mean() - 1) < 0.01
    assert colour.min() >= 0.6 and colour.max() <= 1.4 and abs(colour.mean() - 1) < 0.01
    # deterministic; disabled / None: the identity, without touching the rng
    again = [draw_augmentation(np.random.default_rng(0), cfg) for _ in range(1)]
    assert again[0].rotation_deg == draws[0].rotation_deg and np.array_equal(again[0].colour, draws[0].colour)
    state = rng.bit_generator.state
    assert draw_augmentation(rng, AugmentConfig(enabled=False)) is IDENTITY
    assert draw_augmentation(rng, None) is IDENTITY and rng.bit_generator.state == state
    with pytest.raises(ValueError):
        AugmentConfig(rotation=30)  # extra keys forbidden
    with pytest.raises(ValueError):
        AugmentConfig(flip=1.5)


@pytest.fixture(scope="module")
def model64(open_model):
    """The open model in float64 (a model of its own: the session's float32 one stays as it is)."""
    from fitlib.body.model import load_body_model

    return load_body_model("open", dtype=torch.float64)


@pytest.fixture(scope="module")
def posed_body():
    """A real posed body of the open model seen by a 640 x 480 camera, off the principal axis."""
    from fitlib.body.open_model import sample_plausible_poses

    pose = sample_plausible_poses(1, 7, dtype=torch.float64)[0]
    pose[0] = torch.tensor([np.pi, 0.0, 0.0], dtype=torch.float64) + torch.tensor([0.1, 0.4, -0.1])  # facing us
    betas = torch.linspace(-1, 1, 10, dtype=torch.float64)
    transl = torch.tensor([1.1, -0.3, 6.0], dtype=torch.float64)
    K = default_intrinsics(480, 640, dtype=torch.float64)
    return pose.reshape(72).numpy(), betas, transl, K


def _keypoints_2d(model, pose, betas, transl, K):
    out = model(torch.as_tensor(pose).view(24, 3)[None], betas[None], transl[None], layout="coco17")
    return project(out.keypoints.double(), K)[0].numpy()


@pytest.mark.parametrize("rot,flip", [(25.0, False), (-40.0, True), (0.0, True), (60.0, False)])
def test_pose_augmentation_turns_the_body_as_the_image_turns(model64, posed_body, rot, flip):
    """The body posed with augment_pose, its pelvis moved by augment_points3d, projects where the image's
    keypoints went in the augmented full image (and so in the crop, re-labelled left/right on a flip)."""
    model = model64
    pose, betas, transl, K = posed_body
    kp2d = _keypoints_2d(model, pose, betas, transl, K)
    kp = np.concatenate([kp2d, np.ones((17, 1))], -1)
    pp = K[:2, 2].numpy()
    expected = crop_keypoints(kp, augment_matrix(rot, flip, pp), flip, "coco17")[:, :2]
    J0 = model.rest_joints(betas)[0].numpy()
    t_aug = torch.as_tensor(augment_points3d(J0 + transl.numpy(), rot, flip) - J0)
    pose_aug = augment_pose(pose, rot, flip)
    got = _keypoints_2d(model, pose_aug, betas, t_aug, K)
    err = np.linalg.norm(got - expected, axis=-1)
    assert err.max() < 1.0, err  # px (the open model is left-right symmetric to ~mm)
    if rot:
        wrong = _keypoints_2d(model, augment_pose(pose, -rot, flip), betas, t_aug, K)
        assert np.linalg.norm(wrong - expected, axis=-1).max() > 10  # the sign matters
    # and in a crop of the person's box
    c = kp2d.mean(0) + [7.0, -3.0]
    M = crop_matrix(c, 250.0, RES, rot, flip)
    in_crop = crop_keypoints(kp, M, flip, "coco17")[:, :2]
    c_aug = _apply(augment_matrix(rot, flip, pp), [c])[0]
    np.testing.assert_allclose(full_to_crop(got, c_aug, 250.0, RES), in_crop, atol=1.0)
    # 3D points: augment_points3d projects where augment_matrix maps the projections
    pts = model(torch.as_tensor(pose).view(24, 3)[None], betas[None], transl[None]).joints[0]
    proj = project(torch.as_tensor(augment_points3d(pts.numpy(), rot, flip)), K).numpy()
    np.testing.assert_allclose(proj, _apply(augment_matrix(rot, flip, pp), project(pts, K).numpy()), atol=1e-6)


def test_augment_pose_is_spins_and_batched():
    rng = np.random.default_rng(3)
    pose = rng.normal(0, 0.4, (3, 72))
    assert np.allclose(augment_pose(pose), pose)
    out = augment_pose(pose, [10.0, 0.0, -5.0], [False, True, True])
    assert out.shape == (3, 72)
    np.testing.assert_allclose(out[1, 3:], pose[1].reshape(24, 3)[[0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13,
                                                                      15, 17, 16, 19, 18, 21, 20, 23, 22]][1:].reshape(-1)
                               * np.tile([1, -1, -1], 23))  # SPIN's flip_pose: swap, negate y and z
    np.testing.assert_allclose(out[0, 3:], pose[0, 3:])  # a rotation changes the global orientation only
    single = augment_pose(pose[0], 10.0, False)
    np.testing.assert_allclose(single, out[0])
    with pytest.raises(ValueError, match="72"):
        augment_pose(np.zeros((2, 69)))
    with pytest.raises(ValueError, match="one per pose"):
        augment_pose(pose, [1.0, 2.0])
