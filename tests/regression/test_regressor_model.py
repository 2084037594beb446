"""The regressor network: shapes, the IEF loop, 6D rotations, CLIFF's camera, independence of samples."""
import pytest
import roma
import torch

from fitlib.camera import project
from fitlib.regression import camera
from fitlib.regression.heads import IEFHead
from fitlib.regression.model import Regressor, RegressorConfig, initial_pose6d


def _inputs(B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(B, 17, 3, generator=g) * torch.tensor([640.0, 480.0, 1.0])
    kp[0, 3] = float("nan")  # a missing point
    K = torch.tensor([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]]).expand(B, 3, 3)
    return kp, K


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Regressor(RegressorConfig(hypotheses=2, encoder_hidden=32, encoder_blocks=1, head_hidden=64))


def test_shapes_dtypes_and_iterations(net, open_model):
    kp, K = _inputs()
    net.train()
    out = net(kp, K)
    assert out.rotmat.shape == (3, 5, 2, 24, 3, 3) and out.rotmat.dtype == torch.float32
    assert out.betas.shape == (3, 5, 2, 10) and out.cam.shape == (3, 5, 2, 3) and out.pelvis.shape == (3, 5, 2, 3)
    assert out.centre.shape == (5, 2) and out.size.shape == (5,) and not out.visible[0, 3]
    net.eval()
    out = net(kp, K)
    assert out.rotmat.shape[0] == 1  # eval: the last iteration only
    p = out.params(open_model)
    assert p.global_orient.shape == (5, 2, 3) and p.body_pose.shape == (5, 2, 69) and p.transl.shape == (5, 2, 3)
    assert all(torch.isfinite(getattr(p, k)).all() for k in p.given())


def test_ief_runs_its_iterations_from_the_mean():
    calls = []
    head = IEFHead(8, 3, initial_pose6d(1), torch.zeros(10), torch.tensor([0.9, 0, 0]), hidden=16, iterations=4)
    head.fc2.register_forward_hook(lambda *a: calls.append(1))
    pose, betas, cam = head(torch.zeros(2, 8), torch.zeros(2, 3))
    assert len(calls) == 4 and pose.shape == (4, 2, 1, 144)
    # decoders start near zero: the first estimate is near the mean parameters
    assert torch.allclose(cam[0, :, 0], torch.tensor([0.9, 0, 0]).expand(2, 3), atol=0.05)
    assert torch.allclose(pose[0, :, 0], initial_pose6d(1)[0].expand(2, 144), atol=0.05)


def test_6d_gives_rotations(net):
    kp, K = _inputs(seed=1)
    R = net(kp, K).rotmat
    eye = torch.eye(3).expand_as(R)
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(R.shape[:-2]), atol=1e-5)


def test_initial_hypotheses_face_the_camera_and_away():
    pose6d = initial_pose6d(2).view(2, 24, 3, 2)
    R0 = roma.special_gramschmidt(pose6d[:, 0])
    front = R0 @ torch.tensor([0.0, 0.0, 1.0])  # the body's forward axis in the camera frame
    up = R0 @ torch.tensor([0.0, 1.0, 0.0])
    assert front[0, 2] < -0.99 and front[1, 2] > 0.99  # towards the camera / away from it
    assert (up[:, 1] < -0.99).all()  # upright (camera y points down)


def test_cliff_camera_conversion_is_exact():
    g = torch.Generator().manual_seed(3)
    B = 64
    K = torch.zeros(B, 3, 3)
    f = 500 + 2000 * torch.rand(B, generator=g)
    K[:, 0, 0] = K[:, 1, 1] = f
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = 540 + 10 * torch.randn(B, generator=g), 960 + 10 * torch.randn(B, generator=g), 1
    centre = torch.rand(B, 2, generator=g) * torch.tensor([1080.0, 1920.0])
    size = 50 + 800 * torch.rand(B, generator=g)
    cam = torch.stack([0.3 + torch.rand(B, generator=g), torch.randn(B, generator=g) * 0.3,
                       torch.randn(B, generator=g) * 0.3], -1)
    pelvis = camera.crop_to_translation(cam.double(), centre.double(), size.double(), K.double())
    # the pelvis projects exactly where the weak-perspective crop camera puts the root
    uv = project(pelvis[:, None], K.double())[:, 0]
    expected = centre.double() + 0.5 * size.double()[:, None] * cam.double()[:, 0:1] * cam.double()[:, 1:]
    assert torch.allclose(uv, expected, atol=1e-6)
    assert torch.allclose(pelvis[:, 2], 2 * f.double() / (size.double() * cam[:, 0].double()), rtol=1e-12)
    back = camera.translation_to_crop(pelvis, centre.double(), size.double(), K.double())
    assert torch.allclose(back, cam.double(), atol=1e-9)
    # and a point off the pelvis projects as the weak-perspective camera says, up to its depth offset
    pts = pelvis[:, None] + torch.tensor([[0.1, -0.2, 0.0]], dtype=torch.float64)
    wp = camera.weak_perspective_project(pts, pelvis, cam.double())
    full = camera.to_box(project(pts, K.double()), centre.double(), size.double())
    assert torch.allclose(wp, full, atol=1e-6)


