"""Every loss term of fitlib, in one place: the fitter's objective and the regressor's training loss
are built from these functions, so the two can never drift apart.

All terms return one value per sample (``[...]`` for inputs ``[..., J, 2]`` and the like): a
sample's loss never depends on what else is in its batch. Units: pixels for 2D, metres for 3D,
radians for poses.

* :func:`clean_keypoints`: detected 2D keypoints to targets and per-point weights (confidence,
  thresholds, per-point weights, points the body model cannot produce or far outside the image).
* :func:`canonical_scale`: the factor that rescales a person's 2D size to :data:`CANONICAL_SIZE`
  pixels, so that one robust scale and one set of weights work at 224 px and at 4K.
* :func:`reprojection_loss`: confidence-weighted 2D reprojection, Geman-McClure robust or squared.
* :func:`keypoint_3d_loss`: root-aligned squared 3D keypoint error.
* :func:`smpl_param_loss`: rotation-matrix and betas squared errors against (pseudo-)ground truth.
* :func:`camera_front_loss`: keeps the person in front of the camera (the regressor's crop camera).
* :class:`PriorTerms`: the pose prior (mixture, joint limits or none), the elbow/knee angle prior
  and the shape prior, as per-sample terms.
"""
from __future__ import annotations

from typing import Sequence

import roma
import torch

from fitlib.body import priors
from fitlib.body.layouts import KeypointLayout

CANONICAL_SIZE = 200.0
"""A person's 2D size (box diagonal of the visible keypoints) is rescaled to this many pixels in the data term."""


