"""The batched fitter on keypoints projected from known bodies (open model, plausible poses, known camera): the
multistart path (configs/multistart.yaml) and the checks every path shares; the refine path and the regressor's
start are tests/fitting/test_refine.py."""
import math

import numpy as np
import pytest
import roma
import torch

from fitlib.camera import default_intrinsics, project
from fitlib.evaluation.metrics import lsp14, pa_mpjpe
from fitlib.fitting import Fitter
from fitlib.fitting.starts import FACING_CAMERA
from fitlib.body.open_model import sample_plausible_poses

LAYOUT = "coco17_feet"


def _truth(model, n, seed):
    """Known bodies: plausible poses turned by up to ~35 degrees, shapes, 4-6 m in front of the camera."""
    g = torch.Generator().manual_seed(seed)
    pose = sample_plausible_poses(n, seed).float() * 0.4
    pose[:, 0] = roma.rotvec_composition([torch.tensor(FACING_CAMERA).expand(n, 3),
                                          torch.randn(n, 3, generator=g) * torch.tensor([0.1, 0.6, 0.1])])
    betas = torch.randn(n, 10, generator=g) * 0.7
    transl = torch.stack([torch.randn(n, generator=g) * 0.3, torch.randn(n, generator=g) * 0.2,
                          4 + 2 * torch.rand(n, generator=g)], -1)
    return {"pose": pose, "betas": betas, "transl": transl}


def _people(model, n, seed):
    t = _truth(model, n, seed)
    pose, betas, transl = t["pose"], t["betas"], t["transl"]
    K = default_intrinsics(1080, 1920)
    out = model(pose, betas, transl, layout=LAYOUT)
    kp = torch.cat([project(out.keypoints, K), torch.ones(n, out.keypoints.shape[1], 1)], -1)
    return kp, K, out.joints


@pytest.fixture(scope="module")
def scene(open_model):
    kp, K, joints = _people(open_model, 64, seed=3)
    res = Fitter(open_model, "multistart").fit(kp, K, LAYOUT, image_size=(1080, 1920))
    return kp, K, joints, res


def test_recovers_2d_and_3d(open_model, scene):
    kp, K, joints, res = scene
    assert res.fitted.all()
    # the default config trades the last pixel for plausible 3D (priors): ~2 px on people 300-500 px tall
    assert float(res.reprojection_error.median()) < 3.0
    fitted = open_model(res.params.pose, res.params.betas, res.params.transl)
    pa = pa_mpjpe(lsp14(fitted.joints.double()), lsp14(joints.double())) * 1000
    assert float(pa.median()) < 60.0, pa


def test_precise_config_reaches_subpixel(open_model, scene):
    """configs/precise.yaml (for clean keypoints) follows them to below a pixel, with 3D within a few cm."""
    kp, K, joints, res = scene
    out = Fitter(open_model, "precise").fit(kp[:8], K, LAYOUT, image_size=(1080, 1920))
    assert float(out.reprojection_error.median()) < 1.0
    assert float(out.reprojection_error.median()) < 0.6 * float(res.reprojection_error[:8].median())
    fitted = open_model(out.params.pose, out.params.betas, out.params.transl)
    pa = pa_mpjpe(lsp14(fitted.joints.double()), lsp14(joints[:8].double())) * 1000
    assert float(pa.median()) < 60.0, pa


def test_init_pull_only_with_an_init(open_model, scene):
    """init_pull keeps a given estimate's pose (on the refine path, and in the stages when a config has no
    refine section); without init= it is ignored (it would pull towards the fitter's own start)."""
    from fitlib.fitting.config import load_config

    kp, K, joints, _ = scene
    no_pull = load_config("multistart")
    for stage in no_pull.stages:
        stage.weights.pop("init_pull", None)
    assert load_config().stages[-1].weights["init_pull"] > 0
    a = Fitter(open_model, "multistart").fit(kp[:4], K, LAYOUT, image_size=(1080, 1920))
    b = Fitter(open_model, no_pull).fit(kp[:4], K, LAYOUT, image_size=(1080, 1920))
    assert torch.equal(a.params.pose, b.params.pose) and torch.equal(a.params.betas, b.params.betas)
    truth = {k: v[:4] for k, v in _truth(open_model, 64, 3).items()}
    g = torch.Generator().manual_seed(0)
    body_noise = 0.07 * torch.randn(4, 24, 3, generator=g)
    body_noise[:, 0] = 0.0  # a regressor-like estimate: right orientation, body joints off by ~0.1 rad
    start = dict(truth, pose=truth["pose"] + body_noise)
    refine = load_config().refine.model_dump()
    for pulled_cfg, free_cfg in ((load_config(), load_config().replace(refine={**refine, "weights": {
            **refine["weights"], "init_pull": 0.0}})), (load_config().replace(refine=None), no_pull.replace(refine=None))):
        pulled = Fitter(open_model, pulled_cfg).fit(kp[:4], K, LAYOUT, init=start, image_size=(1080, 1920))
        free = Fitter(open_model, free_cfg).fit(kp[:4], K, LAYOUT, init=start, image_size=(1080, 1920))
        moved = lambda out: float((out.params.pose[:, 1:] - start["pose"][:, 1:]).norm(dim=-1).mean())  # noqa: E731
        assert moved(pulled) < 0.5 * moved(free)
        err = lambda out: float(pa_mpjpe(lsp14(open_model(out.params.pose, out.params.betas,  # noqa: E731
                                                          out.params.transl).joints.double()),
                                         lsp14(joints[:4].double())).mean())
        assert err(pulled) < err(free)  # a good estimate is refined, not destroyed


