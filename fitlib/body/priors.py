"""Pose and shape priors as differentiable negative log-likelihoods (torch).

All functions take arbitrary leading batch dimensions, return one value per sample (so the
result does not depend on how samples are batched), and follow the input's dtype and device.

* :class:`PosePrior` / :func:`load_pose_prior`: the shipped mixture prior over the 69 body-pose
  numbers, trained on real mocap by ``fitlib train-prior`` (see that script for the model).
* :func:`angle_prior`: penalty on elbow and knee hyper-extension.
* :func:`joint_limit_prior`: penalty outside per-axis joint ranges.
* :func:`shape_prior`: betas ~ N(0, I), true for the open model (by construction) and for SMPL.
"""
from __future__ import annotations

import math
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from fitlib.body.skeleton import SMPL_JOINT_NAMES

__all__ = ["PosePrior", "load_pose_prior", "angle_prior", "joint_limit_prior", "shape_prior"]

_BODY = SMPL_JOINT_NAMES[1:]


def _check_last(x: torch.Tensor, n: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != n:
        raise ValueError(f"{name} must have shape [..., {n}], got {tuple(x.shape)}")


class PosePrior(torch.nn.Module):
    """Negative log-density of body poses under the shipped mixture prior.

    ``f = transform @ body_pose``; the first D features follow a Gaussian mixture, the others
    independent zero-mean Gaussians (std ``rest_std``). The NLL is exact (normalised density, in
    nats), so it can be negative; only differences matter to an optimiser.

    Attributes (buffers): transform [69, 69], gmm_means [K, D], gmm_prec_chol [K, D, D] (precision
    = L L^T), gmm_log_norm [K] (log weight + log normaliser), rest_std [69 - D], joint_ranges
    [69, 2] (radians, lower/upper, used by :func:`joint_limit_prior` and for sampling).
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        super().__init__()
        for key in ("transform", "gmm_means", "gmm_prec_chol", "gmm_log_norm", "rest_std", "joint_ranges"):
            if key not in arrays:
                raise ValueError(f"pose prior is missing array {key!r}")
            a = np.asarray(arrays[key])
            if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
                raise ValueError(f"pose prior array {key!r} must be numeric, got dtype {a.dtype}")
            if not np.isfinite(a).all():
                raise ValueError(f"pose prior array {key!r} has non-finite values")
            self.register_buffer(key, torch.as_tensor(a, dtype=torch.float32))
        if self.gmm_means.dim() != 2 or not 0 < self.gmm_means.shape[1] <= 69:
            raise ValueError(f"pose prior array 'gmm_means' must have shape [K, D] with 0 < D <= 69, "
                             f"got {tuple(self.gmm_means.shape)}")
        k, d = self.gmm_means.shape
        for key, shape in (("gmm_prec_chol", (k, d, d)), ("gmm_log_norm", (k,)), ("transform", (69, 69)),
                           ("rest_std", (69 - d,)), ("joint_ranges", (69, 2))):
            if tuple(getattr(self, key).shape) != shape:
                raise ValueError(f"pose prior array {key!r} must have shape {list(shape)} (K={k}, D={d}), "
                                 f"got {list(getattr(self, key).shape)}")
        if not (self.rest_std > 0).all():
            raise ValueError("pose prior array 'rest_std' must be > 0")
        self.gmm_joints: tuple[str, ...] = tuple(str(j) for j in arrays.get("gmm_joints", ()))
        rest = -torch.log(self.rest_std).sum() - 0.5 * len(self.rest_std) * math.log(2 * math.pi)
        self.register_buffer("rest_log_norm", rest)

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:
        """NLL (nats) of body poses.

        Args:
            body_pose: [..., 69] axis-angle of joints 1..23 (radians); non-float input is cast to
                the prior's float dtype.

        Returns:
            [...] negative log-density per pose.
        """
        _check_last(body_pose, 69, "body_pose")
        if not body_pose.is_floating_point():
            body_pose = body_pose.to(self.transform.dtype)
        t = self.transform.to(body_pose)
        f = body_pose @ t.T
        d = self.gmm_means.shape[1]
        diff = f[..., None, :d] - self.gmm_means.to(body_pose)  # [..., K, D]
        z = torch.einsum("...kd,kde->...ke", diff, self.gmm_prec_chol.to(body_pose))
        log_mix = torch.logsumexp(self.gmm_log_norm.to(body_pose) - 0.5 * z.square().sum(-1), dim=-1)
        rest = 0.5 * (f[..., d:] / self.rest_std.to(body_pose)).square().sum(-1) - self.rest_log_norm.to(body_pose)
        return rest - log_mix

    def start_poses(self, n: int) -> torch.Tensor:
        """Body poses [n, 69] at the means of the ``n`` mixture components of highest peak density
        (weight x Gaussian normaliser; the other features at 0), highest first."""
        d = self.gmm_means.shape[1]
        n = min(n, self.gmm_means.shape[0])
        order = torch.argsort(self.gmm_log_norm, descending=True)[:n]
        f = torch.zeros(n, 69, dtype=self.transform.dtype, device=self.transform.device)
        f[:, :d] = self.gmm_means[order]
        return torch.linalg.solve(self.transform, f.T).T

    def sample_uniform(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, 69] body poses drawn uniformly within :attr:`joint_ranges` (a baseline of random poses)."""
        lo, hi = self.joint_ranges.unbind(-1)
        return lo + (hi - lo) * torch.rand(n, 69, generator=generator, dtype=lo.dtype, device=lo.device)


def _default_path() -> Path:
    return Path(str(resources.files("fitlib.priors_data").joinpath("pose_prior.npz")))


def load_pose_prior(path: str | Path | None = None) -> PosePrior:
    """Load a pose prior written by ``fitlib train-prior`` (default: the shipped one).

    Raises FileNotFoundError if ``path`` is not a file and ValueError naming the file if it is not
    a valid pose prior (.npz archive with the arrays :class:`PosePrior` needs).
    """
    path = Path(path) if path is not None else _default_path()
    if not path.is_file():
        raise FileNotFoundError(f"pose prior file {path} not found; train one with `fitlib train-prior`")
    try:
        data = np.load(path)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with data:
            arrays = {k: data[k] for k in data.files}
        return PosePrior(arrays)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"{path} is not a pose prior file: {e}") from e


