"""The loss terms shared by the fitter and the trainer: values on hand-made cases, per-sample
independence, gradients (torch.autograd.gradcheck), and the fitter's objective built from them."""
import torch
from torch.autograd import gradcheck

from fitlib import losses
from fitlib.body.layouts import get_layout


def test_clean_keypoints(dtype):
    kp = torch.tensor([[[10.0, 20.0, 0.9], [float("nan"), 5.0, 0.9], [30.0, 40.0, 0.1], [5000.0, 5.0, 0.9]]],
                      dtype=dtype)
    producible = torch.tensor([True, True, True, True])
    xy, w, usable = losses.clean_keypoints(kp, producible, torch.tensor([2.0, 1, 1, 1], dtype=dtype), 0.2,
                                           True, torch.tensor([[100.0, 100.0]], dtype=dtype))
    assert usable.tolist() == [[True, False, False, False]]  # NaN, low confidence, far outside the image
    assert torch.allclose(w, torch.tensor([[2 * 0.81, 0, 0, 0]], dtype=dtype))
    assert torch.isfinite(xy).all() and (xy[0, 1:] == 0).all()
    _, w_lin, _ = losses.clean_keypoints(kp, producible, torch.ones(4, dtype=dtype), 0.2, False)
    assert torch.allclose(w_lin[0, 0], torch.tensor(0.9, dtype=dtype))
    _, _, usable = losses.clean_keypoints(kp, torch.tensor([False, True, True, True]), torch.ones(4, dtype=dtype), 0.2)
    assert not usable[0, 0]  # a point the body model cannot produce


def test_canonical_scale():
    xy = torch.tensor([[[0.0, 0.0], [30.0, 40.0], [1000.0, 1000.0]]])
    usable = torch.tensor([[True, True, False]])
    assert torch.allclose(losses.canonical_scale(xy, usable), torch.tensor([losses.CANONICAL_SIZE / 50.0]))
    assert torch.allclose(losses.canonical_scale(xy, torch.zeros_like(usable)), torch.tensor([2.0]))  # fallback 100 px


def test_reprojection_loss_values(dtype):
    target = torch.zeros(2, 3, 2, dtype=dtype)
    proj = torch.tensor([[[3.0, 4.0]] * 3, [[300.0, 400.0]] * 3], dtype=dtype)
    w = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=dtype)
    plain = losses.reprojection_loss(proj, target, w)
    assert torch.allclose(plain, torch.tensor([50.0, 250000.0], dtype=dtype))
    robust = losses.reprojection_loss(proj, target, w, sigma=100.0)
    assert torch.allclose(robust, torch.tensor([2 * 1e4 * 25 / (1e4 + 25), 1e4 * 250000 / (1e4 + 250000)], dtype=dtype))
    assert robust[1] < 1e4  # Geman-McClure saturates at sigma²
    scaled = losses.reprojection_loss(proj, target, w, scale=torch.tensor([2.0, 1.0], dtype=dtype))
    assert torch.allclose(scaled[0], 4 * plain[0])


def test_reprojection_loss_per_sample_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(4, 5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
    w = torch.rand(4, 5, generator=g, dtype=torch.float64)
    scale = torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    full = losses.reprojection_loss(proj, target, w, scale, 1.5)
    alone = losses.reprojection_loss(proj[2:3], target[2:3], w[2:3], scale[2:3], 1.5)
    assert torch.allclose(full[2:3], alone)
    assert gradcheck(lambda p: losses.reprojection_loss(p, target, w, scale, 1.5), (proj,))


def test_keypoint_3d_loss_root_aligned(dtype):
    g = torch.Generator().manual_seed(1)
    target = torch.randn(3, 24, 3, generator=g, dtype=dtype)
    w = torch.ones(3, 24, dtype=dtype)
    shifted = target + torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
    assert torch.allclose(losses.keypoint_3d_loss(shifted, target, w, root=(1, 2)), torch.zeros(3, dtype=dtype),
                          atol=1e-5)
    assert (losses.keypoint_3d_loss(shifted, target, w) > 1.0).all()
    p = target.clone().double().requires_grad_(True)
    assert gradcheck(lambda x: losses.keypoint_3d_loss(x, target.double(), w.double(), root=(1, 2)), (p,))


def test_smpl_param_loss_masked(dtype):
    pose = torch.zeros(2, 24, 3, dtype=dtype)
    other = pose.clone()
    other[:, 5, 0] = 0.3
    betas = torch.zeros(2, 10, dtype=dtype)
    lp, lb = losses.smpl_param_loss(other, pose, betas + 1, betas, torch.tensor([True, False]))
    assert lp[0] > 0 and lp[1] == 0 and torch.allclose(lb, torch.tensor([10.0, 0.0], dtype=dtype))
    rot = losses.smpl_param_loss(pose, pose, betas, betas, torch.ones(2))[0]
    assert torch.equal(rot, torch.zeros(2, dtype=dtype))


def test_prior_terms():
    terms = losses.PriorTerms("gmm")
    modes = terms.mixture.start_poses(terms.mixture.gmm_means.shape[0])
    assert torch.isclose(terms.pose(modes).min(), torch.tensor(0.0), atol=1e-4)  # shifted: 0 at the best mode
    wild = terms.mixture.sample_uniform(16, torch.Generator().manual_seed(0))
    assert (terms.pose(wild) > terms.pose(modes).max()).all()
    assert torch.allclose(terms.shape(torch.ones(2, 10)), torch.full((2,), 5.0))
    assert losses.PriorTerms("none").mixture is None and losses.PriorTerms("none").pose(wild).abs().sum() == 0
    assert (losses.PriorTerms("limits").pose(wild) == 0).all()  # uniform samples lie within the ranges
    assert (losses.PriorTerms("limits").pose(3 * wild) > 0).all()


def test_fitter_objective_is_built_from_the_losses(open_model):
    """The fitter's stage objective equals the sum of the loss module's terms with the stage's weights."""
    from fitlib.camera import default_intrinsics, project
    from fitlib.fitting import load_config
    from fitlib.fitting.fitter import StageObjective, Targets
    from fitlib.params import SMPLParams

    cfg = load_config()
    stage = cfg.stages[2]
    layout = get_layout("coco17")
    terms = losses.PriorTerms(cfg.pose_prior)
    g = torch.Generator().manual_seed(2)
    p = SMPLParams(torch.tensor([[3.1, 0.0, 0.0]] * 2), 0.2 * torch.randn(2, 69, generator=g),
                   torch.randn(2, 10, generator=g), torch.tensor([[0.0, 0.0, 4.0]] * 2))
    K = default_intrinsics(1080, 1920).expand(2, 3, 3)
    xy = torch.rand(2, 17, 2, generator=g) * 500
    w = torch.rand(2, 17, generator=g)
    t = Targets(xy, w, K, torch.tensor([0.5, 1.0]), torch.full((2,), 4.0), torch.zeros(2, 69))
    got = StageObjective(open_model, layout, cfg, stage, terms, init_pose_given=True)(p, t)
    proj = project(open_model(p.pose, p.betas, p.transl, layout=layout).keypoints, K)
    sw = stage.weights
    want = (sw["data"] * losses.reprojection_loss(proj, xy, w, t.scale, cfg.robust_sigma)
            + sw["pose_prior"] * terms.pose(p.body_pose) + sw["angle"] * terms.angle(p.body_pose)
            + sw["shape"] * terms.shape(p.betas) + sw["init_pull"] * p.body_pose.pow(2).sum(-1))
    assert torch.allclose(got, want, rtol=1e-5)