def test_far_people_fit_as_well_as_near_ones(open_model, scene):
    """A longer focal length only moves the same 2D person further away (no depth cap)."""
    kp, K, _, res = scene
    far_K = K.clone()
    far_K[[0, 1], [0, 1]] *= 10
    far = Fitter(open_model, "fast").fit(kp[:2], far_K, LAYOUT, image_size=(1080, 1920))
    near = Fitter(open_model, "fast").fit(kp[:2], K, LAYOUT, image_size=(1080, 1920))
    assert torch.allclose(far.params.transl[:, 2] / near.params.transl[:, 2], torch.full((2,), 10.0), rtol=0.1)
    assert float(far.reprojection_error.max()) < 2 * float(near.reprojection_error.max()) + 0.5


def test_alone_equals_in_batch(open_model, scene):
    kp, K, _, res = scene
    alone = Fitter(open_model, "multistart").fit(kp[5:6], K, LAYOUT, image_size=(1080, 1920))
    assert torch.allclose(alone.params.pose[0], res.params.pose[5], atol=1e-3)
    assert torch.allclose(alone.params.transl[0], res.params.transl[5], atol=1e-3)
    assert abs(float(alone.reprojection_error[0] - res.reprojection_error[5])) < 1e-2


def test_garbage_person_does_not_spoil_the_batch(open_model, scene):
    kp, K, _, res = scene
    bad = torch.cat([kp[:3], torch.full_like(kp[:1], float("nan")), kp[:3, :, :].clone()[:1] * torch.tensor([1, 1, 0])])
    out = Fitter(open_model, "multistart").fit(bad, K, LAYOUT, image_size=(1080, 1920))
    assert out.fitted.tolist() == [True, True, True, False, False]
    assert torch.isnan(out.reprojection_error[3:]).all()
    assert torch.allclose(out.params.pose[:3], res.params.pose[:3], atol=1e-3)


def test_thread_count_is_restored(open_model, scene):
    """Small stages run on one CPU thread (optimizers.SINGLE_THREAD_ROWS); the caller's setting comes back,
    also when a stage fails."""
    from fitlib.fitting import optimizers

    kp, K, _, res = scene
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = Fitter(open_model, "multistart").fit(kp[5:6], K, LAYOUT, image_size=(1080, 1920))
        assert torch.get_num_threads() == 2
        assert torch.allclose(out.params.pose[0], res.params.pose[5], atol=1e-3)  # same fit whatever the thread count
        seen = []

        def failing(*args):
            seen.append(torch.get_num_threads())
            raise RuntimeError("stage failed")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(optimizers, "run_adam", failing)
            with pytest.raises(RuntimeError, match="stage failed"):
                Fitter(open_model, "multistart").fit(kp[:1], K, LAYOUT)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_refine_runs_on_one_thread(open_model, scene):
    """The refine path of a small batch runs on one CPU thread, like the stages, and the caller's setting comes back."""
    from fitlib.fitting import fitter as fitter_module

    kp, K, _, res = scene
    seen = []
    real = fitter_module.refine

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(fitter_module, "refine", recording)
            Fitter(open_model, "multistart").fit(kp[:2], K, LAYOUT, init=res.params.index(slice(0, 2)),
                                                 image_size=(1080, 1920))
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_bad_inputs(open_model):
    K = default_intrinsics(100, 100)
    with pytest.raises(ValueError, match="shape"):
        Fitter(open_model, "multistart").fit(torch.zeros(2, 5, 3), K, "coco17")
    with pytest.raises(ValueError, match="K must"):
        Fitter(open_model, "multistart").fit(torch.zeros(1, 17, 3), torch.zeros(3, 3), "coco17")
    with pytest.raises(ValueError, match="unknown keypoint layout"):
        Fitter(open_model, "multistart").fit(torch.zeros(1, 17, 3), K, "nope")
    with pytest.raises(ValueError, match="init pose"):
        Fitter(open_model, "multistart").fit(torch.ones(1, 17, 3), K, "coco17", init={"pose": torch.full((1, 72), math.nan)})
    kp = torch.ones(2, 17, 3)
    for size in ((0, 0), (480, float("nan")), [[480, 640]] * 3, (480, 640, 3)):
        with pytest.raises(ValueError, match="image_size"):
            Fitter(open_model, "multistart").fit(kp, K, "coco17", image_size=size)
    for init, match in (({"orientation": torch.zeros(2, 3)}, "unknown entries"),
                        ({"betas": torch.zeros(2, 16)}, "init betas must hold 10"),
                        ({"pose": torch.zeros(1, 72)}, "init pose must hold 72"),
                        ({"transl": torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, -5.0]])}, "behind the camera")):
        with pytest.raises(ValueError, match=match):
            Fitter(open_model, "multistart").fit(kp, K, "coco17", init=init)


