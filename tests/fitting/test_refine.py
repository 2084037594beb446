"""The refine path (fitlib.fitting.refine): exact Jacobians, never worse than the start, warm starts that
move, mixed batches, and people that do not disturb each other."""
import numpy as np
import pytest
import roma
import torch
from torch.autograd.functional import jacobian

import fitlib
from fitlib import losses
from fitlib.body.layouts import get_layout
from fitlib.body.open_model import sample_plausible_poses
from fitlib.camera import default_intrinsics, project
from fitlib.evaluation.metrics import lsp14, pa_mpjpe
from fitlib.fitting import Fitter, load_config
from fitlib.fitting.lm import LMSettings, batched_jacobian
from fitlib.fitting.refine import RefineObjective, RefineTargets, pack, refine
from fitlib.fitting.starts import FACING_CAMERA
from fitlib.params import SMPLParams

LAYOUT = "coco17"


def _people(model, n, seed, noise_px=0.0):
    g = torch.Generator().manual_seed(seed)
    pose = sample_plausible_poses(n, seed).float() * 0.4
    pose[:, 0] = roma.rotvec_composition([torch.tensor(FACING_CAMERA).expand(n, 3),
                                          torch.randn(n, 3, generator=g) * torch.tensor([0.1, 0.6, 0.1])])
    truth = SMPLParams.from_pose(pose, torch.randn(n, 10, generator=g) * 0.7,
                                 torch.stack([torch.randn(n, generator=g) * 0.3, torch.randn(n, generator=g) * 0.2,
                                              4 + 2 * torch.rand(n, generator=g)], -1))
    K = default_intrinsics(1080, 1920)
    out = model(truth.pose, truth.betas, truth.transl, layout=LAYOUT)
    xy = project(out.keypoints, K) + noise_px * torch.randn(n, 17, 2, generator=g)
    return torch.cat([xy, torch.ones(n, 17, 1)], -1), K, truth, out.joints


def _noisy(truth: SMPLParams, seed: int, sigma: float = 0.15) -> SMPLParams:
    g = torch.Generator().manual_seed(seed)
    n = len(truth)
    return truth.replace(body_pose=truth.body_pose + sigma * torch.randn(n, 69, generator=g),
                         betas=truth.betas + 0.5 * torch.randn(n, 10, generator=g),
                         transl=truth.transl * (1 + 0.1 * torch.randn(n, 1, generator=g)))


def _objective(model, kp, K, start, kind="gmm"):
    layout = get_layout(LAYOUT)
    xy, w, usable = losses.clean_keypoints(kp, model.keypoint_map(layout).mask, torch.ones(17, dtype=kp.dtype), 0.2)
    t = RefineTargets(xy, w, K.expand(len(kp), 3, 3), losses.canonical_scale(xy, usable), start.body_pose.clone(),
                      start.betas.clone())
    weights = {**load_config().refine.weights, "pose_prior": 1.0}  # every term clearly active
    return RefineObjective(model, layout, weights, 100.0, losses.PriorTerms(kind, device=kp.device, dtype=kp.dtype), t)


@pytest.mark.parametrize("kind", ["gmm", "limits", "l2", "none"])
def test_closed_form_jacobian_matches_autograd(open_model, kind):
    model = fitlib.load_body_model("open", dtype=torch.float64)
    kp, K, truth, _ = _people(open_model, 3, seed=1, noise_px=3.0)
    start = _noisy(truth, 2).to(dtype=torch.float64)
    start.body_pose[0, 3 * 3] = -0.5  # a hyper-extended knee: the angle prior is active
    obj = _objective(model, kp.double(), K.double(), start, kind)
    x = pack(start) * (1.5 if kind == "limits" else 1.0)  # beyond the joint ranges for the limits prior
    rows = torch.arange(3)
    r, J = obj.jacobian(x, rows)
    r_ref, J_ref = batched_jacobian(obj.residuals, x, rows, "forward")
    assert torch.allclose(r, r_ref) and torch.allclose(J, J_ref, atol=1e-8, rtol=1e-6)
    ne = obj.normal_equations(x, rows)  # the assembled J^T J and J^T r equal the full Jacobian's
    assert torch.allclose(ne.loss, r.pow(2).sum(-1)) and torch.allclose(ne.A, J.transpose(1, 2) @ J, atol=1e-8)
    assert torch.allclose(ne.g, (J.transpose(1, 2) @ r[..., None])[..., 0], atol=1e-8)