def test_eval_mode_samples_are_independent(net):
    net.eval()
    kp, K = _inputs(B=6, seed=2)
    with torch.no_grad():
        full = net(kp, K)
        single = net(kp[2:3], K[2:3])
        other = kp.clone()
        other[[0, 1, 3, 4, 5]] = torch.rand(5, 17, 3) * 100
        mixed = net(other, K)
    assert torch.allclose(full.rotmat[:, 2], single.rotmat[:, 0], atol=1e-5)
    assert torch.allclose(full.pelvis[:, 2], mixed.pelvis[:, 2], atol=1e-5)


def test_missing_points_are_flagged_not_zero(net):
    """A point at (0, 0) with confidence is seen; the same point missing is flagged, and differs."""
    net.eval()
    kp, K = _inputs(B=1, seed=4)
    a = kp.clone()
    a[0, 5] = torch.tensor([0.0, 0.0, 0.9])
    b = kp.clone()
    b[0, 5] = torch.tensor([float("nan"), float("nan"), 0.0])
    assert net.visible(a)[0, 5] and not net.visible(b)[0, 5]
    fa = net.encoder.features
    from fitlib.regression.encoders import EncoderInput
    va, vb = net.visible(a), net.visible(b)
    c, s = camera.keypoint_box(torch.nan_to_num(b[..., :2]), vb)
    assert not torch.equal(fa(EncoderInput(a, va, c, s)), fa(EncoderInput(b, vb, c, s)))


def test_bad_shapes_and_config():
    with pytest.raises(ValueError, match="coco17"):
        Regressor(RegressorConfig(encoder_hidden=8, head_hidden=8))(torch.zeros(2, 18, 3), torch.eye(3).expand(2, 3, 3))
    with pytest.raises(ValueError, match="hidden_size"):
        RegressorConfig.model_validate({"hidden_size": 3})


def test_spin_camera_is_exact_under_its_implied_intrinsics():
    """SPIN's crop camera (f = 5000 px on a 224 px crop, on SMPL's origin), converted to a full-image camera:
    with the intrinsics it implies, every point lands where SPIN's own perspective crop projection puts it."""
    g = torch.Generator().manual_seed(4)
    B, N = 32, 50
    centre = torch.rand(B, 2, generator=g, dtype=torch.float64) * torch.tensor([1920.0, 1080.0], dtype=torch.float64)
    size = 80 + 600 * torch.rand(B, generator=g, dtype=torch.float64)
    cam = torch.stack([0.5 + torch.rand(B, generator=g, dtype=torch.float64),
                       0.2 * torch.randn(B, generator=g, dtype=torch.float64),
                       0.2 * torch.randn(B, generator=g, dtype=torch.float64)], -1)
    body = 0.5 * torch.randn(B, N, 3, generator=g, dtype=torch.float64)  # points about the origin (m)
    # SPIN: perspective in the 224 crop, principal point at its centre, origin at depth 2 f / (224 s)
    tz = 2 * 5000.0 / (224 * cam[:, 0])
    t = torch.cat([cam[:, 1:], tz[:, None]], -1)
    X = body + t[:, None]
    crop_px = 5000.0 * X[..., :2] / X[..., 2:] + 112.0
    full_spin = centre[:, None] + (crop_px - 112.0) * (size / 224.0)[:, None, None]  # crop -> image pixels
    K = camera.spin_intrinsics(centre, size)
    origin = camera.crop_to_translation(cam, centre, size, K)
    assert torch.allclose(origin, t, atol=1e-9)
    assert torch.allclose(project(body + origin[:, None], K), full_spin, atol=1e-6)
    box = camera.spin_project(body + origin[:, None], origin, cam)
    assert torch.allclose(centre[:, None] + 0.5 * size[:, None, None] * box, full_spin, atol=1e-6)
    # with an image's own intrinsics the origin lands on the same pixel and the body keeps SPIN's scale
    K2 = torch.tensor([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]], dtype=torch.float64).expand(B, 3, 3)
    o2 = camera.crop_to_translation(cam, centre, size, K2)
    assert torch.allclose(project(o2[:, None], K2)[:, 0], project(origin[:, None], K)[:, 0], atol=1e-6)


