"""Random poses within the joints' anatomical ranges: the bones land where the ranges say, posed by the open
body model, and they are lopsided the way real joints are (unlike poses about random axes)."""
import numpy as np
import pytest
import torch

from fitlib.body.model import load_body_model
from fitlib.body.open_model import sample_plausible_poses
from fitlib.body.priors import angle_prior
from fitlib.body.range_of_motion import RANGES_DEG, sample_anatomical_poses
from fitlib.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS, global_rotations

J = SMPL_JOINT_NAMES.index
N = 4000


@pytest.fixture(scope="module")
def model():
    return load_body_model("open")


@pytest.fixture(scope="module")
def poses():
    return sample_anatomical_poses(N, torch.Generator().manual_seed(0), dtype=torch.float64)


def _bone(model, pose: torch.Tensor, parent: str, child: str) -> torch.Tensor:
    """[n, 3] unit direction of the bone from joint ``parent`` to ``child`` in the frame of ``parent``'s own
    parent (where the joint's range is defined), the body's left mirrored to +x for right-side bones."""
    joints = model(pose.float(), torch.zeros(len(pose), 10)).joints.double()
    d = torch.nn.functional.normalize(joints[:, J(child)] - joints[:, J(parent)], dim=-1)
    frame = global_rotations(pose)[:, SMPL_PARENTS[J(parent)]]
    d = (frame.transpose(-1, -2) @ d[..., None])[..., 0]
    if parent.startswith("right"):
        d = d * torch.tensor([-1.0, 1.0, 1.0], dtype=d.dtype)
    return d


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_seeded(dtype):
    a = sample_anatomical_poses(64, torch.Generator().manual_seed(5), dtype=dtype)
    b = sample_anatomical_poses(64, torch.Generator().manual_seed(5), dtype=dtype)
    c = sample_anatomical_poses(64, torch.Generator().manual_seed(6), dtype=dtype)
    assert a.shape == (64, 24, 3) and a.dtype == dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all() and (a[:, 0] == 0).all()


def test_knees_and_elbows_only_bend_forwards(poses):
    """The fitter's own hyper-extension penalty is zero on every sample."""
    assert (angle_prior(poses[:, 1:].reshape(N, 69)) == 0).all()


@pytest.mark.parametrize("side", ["left", "right"])
def test_thighs_within_the_hip_range(model, poses, side):
    d = _bone(model, poses, f"{side}_hip", f"{side}_knee")
    flexion = np.degrees(torch.atan2(d[:, 2], -d[:, 1]).numpy())
    abduction = np.degrees(torch.asin(d[:, 0]).numpy())
    r = RANGES_DEG["hip"]
    # the open model's rest thigh leans ~6° off the vertical the ranges are drawn about, hence the slack
    assert flexion.min() > r["flexion"][0] - 10 and flexion.max() < r["flexion"][1] + 10
    assert abduction.min() > r["abduction"][0] - 10 and abduction.max() < r["abduction"][1] + 10
    assert flexion.max() > 100 and flexion.min() < -15  # the range is used, not only its middle


@pytest.mark.parametrize("side", ["left", "right"])
def test_upper_arms_within_the_shoulder_range(model, poses, side):
    d = _bone(model, poses, f"{side}_shoulder", f"{side}_elbow")
    behind = np.degrees(torch.asin(-d[:, 2]).numpy())
    assert behind.max() < RANGES_DEG["shoulder"]["behind"][1] + 5
    across = d[:, 0] < -0.05  # across the midline: in front of the body
    assert across.any() and (d[across, 2] > 0.1).all()
    assert d[:, 1].max() > 0.95 and d[:, 1].min() < -0.95  # overhead and hanging both reached


def test_lopsided_like_real_joints_unlike_random_axes(model, poses):
    """Thighs swung well forwards are many times those swung well backwards; about random axes the two are
    alike."""
    def forward_over_backward(pose):
        d = _bone(model, pose, "left_hip", "left_knee")
        flexion = torch.rad2deg(torch.atan2(d[:, 2], -d[:, 1]))
        return float((flexion > 20).double().mean() / (flexion < -20).double().mean())
    assert forward_over_backward(poses) > 10
    assert forward_over_backward(sample_plausible_poses(N, 1, dtype=torch.float64)) < 2.5


def test_left_and_right_alike(model, poses):
    left = _bone(model, poses, "left_hip", "left_knee").mean(0)
    right = _bone(model, poses, "right_hip", "right_knee").mean(0)
    assert torch.allclose(left, right, atol=0.03)