def test_keypoint_jacobian_matches_autograd_for_joint_points():
    """A model without vertex keypoints takes shoulders, hips, ... from its joints (as SMPL does)."""
    from fitlib.body.model import BodyModel
    from fitlib.body.model_file import read_model_file
    from fitlib.body.open_model import ensure_open_model

    data = dict(read_model_file(ensure_open_model()))
    data.pop("keypoint_regressor")
    model = BodyModel(data, "joints only", dtype=torch.float64)
    assert model.keypoint_map(LAYOUT).joint_weights.abs().sum() > 0
    g = torch.Generator().manual_seed(0)
    pose = (sample_plausible_poses(2, 4) * 0.7).double()
    betas, transl = torch.randn(2, 10, generator=g).double(), torch.randn(2, 3, generator=g).double()
    kp, J = model.keypoint_jacobian(pose, betas, transl, LAYOUT)
    f = lambda x: model(x[:, :72].reshape(-1, 24, 3), x[:, 72:82], x[:, 82:], layout=LAYOUT,  # noqa: E731
                        validate=False).keypoints.sum(0)
    x = torch.cat([pose.reshape(2, 72), betas, transl], -1)
    assert torch.allclose(kp, model(pose, betas, transl, layout=LAYOUT).keypoints)
    assert torch.allclose(J, jacobian(f, x).permute(2, 0, 1, 3), atol=1e-10)


def test_never_above_the_start(open_model):
    """For every person of a batch of 64 random (and some absurd) starts, the final loss <= the initial loss."""
    kp, K, truth, _ = _people(open_model, 64, seed=5, noise_px=3.0)
    g = torch.Generator().manual_seed(9)
    start = truth.replace(body_pose=torch.randn(64, 69, generator=g) * 0.6, betas=torch.randn(64, 10, generator=g) * 2,
                          global_orient=torch.randn(64, 3, generator=g) * 2,
                          transl=truth.transl * torch.exp(torch.randn(64, 1, generator=g)))
    obj = _objective(open_model, kp, K, start)
    res = refine(obj, pack(start), LMSettings(max_iterations=8))
    assert (res.loss <= res.initial_loss).all()
    assert torch.allclose(res.loss, obj.loss(res.x), rtol=1e-4)
    assert (res.loss < 0.9 * res.initial_loss).float().mean() > 0.9


def test_refines_noisy_estimates(open_model):
    """From a stand-in regressor's estimate (the truth with errors) to a fit near the truth."""
    kp, K, truth, joints = _people(open_model, 16, seed=3, noise_px=2.0)
    start = _noisy(truth, 4)
    out = Fitter(open_model).fit(kp, K, LAYOUT, init=start, image_size=(1080, 1920))
    pa = lambda p: 1000 * pa_mpjpe(lsp14(open_model(p.pose, p.betas, p.transl).joints.double()),  # noqa: E731
                                   lsp14(joints.double()))
    assert out.fitted.all() and out.converged.float().mean() > 0.7  # the others used their 6 iterations
    assert float(pa(out.params).mean()) < 0.6 * float(pa(start).mean())
    assert float(out.reprojection_error.median()) < 4.0
    assert (out.iterations <= 2 * load_config().refine.max_iterations).all()


def test_a_start_at_the_truth_stays_there(open_model):
    kp, K, truth, joints = _people(open_model, 16, seed=6)
    out = Fitter(open_model).fit(kp, K, LAYOUT, init=truth, image_size=(1080, 1920))
    fitted = open_model(out.params.pose, out.params.betas, out.params.transl).joints
    pa = 1000 * pa_mpjpe(lsp14(fitted.double()), lsp14(joints.double()))
    assert float(out.reprojection_error.median()) < 0.3
    assert float(pa.median()) < 2.0