def test_image_regressor_reads_crops_and_boxes(open_model):
    torch.manual_seed(0)
    net = Regressor(RegressorConfig(encoder="image", image_size=64, camera="spin", head_hidden=64)).eval()
    B = 3
    crops = torch.rand(B, 3, 64, 64)
    K = torch.tensor([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]]).expand(B, 3, 3)
    centre, size = torch.tensor([[300.0, 200.0]] * B), torch.tensor([150.0] * B)
    out = net(None, K, crops, centre, size)
    assert out.rotmat.shape == (1, B, 1, 24, 3, 3) and out.anchor == "origin" and not out.visible.any()
    assert torch.equal(out.centre, centre) and torch.equal(out.size, size)
    # SPIN's camera sits on SMPL's origin: transl is the converted position itself
    p = out.params(open_model)
    assert torch.allclose(p.transl, out.pelvis[0])
    # different crops, different estimates; the same crop, the same estimate whatever its batch
    assert not torch.allclose(out.betas[0, 0], out.betas[0, 1])
    alone = net(None, K[:1], crops[:1], centre[:1], size[:1])
    assert torch.allclose(alone.rotmat[0, 0], out.rotmat[0, 0], atol=1e-5)
    with pytest.raises(ValueError, match="crops"):
        net(None, K, torch.rand(B, 3, 32, 32), centre, size)
    with pytest.raises(ValueError, match="boxes"):
        net(None, K, crops)


def test_mean_params_start_the_head():
    pose6d = initial_pose6d(1)[0]
    betas, cam = torch.linspace(-1, 1, 10), torch.tensor([0.8, 0.1, -0.1])
    net = Regressor(RegressorConfig(encoder_hidden=16, encoder_blocks=0, head_hidden=32), mean_params=(pose6d, betas, cam))
    assert torch.equal(net.head.init_betas, betas) and torch.equal(net.head.init_cam, cam)
    with pytest.raises(ValueError, match="mean_params"):
        Regressor(RegressorConfig(encoder_hidden=16, head_hidden=32), mean_params=(pose6d[:10], betas, cam))


def _world_inputs(B=4, seed=0):
    from fitlib.body.layouts import WORLD_POINTS

    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, len(WORLD_POINTS), 3, generator=g) - 0.5) * 1.6


def test_world_branch_starts_at_zero_and_loads_a_2d_network(net):
    """A network with the world-landmark branch, given a 2D-only network's weights, answers as that network
    (the branch starts at zero), with or without landmarks; then it learns from them."""
    cfg = net.config.model_copy(update={"world_landmarks": True})
    world_net = Regressor(cfg)
    missing, unexpected = world_net.load_state_dict(net.state_dict(), strict=False)
    assert sorted(missing) == ["encoder.world_inp.bias", "encoder.world_inp.weight"] and not unexpected
    net.eval(), world_net.eval()
    kp, K = _inputs(B=4, seed=5)
    w = _world_inputs()
    with torch.no_grad():
        ref = net(kp, K).rotmat
        assert torch.allclose(world_net(kp, K, world=w).rotmat, ref, atol=1e-6)
        assert torch.allclose(world_net(kp, K).rotmat, ref, atol=1e-6)
    world_net.train()
    out = world_net(kp, K, world=w)
    out.rotmat.sum().backward()
    assert world_net.encoder.world_inp.weight.grad.abs().sum() > 0


def test_world_landmarks_change_the_estimate_per_person_and_nan_means_none():
    torch.manual_seed(1)
    net = Regressor(RegressorConfig(world_landmarks=True, encoder_hidden=32, encoder_blocks=1, head_hidden=64)).eval()
    torch.nn.init.normal_(net.encoder.world_inp.weight, std=0.1)  # as if trained
    kp, K = _inputs(B=4, seed=6)
    w = _world_inputs()
    with torch.no_grad():
        with_w, without = net(kp, K, world=w), net(kp, K)
        nan = w.clone()
        nan[1] = float("nan")
        part = net(kp, K, world=nan)
    assert not torch.allclose(with_w.rotmat, without.rotmat, atol=1e-4)
    assert torch.allclose(part.rotmat[:, 1], without.rotmat[:, 1], atol=1e-6)  # NaN row: no landmarks
    assert torch.allclose(part.rotmat[:, [0, 2, 3]], with_w.rotmat[:, [0, 2, 3]], atol=1e-6)  # the others keep theirs
    # the branch reads the body relative to its hips: moving all points together changes nothing
    with torch.no_grad():
        assert torch.allclose(net(kp, K, world=w + torch.tensor([0.3, -0.2, 0.5])).rotmat, with_w.rotmat, atol=1e-5)
    with pytest.raises(ValueError, match="world landmarks must be"):
        net(kp, K, world=torch.zeros(4, 33, 3))
    with pytest.raises(ValueError, match="keypoint encoder"):
        RegressorConfig(world_landmarks=True, encoder="image")
