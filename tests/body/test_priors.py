"""Tests of fitlib.body.priors: the shipped pose prior, angle / joint-limit / shape priors, reproducibility."""
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from fitlib.body import priors
from fitlib.datasets import mocap
from fitlib.body.skeleton import SMPL_JOINT_NAMES

BODY = {n: i - 1 for i, n in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def prior():
    return priors.load_pose_prior()


@pytest.fixture(scope="module")
def held_out():
    return torch.tensor(np.concatenate([c.body_pose for c in mocap.load_mocap("eval").values()]), dtype=torch.float64)


def _random_poses(shape, seed=0, dtype=torch.float64):
    return 0.3 * torch.randn(*shape, 69, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------------------------- pose prior

@pytest.mark.parametrize("shape", [(), (7,), (2, 3)])
def test_pose_prior_shapes(prior, dtype, device, shape):
    p = prior.to(device)
    out = p(_random_poses(shape, dtype=dtype).to(device))
    assert out.shape == shape and out.dtype == dtype and out.device.type == device.type
    assert torch.isfinite(out).all()


def test_pose_prior_batch_invariant(prior, dtype):
    x = _random_poses((16,), seed=1, dtype=dtype)
    full = prior(x)
    single = torch.stack([prior(x[i]) for i in range(16)])
    chunks = torch.cat([prior(x[:5]), prior(x[5:])])
    torch.testing.assert_close(full, single)
    torch.testing.assert_close(full, chunks)
    torch.testing.assert_close(prior(x.reshape(4, 4, 69)), full.reshape(4, 4))


def test_pose_prior_gradcheck(prior):
    x = _random_poses((3,), seed=2).requires_grad_()
    assert torch.autograd.gradcheck(prior, (x,))


def test_pose_prior_prefers_held_out_real_poses(prior, held_out):
    uniform = prior.double().sample_uniform(2000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        real, rand = prior(held_out), prior(uniform)
    assert torch.quantile(real, 0.95) < torch.quantile(rand, 0.05)
    assert real.mean() < rand.mean() - 100.0
    # also against random poses that keep the joints the data does not measure at rest
    measured = torch.zeros(69, dtype=torch.bool)
    for j in mocap.OBSERVED_JOINTS:
        measured[3 * BODY[j]:3 * BODY[j] + 3] = True
    assert torch.quantile(real, 0.95) < torch.quantile(prior(uniform * measured), 0.05)


def test_unmeasured_joints_not_pinned(prior, held_out):
    """Joints the data never measured get only their wide anatomical Gaussian, independent of the
    mixture: moving one costs the same on every pose, and little within its range; bending a knee
    sideways (which the mixture models) costs a lot."""
    x = held_out[::50]
    base = prior(x)

    def cost(joint, axis, angle):
        y = x.clone()
        y[:, 3 * BODY[joint] + axis] += angle
        return prior(y) - base

    for joint in ("left_wrist", "head", "right_collar", "left_foot", "right_hand"):
        for axis in range(3):
            dim = 3 * BODY[joint] + axis
            row = int(torch.nonzero(prior.transform[:, dim]).flatten()[0])
            std = float(prior.rest_std[row - prior.gmm_means.shape[1]])  # its own Gaussian, not the mixture
            angle = 0.5 * float(prior.joint_ranges[dim, 1])
            expected = 0.5 * ((x[:, dim] + angle) ** 2 - x[:, dim] ** 2) / std ** 2
            torch.testing.assert_close(cost(joint, axis, angle), expected, atol=1e-3, rtol=1e-3)
            assert expected.median() < 1.5, (joint, axis)  # half-way to the range bound is cheap
    assert cost("left_knee", 2, 0.4).median() > 10.0


def test_pose_prior_input_errors(prior, tmp_path):
    with pytest.raises(ValueError, match="69"):
        prior(torch.zeros(2, 72))
    with pytest.raises(ValueError, match="Tensor"):
        prior(np.zeros(69))
    with pytest.raises(FileNotFoundError, match="fitlib train-prior"):
        priors.load_pose_prior(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", transform=np.eye(69))
    with pytest.raises(ValueError, match="missing"):
        priors.load_pose_prior(tmp_path / "bad.npz")


def _bad_prior_files(tmp_path):
    """Write broken prior files to tmp_path; returns {file stem: array the error must name}."""
    raw = priors._default_path().read_bytes()
    with np.load(priors._default_path()) as data:
        real = dict(data)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "npy.npz").write_bytes((tmp_path / "array.npy").read_bytes())
    changed = {"means_1d": {"gmm_means": real["gmm_means"][0]},
               "prec_chol_size": {"gmm_prec_chol": real["gmm_prec_chol"][:, :3, :3]},
               "log_norm_len": {"gmm_log_norm": real["gmm_log_norm"][:3]},
               "rest_std_zero": {"rest_std": np.zeros_like(real["rest_std"])},
               "means_nan": {"gmm_means": real["gmm_means"] * np.nan}}
    for name, arrays in changed.items():
        np.savez(tmp_path / f"{name}.npz", **{**real, **arrays})
    return {"empty": "", "truncated": "", "npy": "", "means_1d": "gmm_means", "prec_chol_size": "gmm_prec_chol",
            "log_norm_len": "gmm_log_norm", "rest_std_zero": "rest_std", "means_nan": "gmm_means"}


def test_bad_pose_prior_files_raise_value_error(tmp_path):
    for name, array in _bad_prior_files(tmp_path).items():
        path = tmp_path / f"{name}.npz"
        with pytest.raises(ValueError, match="is not a pose prior file") as err:
            priors.load_pose_prior(path)
        assert str(path) in str(err.value) and array in str(err.value), name


def test_pose_prior_int_input(prior):
    pose = torch.zeros(2, 69, dtype=torch.long)
    out = prior(pose)
    assert out.dtype == prior.transform.dtype and torch.isfinite(out).all()
    assert torch.equal(out, prior(pose.to(prior.transform.dtype)))


def test_retraining_reproduces_shipped_prior(tmp_path):
    """Re-running the training command (``fitlib train-prior``, as a user would) reproduces the shipped file."""
    shipped_path = Path(str(resources.files("fitlib.priors_data").joinpath("pose_prior.npz")))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "fitlib.cli", "train-prior", "--out", str(tmp_path / "prior.npz")],
                   check=True, env=env, capture_output=True)
    with np.load(shipped_path) as shipped, np.load(tmp_path / "prior.npz") as fresh:
        assert sorted(shipped.files) == sorted(fresh.files)
        for key in shipped.files:
            if shipped[key].dtype.kind == "f":
                np.testing.assert_allclose(fresh[key], shipped[key], rtol=1e-4, atol=1e-5, err_msg=key)
            else:
                np.testing.assert_array_equal(fresh[key], shipped[key], err_msg=key)


# ---------------------------------------------------------------------------------------------- angle / limits / shape

def test_angle_prior_matches_geometry(dtype):
    """Flexion (no penalty) moves the forearm / shank the anatomical way; the opposite is penalised."""
    for joint, axis, sign in (("left_elbow", 1, -1), ("right_elbow", 1, 1), ("left_knee", 0, 1), ("right_knee", 0, 1)):
        pose = torch.zeros(2, 72, dtype=torch.float64)
        pose[0, 3 * (BODY[joint] + 1) + axis] = sign * 1.0
        pose[1, 3 * (BODY[joint] + 1) + axis] = -sign * 0.3
        joints = mocap.forward_kinematics(pose)
        child = mocap.SMPL_PARENTS.index(BODY[joint] + 1)
        forward = joints[0, child, 2] - joints[0, BODY[joint] + 1, 2]
        assert (forward > 0.1) if "elbow" in joint else (forward < -0.1)  # forearm forward, shank backward
        penalty = priors.angle_prior(pose[:, 3:].to(dtype))
        assert penalty[0] == 0 and penalty[1] == pytest.approx(9.0, rel=1e-4)


def test_angle_prior_zero_on_real_poses(held_out):
    assert (priors.angle_prior(held_out, tolerance=0.1) == 0).double().mean() > 0.99


def test_joint_limit_prior(prior, held_out, dtype):
    ranges = prior.joint_ranges
    inside = prior.sample_uniform(100, generator=torch.Generator().manual_seed(3)).to(dtype)
    assert torch.all(priors.joint_limit_prior(inside, ranges) == 0)
    outside = inside.clone()
    outside[:, 5] = ranges[5, 1].to(dtype) + 0.2
    torch.testing.assert_close(priors.joint_limit_prior(outside, ranges), torch.full((100,), 4.0, dtype=dtype))
    # held-out real poses stay (nearly) within the ranges; random poses do not
    excess = (torch.relu(ranges[:, 0] - held_out) + torch.relu(held_out - ranges[:, 1])).amax(-1)
    assert (excess == 0).double().mean() > 0.6 and torch.quantile(excess, 0.99) < 0.3
    assert priors.joint_limit_prior(held_out, ranges).mean() < 0.02 * priors.joint_limit_prior(_random_poses((1000,), 6) * 3, ranges).mean()
    with pytest.raises(ValueError, match=r"\[69, 2\]"):
        priors.joint_limit_prior(inside, ranges[:10])


def test_shape_prior(dtype):
    betas = torch.randn(4, 3, 10, dtype=dtype, generator=torch.Generator().manual_seed(4))
    out = priors.shape_prior(betas)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out, 0.5 * (betas ** 2).sum(-1))
    with pytest.raises(ValueError, match="betas"):
        priors.shape_prior(torch.tensor(1.0))


def test_small_priors_gradcheck():
    x = _random_poses((3,), seed=5)
    x[:, 3 * BODY["left_knee"]] = -0.2  # hyper-extended: the penalty is active
    x.requires_grad_()
    ranges = torch.full((69, 2), 0.25, dtype=torch.float64) * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(priors.angle_prior, (x,))
    assert torch.autograd.gradcheck(lambda p: priors.joint_limit_prior(p, ranges), (x,))
    assert torch.autograd.gradcheck(priors.shape_prior, (torch.randn(2, 10, dtype=torch.float64, requires_grad=True),))