def test_warm_start_on_shifted_keypoints_moves(data_dir):
    """messi5.jpg fitted, its keypoints shifted by 2 px, fitted again from the first result: the
    translation moves with the keypoints and the error is at most the from-scratch error (2D keypoints alone
    throughout: the detector's world landmarks would make the first fit another problem's optimum)."""
    img = fitlib.load_image(data_dir / "messi5.jpg")
    kps = fitlib.detect(img)
    first = fitlib.fit(img, kps.keypoints)
    shifted = kps.keypoints.copy()
    shifted[..., :2] += 2.0
    scratch = fitlib.fit(img, shifted)
    warm = fitlib.fit(img, shifted, init=first)
    assert warm.fitted.all() and warm.converged.all()
    assert np.abs(warm.transl - first.transl).max() > 1e-3
    assert (warm.reprojection_error <= scratch.reprojection_error + 1e-6).all()


def test_mixed_inits_and_garbage_neighbours(open_model):
    """People with an init and without in one call; an absurd start does not change the others' fits,
    and a person alone equals the same person inside the batch."""
    kp, K, truth, _ = _people(open_model, 6, seed=8, noise_px=2.0)
    start = _noisy(truth, 10)
    fitter = Fitter(open_model, "fast")
    inits = [start.index(slice(i, i + 1)) for i in range(6)]
    inits[1] = None  # this one from the fitter's own starts
    inits[4] = start.index(slice(4, 5)).replace(transl=torch.tensor([[40.0, -30.0, 900.0]]),
                                                 betas=torch.full((1, 10), 6.0))  # garbage
    both = fitter.fit(kp, K, LAYOUT, init=inits, image_size=(1080, 1920))
    assert both.fitted[[0, 1, 2, 3, 5]].all()
    alone = fitter.fit(kp[:1], K, LAYOUT, init=start.index(slice(0, 1)), image_size=(1080, 1920))
    assert torch.allclose(alone.params.pose, both.params.pose[:1], atol=1e-5)
    clean = fitter.fit(kp[[0, 2, 3, 5]], K, LAYOUT, init=SMPLParams.cat([inits[i] for i in (0, 2, 3, 5)]),
                       image_size=(1080, 1920))
    assert torch.allclose(clean.params.pose, both.params.pose[[0, 2, 3, 5]], atol=1e-5)
    scratch = fitter.fit(kp[1:2], K, LAYOUT, image_size=(1080, 1920))
    assert torch.allclose(scratch.params.pose, both.params.pose[1:2], atol=1e-4)
    with pytest.raises(ValueError, match="list of 2 per-person values for 6 people"):
        fitter.fit(kp, K, LAYOUT, init=inits[:2])


def test_converged_means_the_criterion(open_model):
    kp, K, truth, _ = _people(open_model, 4, seed=12, noise_px=2.0)
    start = _noisy(truth, 13)
    cfg = load_config()
    one = Fitter(open_model, cfg.replace(refine={**cfg.refine.model_dump(), "max_iterations": 1}))
    out = one.fit(kp, K, LAYOUT, init=start)
    assert not out.converged.any()  # stopped by the limit, not converged
    assert (out.iterations <= 2 * cfg.refine.screen_iterations + 1).all()  # two screened starts, then one
    assert Fitter(open_model).fit(kp, K, LAYOUT, init=start).converged.all()


def test_default_starts_from_the_regressor(open_model):
    """Without init=, the default config starts people from the shipped regressor's estimate and refines it
    (a few LM iterations, not the multistart stages' hundreds); a layout the regressor cannot read, and
    people it cannot read, go through the multistart path."""
    kp, K, truth, joints = _people(open_model, 8, seed=21, noise_px=2.0)
    fitter = Fitter(open_model)
    assert fitter.regressor is not None and Fitter(open_model, "multistart").regressor is None
    out = fitter.fit(kp, K, LAYOUT, image_size=(1080, 1920))
    pa = 1000 * pa_mpjpe(lsp14(open_model(out.params.pose, out.params.betas, out.params.transl).joints.double()),
                         lsp14(joints.double()))
    assert out.fitted.all() and (out.iterations < 40).all() and float(out.reprojection_error.median()) < 6.0
    assert float(pa.median()) < 90.0
    few = kp.clone()
    few[0, [0, 1, 2, 3, 4, 7, 8, 9, 10, 13, 14, 15, 16], 2] = 0.0  # the torso alone: too few for the regressor
    mixed = fitter.fit(few, K, LAYOUT, image_size=(1080, 1920))
    assert mixed.iterations[0] > 100 and (mixed.iterations[1:] < 40).all()  # person 0: the multistart path
    smpl = open_model(truth.pose, truth.betas, truth.transl, layout="smpl24").keypoints
    smpl_kp = torch.cat([project(smpl, K), torch.ones(8, 24, 1)], -1)[:2]
    assert (fitter.fit(smpl_kp, K, "smpl24").iterations > 100).all()  # smpl24 has no COCO names: multistart