def test_lbfgs_each_person_alone(open_model, scene):
    """L-BFGS runs one person at a time: a garbage neighbour does not change a person's fit."""
    from fitlib.fitting.config import load_config

    kp, K, _, _ = scene
    cfg = load_config("multistart").replace(optimizer="lbfgs")
    alone = Fitter(open_model, cfg).fit(kp[:1], K, LAYOUT)
    junk = kp[1:2].clone()
    junk[..., :2] = junk[..., :2].mean(1, keepdim=True) + torch.randn(1, junk.shape[1], 2) * 3  # a tiny blob
    both = Fitter(open_model, cfg).fit(torch.cat([kp[:1], junk]), K, LAYOUT)
    assert torch.allclose(alone.params.pose[0], both.params.pose[0], atol=1e-4)
    assert np.isfinite(alone.reprojection_error.numpy()).all() and float(alone.reprojection_error[0]) < 10.0


def test_prior_file_setting(open_model, scene, tmp_path):
    import shutil
    from importlib import resources

    from fitlib.fitting.config import load_config

    kp, K, _, res = scene
    copy = tmp_path / "my_prior.npz"
    shutil.copy(resources.files("fitlib.priors_data") / "pose_prior.npz", copy)
    out = Fitter(open_model, load_config("multistart").replace(pose_prior_file=str(copy))).fit(kp[:2], K, LAYOUT)
    ref = Fitter(open_model, "multistart").fit(kp[:2], K, LAYOUT)
    assert torch.allclose(out.params.pose, ref.params.pose)
    with pytest.raises(FileNotFoundError):
        Fitter(open_model, load_config("multistart").replace(pose_prior_file=str(tmp_path / "no.npz"))).fit(kp[:2], K, LAYOUT)


def test_no_silent_wrong_fits(open_model, scene):
    """Invalid inputs are refused with a clear error; what cannot be fitted is flagged, never fitted=True."""
    kp, K, _, _ = scene
    fitter = Fitter(open_model, "fast")
    for conf in (5.0, 1e30, -0.5):
        bad = kp[:2].clone()
        bad[1, 3, 2] = conf
        with pytest.raises(ValueError, match="confidences must be in \\[0, 1\\].*person 1"):
            fitter.fit(bad, K, LAYOUT)
    for name, change in (("skew", (0, 1, 5.0)), ("bottom row", (2, 0, 0.1)), ("bottom row", (2, 2, 2.0))):
        bad_K = K.clone()
        bad_K[change[0], change[1]] = change[2]
        with pytest.raises(ValueError, match="no skew, bottom row 0 0 1"):
            fitter.fit(kp[:1], bad_K, LAYOUT)
    with pytest.raises(ValueError, match="K must be"):
        fitter.fit(kp[:1], "abc", LAYOUT)
    blob = kp[:2].clone()
    blob[0, :, :2] = blob[0, :1, :2]  # every keypoint on one pixel
    tiny_f = K.clone()
    tiny_f[[0, 1], [0, 1]] = 1e-9
    out = fitter.fit(blob, K, LAYOUT, image_size=(1080, 1920))
    assert out.fitted.tolist() == [False, True] and torch.isnan(out.reprojection_error[0])
    assert not fitter.fit(kp[:1], tiny_f, LAYOUT).fitted.any()
    with pytest.raises(ValueError, match="init betas must lie within"):
        fitter.fit(kp[:1], K, LAYOUT, init={"betas": torch.full((1, 10), 1e6)})