# Hinge flexion of elbows and knees in SMPL's T-pose frames: knees flex about +x, the left
# elbow about -y and the right elbow about +y (the forearm moves forward).
_FLEXION = torch.zeros(69)
for _name, _axis, _sign in (("left_knee", 0, 1.0), ("right_knee", 0, 1.0), ("left_elbow", 1, -1.0), ("right_elbow", 1, 1.0)):
    _FLEXION[3 * _BODY.index(_name) + _axis] = _sign
_FLEXION_IDX = torch.nonzero(_FLEXION).flatten()
_FLEXION_SIGN = _FLEXION[_FLEXION_IDX]
ANGLE_SCALE = 0.1
"""Default hyper-extension (radians) that costs 1 in :func:`angle_prior`."""
LIMIT_SCALE = 0.1
"""Default excess over a joint range (radians) that costs 1 in :func:`joint_limit_prior`."""


def angle_prior_terms(dtype: torch.dtype = torch.float32, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which body-pose numbers :func:`angle_prior` reads: (indices [4] into the 69, flexion signs [4]);
    flexion = ``body_pose[..., idx] * sign`` (positive = the anatomical bend)."""
    return _FLEXION_IDX.to(device), _FLEXION_SIGN.to(device=device, dtype=dtype)


def angle_prior(body_pose: torch.Tensor, tolerance: float = 0.0, scale: float = ANGLE_SCALE) -> torch.Tensor:
    """Penalty on elbow and knee hyper-extension (flexion below zero).

    Args:
        body_pose: [..., 69] axis-angle of joints 1..23 (radians).
        tolerance: hyper-extension (radians) allowed for free.
        scale: hyper-extension (radians) that costs 1.

    Returns:
        [...] sum over the four joints of ``(max(0, -flexion - tolerance) / scale) ** 2``.
    """
    _check_last(body_pose, 69, "body_pose")
    flex = body_pose[..., _FLEXION_IDX.to(body_pose.device)] * _FLEXION_SIGN.to(body_pose)
    return (torch.relu(-flex - tolerance) / scale).square().sum(-1)


def joint_limit_prior(body_pose: torch.Tensor, joint_ranges: torch.Tensor, scale: float = LIMIT_SCALE) -> torch.Tensor:
    """Penalty on axis-angle components outside per-axis joint ranges.

    Args:
        body_pose: [..., 69] axis-angle of joints 1..23 (radians).
        joint_ranges: [69, 2] lower and upper bounds (radians), e.g. ``PosePrior.joint_ranges``.
        scale: excess (radians) that costs 1.

    Returns:
        [...] sum of squared excesses over the bounds, divided by ``scale ** 2``.
    """
    _check_last(body_pose, 69, "body_pose")
    if joint_ranges.shape != (69, 2):
        raise ValueError(f"joint_ranges must have shape [69, 2], got {tuple(joint_ranges.shape)}")
    lo, hi = joint_ranges.to(body_pose).unbind(-1)
    excess = torch.relu(lo - body_pose) + torch.relu(body_pose - hi)
    return (excess / scale).square().sum(-1)


def shape_prior(betas: torch.Tensor) -> torch.Tensor:
    """NLL (up to a constant) of shape coefficients under N(0, I).

    The open model's betas are standard normal by construction and SMPL's are ~N(0, 1) too
    (PCA coefficients scaled by their standard deviations), so one prior serves both.

    Args:
        betas: [..., B] shape coefficients.

    Returns:
        [...] ``0.5 * sum(betas ** 2)``.
    """
    if not isinstance(betas, torch.Tensor) or betas.dim() < 1:
        raise ValueError(f"betas must be a tensor of shape [..., B], got {getattr(betas, 'shape', type(betas))}")
    return 0.5 * betas.square().sum(-1)