def clean_keypoints(keypoints: torch.Tensor, producible: torch.Tensor, point_weights: torch.Tensor,
                    threshold: float, square_confidence: bool = True,
                    image_size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Targets and weights of the data term from detected keypoints.

    Args:
        keypoints: [P, J, 3] (x px, y px, confidence); NaN / infinite points are missing.
        producible: [J] bool, the points the body model can produce.
        point_weights: [J] a weight per point of the layout (e.g. COCO hips, which sit above SMPL's).
        threshold: points with a confidence below this are ignored.
        square_confidence: weight by confidence squared (SPIN) instead of confidence.
        image_size: [P, 2] (height, width) px; points more than an image size outside are ignored.
    Returns:
        ``xy`` [P, J, 2] (0 where unusable), ``weights`` [P, J] (0 where unusable), ``usable`` [P, J] bool.
    """
    xy, conf = keypoints[..., :2], keypoints[..., 2]
    finite = torch.isfinite(xy).all(-1) & torch.isfinite(conf)
    usable = finite & (conf >= threshold) & producible[None]
    if image_size is not None:
        h, w = image_size[:, :1], image_size[:, 1:]
        margin = torch.maximum(h, w)
        inside = (xy[..., 0] > -margin) & (xy[..., 0] < w + margin) & (xy[..., 1] > -margin) & (xy[..., 1] < h + margin)
        usable &= inside
    xy = torch.where(usable[..., None], xy, torch.zeros_like(xy))
    conf = torch.where(usable, conf.clamp(0, 1), torch.zeros_like(conf))
    weights = (conf**2 if square_confidence else conf) * point_weights
    return xy, weights * usable.to(xy.dtype), usable


def box_diagonal(xy: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """[P] diagonal (px) of the box around each person's usable points ``xy`` [P, J, 2] (``usable`` [P, J]);
    0 for a person without any."""
    lo = torch.where(usable[..., None], xy, torch.full_like(xy, float("inf"))).amin(-2)
    hi = torch.where(usable[..., None], xy, torch.full_like(xy, float("-inf"))).amax(-2)
    size = (hi - lo).norm(dim=-1)
    return torch.where(torch.isfinite(size), size, torch.zeros_like(size))


def canonical_scale(xy: torch.Tensor, usable: torch.Tensor, fallback: float = 100.0) -> torch.Tensor:
    """``CANONICAL_SIZE / size`` [P], ``size`` being :func:`box_diagonal` of each person's usable points;
    ``fallback`` px when that is below 1 px (or there are none)."""
    size = box_diagonal(xy, usable)
    return CANONICAL_SIZE / torch.where(size > 1, size, torch.full_like(size, fallback))


def geman_mcclure(squared: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure robust function of squared residuals: ``sigma² r² / (sigma² + r²)`` (same shape)."""
    s2 = sigma * sigma
    return s2 * squared / (s2 + squared)


def reprojection_loss(projected: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                      scale: torch.Tensor | None = None, sigma: float | None = None) -> torch.Tensor:
    """Confidence-weighted 2D reprojection loss per sample.

    Args:
        projected: [..., J, 2] the model's keypoints in pixels.
        target: [..., J, 2] the 2D keypoints in pixels.
        weights: [..., J] per-point weights (0 for missing points; see :func:`clean_keypoints`).
        scale: [...] factor applied to the residuals (:func:`canonical_scale`), or None for raw pixels.
        sigma: Geman-McClure scale in (scaled) pixels, or None for the plain squared error.
    Returns:
        [...] ``sum_j weights_j * rho(|scale * (projected_j - target_j)|²)``.
    """
    diff = projected - target
    if scale is not None:
        diff = diff * scale[..., None, None]
    r2 = diff.pow(2).sum(-1)
    return (weights * (r2 if sigma is None else geman_mcclure(r2, sigma))).sum(-1)


def keypoint_3d_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                     root: Sequence[int] | None = None) -> torch.Tensor:
    """Squared 3D keypoint error per sample, after aligning the roots.

    Args:
        pred, target: [..., J, 3] points in metres.
        weights: [..., J] per-point weights (0 for points the sample has no annotation of).
        root: indices whose mean is aligned before comparing (e.g. the two hips); None: no alignment.
    Returns:
        [...] ``sum_j weights_j * |pred_j - target_j|²`` (m²).
    """
    if root is not None:
        idx = list(root)
        pred = pred - pred[..., idx, :].mean(-2, keepdim=True)
        target = target - target[..., idx, :].mean(-2, keepdim=True)
    return (weights * (pred - target).pow(2).sum(-1)).sum(-1)


def smpl_param_loss(pred_pose: torch.Tensor, target_pose: torch.Tensor, pred_betas: torch.Tensor,
                    target_betas: torch.Tensor, has_smpl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL parameter losses per sample, masked by ``has_smpl``.

    Args:
        pred_pose, target_pose: [..., 24, 3, 3] rotation matrices or [..., 24, 3] axis-angle (radians).
        pred_betas, target_betas: [..., 10].
        has_smpl: [...] bool or 0/1, whether the sample has (pseudo-)ground-truth parameters.
    Returns:
        (pose loss [...]: squared rotation-matrix error summed over joints, betas loss [...]:
        squared error summed), both 0 where ``has_smpl`` is 0.
    """
    if pred_pose.shape[-1] == 3 and pred_pose.shape[-2] != 3:
        pred_pose = roma.rotvec_to_rotmat(pred_pose)
    if target_pose.shape[-1] == 3 and target_pose.shape[-2] != 3:
        target_pose = roma.rotvec_to_rotmat(target_pose)
    mask = has_smpl.to(pred_betas.dtype)
    pose = (pred_pose - target_pose).pow(2).sum((-1, -2, -3))
    betas = (pred_betas - target_betas).pow(2).sum(-1)
    return pose * mask, betas * mask


def camera_front_loss(scale: torch.Tensor, min_scale: float = 0.05) -> torch.Tensor:
    """Keeps a person in front of the camera: ``relu(min_scale - scale)²`` per sample.

    Args:
        scale: [...] a quantity that is positive exactly when the person is in front of the camera and
            shrinks with distance, e.g. a crop camera's scale ``s`` (depth ``2 f / (box s)``) or an inverse depth.
        min_scale: values below this are penalised (for ``s``: a person farther than ``2 f / (box min_scale)``).
    Returns:
        [...] the penalty (0 where ``scale >= min_scale``).
    """
    return torch.relu(min_scale - scale).pow(2)


class PriorTerms:
    """The fitter's prior terms, built once (the mixture file is read here, not per fit).

    Args:
        pose_prior: ``gmm`` (the mixture's negative log-likelihood, shifted so that its value at its
            best mode is 0: a normalised NLL can be negative, which would make a relative stopping
            test meaningless; the shift leaves gradients alone), ``limits`` (only the joint-range
            penalty of :func:`fitlib.body.priors.joint_limit_prior`), ``l2`` (squared body pose, a
            placeholder) or ``none``.
        pose_prior_file: a prior trained by ``fitlib train-prior`` (default: the shipped one).
        need_mixture: load the mixture even if ``pose_prior`` does not use it (for its modes as starts).
    Attributes:
        mixture: the :class:`fitlib.body.priors.PosePrior`, or None.
    """

    def __init__(self, pose_prior: str = "gmm", pose_prior_file: str | None = None, need_mixture: bool = False,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.kind = pose_prior
        self.mixture = None
        if pose_prior in ("gmm", "limits") or need_mixture:
            self.mixture = priors.load_pose_prior(pose_prior_file).to(device=device, dtype=dtype)
        self.floor = None
        if pose_prior == "gmm":
            with torch.no_grad():
                self.floor = self.mixture(self.mixture.start_poses(self.mixture.gmm_means.shape[0])).min()

    def pose(self, body_pose: torch.Tensor) -> torch.Tensor:
        """[...] pose prior term of body poses [..., 69] (radians)."""
        if self.kind == "gmm":
            return self.mixture(body_pose) - self.floor
        if self.kind == "limits":
            return priors.joint_limit_prior(body_pose, self.mixture.joint_ranges)
        if self.kind == "l2":
            return body_pose.pow(2).sum(-1)
        return body_pose.new_zeros(body_pose.shape[:-1])

    @staticmethod
    def angle(body_pose: torch.Tensor) -> torch.Tensor:
        """[...] elbow and knee hyper-extension penalty (:func:`fitlib.body.priors.angle_prior`)."""
        return priors.angle_prior(body_pose)

    @staticmethod
    def shape(betas: torch.Tensor) -> torch.Tensor:
        """[...] shape prior NLL, ``0.5 |betas|²`` (:func:`fitlib.body.priors.shape_prior`)."""
        return priors.shape_prior(betas)


def point_weights(layout: KeypointLayout, weights: dict[str, float], dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """[J] per-point weights of a layout from ``{point name: weight}`` (1 for points not named)."""
    return torch.tensor([weights.get(n, 1.0) for n in layout.names], dtype=dtype, device=device)