def test_only_a_callers_estimates_are_also_tried_turned(open_model):
    """People seen from the side (front and back ambiguous in 2D): a caller's init= is also tried turned by 180
    degrees (more iterations: the screening of both starts), the regressor's own estimate is not, unless
    ``refine.turn_regressor_starts``."""
    from fitlib.fitting.starts import ambiguous_front

    kp, K, truth, _ = _people(open_model, 6, seed=31, noise_px=1.0)
    side = truth.replace(global_orient=roma.rotvec_composition([truth.global_orient, torch.tensor([0.0, 1.5, 0.0]).expand(6, 3)]))
    out = open_model(side.pose, side.betas, side.transl, layout=LAYOUT)
    kp = torch.cat([project(out.keypoints, K), torch.ones(6, 17, 1)], -1)
    xy, _, usable = losses.clean_keypoints(kp, open_model.keypoint_map(LAYOUT).mask, torch.ones(17), 0.2)
    assert ambiguous_front(xy, usable, get_layout(LAYOUT), load_config().flip_threshold).all()
    cfg = load_config()
    plain, turning = Fitter(open_model, cfg), Fitter(open_model, cfg.replace(
        refine={**cfg.refine.model_dump(), "turn_regressor_starts": True}))
    own = plain.fit(kp, K, LAYOUT, image_size=(1080, 1920))
    estimate = plain.regressor.predict(kp, K, LAYOUT).params
    given = plain.fit(kp, K, LAYOUT, init=estimate, image_size=(1080, 1920))
    turned = turning.fit(kp, K, LAYOUT, image_size=(1080, 1920))
    screen = cfg.refine.screen_iterations
    assert (given.iterations >= own.iterations + screen - 1).all()  # both starts screened, then the better one
    assert torch.equal(turned.iterations, given.iterations) and torch.allclose(turned.params.pose, given.params.pose)
    assert not torch.allclose(own.params.pose, given.params.pose)


def test_a_person_alone_equals_the_same_person_beside_an_ambiguous_one(open_model):
    """Only a person whose front and back are ambiguous screens two starts; the others of the batch go straight
    on, as when fitted alone (they used to be screened with them: 2 more iterations, a different fit)."""
    from fitlib.fitting.starts import ambiguous_front

    kp, K, truth, _ = _people(open_model, 4, seed=41, noise_px=1.5)
    side = truth.global_orient.clone()
    side[0] = roma.rotvec_composition([truth.global_orient[0], torch.tensor([0.0, 1.5, 0.0])])
    truth = truth.replace(global_orient=side)
    out = open_model(truth.pose, truth.betas, truth.transl, layout=LAYOUT)
    g = torch.Generator().manual_seed(42)
    kp = torch.cat([project(out.keypoints, K) + 1.5 * torch.randn(4, 17, 2, generator=g), torch.ones(4, 17, 1)], -1)
    xy, _, usable = losses.clean_keypoints(kp, open_model.keypoint_map(LAYOUT).mask, torch.ones(17), 0.2)
    ambiguous = ambiguous_front(xy, usable, get_layout(LAYOUT), load_config().flip_threshold)
    assert ambiguous[0] and not ambiguous.all()
    start = _noisy(truth, 43)
    fitter = Fitter(open_model)
    batch = fitter.fit(kp, K, LAYOUT, init=start, image_size=(1080, 1920))
    for i in range(4):
        alone = fitter.fit(kp[i:i + 1], K, LAYOUT, init=start.index(slice(i, i + 1)), image_size=(1080, 1920))
        assert torch.equal(alone.iterations, batch.iterations[i:i + 1])
        assert torch.allclose(alone.params.pose, batch.params.pose[i:i + 1], atol=1e-5)
        assert torch.allclose(alone.params.transl, batch.params.transl[i:i + 1], atol=1e-5)


