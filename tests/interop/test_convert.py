"""Converting a fit to another body model's parameters by fitting that model to the source's posed joints and
named surface points: open -> open from a perturbed start (the real SMPL file is not available here), in mm."""
import numpy as np
import pytest
import torch

from fitlib.body.model import load_body_model
from fitlib.interop.convert import convert_fit


@pytest.fixture(scope="module")
def model64(open_model):
    return load_body_model("open", dtype=torch.float64)


def test_open_to_open_from_a_perturbed_start(model64):
    rng = np.random.default_rng(0)
    P = 3
    pose = rng.normal(0, 0.25, (P, 72))
    pose[:, :3] = rng.normal(0, 1, (P, 3))
    betas, transl = rng.normal(0, 1, (P, 10)), rng.normal(0, 1, (P, 3)) + [0, 0, 4]
    start_pose, start_betas = pose + rng.normal(0, 0.15, pose.shape), betas + rng.normal(0, 0.8, betas.shape)
    out = convert_fit(pose, betas, transl, model64, model64, init_pose=start_pose, init_betas=start_betas)
    assert out.points >= 30 and out.pose.shape == (P, 72) and out.betas.shape == (P, 10)
    assert (out.joint_error_mm < 1.0).all() and (out.point_error_mm < 1.0).all()
    t = torch.as_tensor
    with torch.no_grad():
        truth = model64(t(pose), t(betas), t(transl), vertices=True).vertices
        got = model64(t(out.pose), t(out.betas), t(out.transl), vertices=True).vertices
        before = model64(t(start_pose), t(start_betas), t(transl), vertices=True).vertices
    err = (got - truth).norm(dim=-1).mean(1).numpy() * 1000
    err_before = (before - truth).norm(dim=-1).mean(1).numpy() * 1000
    assert (err < 6.0).all() and (err < err_before / 5).all(), (err, err_before)


def test_refuses_unfitted_people(model64):
    with pytest.raises(ValueError, match="finite"):
        convert_fit(np.full((1, 72), np.nan), np.zeros((1, 10)), [[0, 0, 3]], model64, model64)
    with pytest.raises(ValueError, match="same people"):
        convert_fit(np.zeros((2, 72)), np.zeros((1, 10)), [[0, 0, 3]], model64, model64)