def _world_of(model, truth: SMPLParams, seed: int, sigma: float = 0.03):
    """[P, 33, 3] BlazePose-like world landmarks of the true bodies (NaN where the model has no point)."""
    from fitlib.datasets.synthetic import WorldNoise, simulate_world_landmarks

    out = model(truth.pose, truth.betas, truth.transl, layout="mediapipe33")
    w = simulate_world_landmarks(out.keypoints.double().numpy(), get_layout("mediapipe33").names,
                                 np.random.default_rng(seed), WorldNoise(sigma=sigma, limb_flip=0.0))
    w[:, ~out.keypoint_mask.numpy()] = np.nan
    return w


def test_world_term_jacobian_matches_autograd(open_model):
    """The world-landmark residuals' closed-form Jacobian equals autograd's; a person without landmarks (NaN)
    has zero residuals there."""
    from fitlib.body.layouts import WORLD_POINTS
    from fitlib.camera import ray_rotation

    model = fitlib.load_body_model("open", dtype=torch.float64)
    kp, K, truth, _ = _people(open_model, 3, seed=11, noise_px=3.0)
    start = _noisy(truth, 12).to(dtype=torch.float64)
    obj = _objective(model, kp.double(), K.double(), start)
    names = get_layout("mediapipe33").names
    world = torch.as_tensor(_world_of(open_model, truth, 0))[:, [names.index(n) for n in WORLD_POINTS]]
    world[1] = float("nan")
    obj.t.world, obj.t.world_frame = world, ray_rotation(start.transl)
    obj = RefineObjective(model, get_layout(LAYOUT), {**obj.w, "world": 2000.0}, 100.0, obj.priors, obj.t, 0.1)
    x, rows = pack(start), torch.arange(3)
    r, J = obj.jacobian(x, rows)
    r_ref, J_ref = batched_jacobian(obj.residuals, x, rows, "forward")
    assert torch.allclose(r, r_ref) and torch.allclose(J, J_ref, atol=1e-8, rtol=1e-6)
    assert obj.world_residuals(x, rows)[1].abs().max() == 0 and obj.world_residuals(x, rows)[0].abs().max() > 0
    ne = obj.normal_equations(x, rows)
    assert torch.allclose(ne.A, J.transpose(1, 2) @ J, atol=1e-8) and torch.allclose(ne.loss, r.pow(2).sum(-1))


def test_world_landmarks_resolve_depth_the_keypoints_cannot(open_model):
    """From a stand-in regressor's estimate, the refine with BlazePose-like world landmarks (3 cm noise) lands
    nearer the true 3D pose than with the 2D keypoints alone, at a similar 2D error; people given NaN landmarks
    get exactly the fit they get without any."""
    kp, K, truth, joints = _people(open_model, 16, seed=13, noise_px=2.0)
    start = _noisy(truth, 14, sigma=0.3)
    world = _world_of(open_model, truth, 1)
    cfg = load_config("default")
    fitter = Fitter(open_model, cfg.replace(refine={**cfg.refine.model_dump(), "weights": {**cfg.refine.weights, "world": 2000.0}}))
    plain = fitter.fit(kp, K, LAYOUT, init=start, image_size=(1080, 1920))
    with_w = fitter.fit(kp, K, LAYOUT, init=start, image_size=(1080, 1920), world=world)
    pa = lambda p: 1000 * pa_mpjpe(lsp14(open_model(p.pose, p.betas, p.transl).joints.double()),  # noqa: E731
                                   lsp14(joints.double()))
    assert float(pa(with_w.params).mean()) < 0.8 * float(pa(plain.params).mean())
    assert float(with_w.reprojection_error.median()) < 1.5 * float(plain.reprojection_error.median()) + 1.0
    part = world.copy()
    part[::2] = np.nan
    mixed = fitter.fit(kp, K, LAYOUT, init=start, image_size=(1080, 1920), world=part)
    assert torch.allclose(mixed.params.pose[::2], plain.params.pose[::2], atol=1e-5)
    assert torch.allclose(mixed.params.pose[1::2], with_w.params.pose[1::2], atol=1e-5)
    with pytest.raises(ValueError, match="world landmarks must be"):
        fitter.fit(kp, K, LAYOUT, init=start, world=world[:3])
