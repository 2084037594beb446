"""The pseudo-label score: one number per person that says how well SMPL parameters explain 2D keypoints,
independent of any fitting config (so that fits made with different configs, regressors or rounds compare).

``score = sqrt( sum_j c_j rho(r_j²) / sum_j c_j )`` over the confident points (confidence ``c_j >=``
:data:`MIN_CONFIDENCE`, points the model can produce), where ``r_j`` is the distance (pixels) between the
projected model keypoint and the detected one, rescaled so that the person's 2D size (the diagonal of the
box around its confident points) is :data:`fitlib.losses.CANONICAL_SIZE` pixels, and ``rho`` is
Geman-McClure with the fixed scale :data:`SCORE_SIGMA`. Units: canonical pixels; about the RMS error for
small errors, saturating at ``SCORE_SIGMA`` for a wrong fit, so an outlier point cannot dominate.

Before a stored fit is compared with a new one, its camera translation is re-estimated for the current
keypoints (:func:`estimate_translation`, weighted linear least squares as SPIN does): a label keeps its pose
and shape, and is judged fairly after the keypoints changed.
"""
from __future__ import annotations

import torch

from fitlib import losses
from fitlib.body.layouts import get_layout
from fitlib.body.model import BodyModel
from fitlib.camera import project
from fitlib.params import SMPLParams

MIN_CONFIDENCE = 0.3
"""Keypoints below this confidence do not count (their confidence is set to 0)."""

SCORE_SIGMA = 20.0
"""Geman-McClure scale of the score, canonical pixels (10 % of the person's canonical 2D size)."""


def confident_points(keypoints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[P, J] confidences of ``keypoints`` [P, J, 3] with points below :data:`MIN_CONFIDENCE`, non-finite
    points and points the model cannot produce (``mask`` [J] False) set to 0."""
    conf = torch.nan_to_num(keypoints[..., 2], nan=0.0).clamp(0, 1)
    ok = torch.isfinite(keypoints[..., :2]).all(-1) & (conf >= MIN_CONFIDENCE) & mask[None]
    return torch.where(ok, conf, torch.zeros_like(conf))


def score_points(projected: torch.Tensor, keypoints: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """The score [P] (canonical pixels; NaN for a person without confident points).

    Args:
        projected: [P, J, 2] model keypoints in pixels.
        keypoints: [P, J, 3] detected keypoints (x px, y px, confidence).
        conf: [P, J] weights from :func:`confident_points`.
    """
    use = conf > 0
    xy = torch.nan_to_num(keypoints[..., :2])
    scale = losses.canonical_scale(xy, use)
    r2 = ((projected - xy) * scale[:, None, None]).pow(2).sum(-1)
    rho = losses.geman_mcclure(torch.nan_to_num(r2, nan=1e12), SCORE_SIGMA)
    total = conf.sum(-1)
    value = ((conf * rho).sum(-1) / total.clamp_min(1e-12)).sqrt()
    return torch.where(total > 0, value, torch.full_like(value, float("nan")))


def estimate_translation(points: torch.Tensor, keypoints: torch.Tensor, conf: torch.Tensor,
                         K: torch.Tensor) -> torch.Tensor:
    """Camera translation [P, 3] (metres) that best projects body points onto keypoints (SPIN's weighted linear
    least squares: for each point, ``f (X + t)_xy - (u - c) (X + t)_z = 0``, weighted by its confidence).

    Args:
        points: [P, J, 3] body points in the camera's orientation without translation (metres).
        keypoints: [P, J, 3] (x px, y px, confidence).
        conf: [P, J] point weights (0: unused).
        K: [P, 3, 3] intrinsics (pixels).
    Returns:
        [P, 3]; NaN for people with fewer than 2 weighted points.
    """
    f = torch.stack([K[:, 0, 0], K[:, 1, 1]], -1)[:, None]  # [P, 1, 2]
    c = K[:, :2, 2][:, None]
    d = torch.nan_to_num(keypoints[..., :2]) - c  # [P, J, 2]
    P, J = conf.shape
    A = points.new_zeros(P, J, 2, 3)
    A[..., 0, 0] = f[..., 0]
    A[..., 1, 1] = f[..., 1]
    A[..., :, 2] = -d
    b = d * points[..., 2:3] - f * points[..., :2]  # [P, J, 2]
    w = conf.sqrt()[..., None]
    Aw = (A * w[..., None]).reshape(P, 2 * J, 3)
    bw = (b * w).reshape(P, 2 * J)
    AtA = Aw.transpose(1, 2) @ Aw + 1e-9 * torch.eye(3, dtype=points.dtype, device=points.device)
    t = torch.linalg.solve(AtA, (Aw.transpose(1, 2) @ bw[..., None]))[..., 0]
    enough = (conf > 0).sum(-1) >= 2
    return torch.where(enough[:, None], t, torch.full_like(t, float("nan")))


def score_params(model: BodyModel, params: SMPLParams, keypoints: torch.Tensor, K: torch.Tensor,
                 layout: str, reestimate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Score SMPL parameters against keypoints, optionally with the camera re-estimated.

    Args:
        model: the body model the parameters belong to.
        params: P people (``global_orient``, ``body_pose``, ``betas``, ``transl``; camera frame, metres).
        keypoints: [P, J, 3] in ``layout`` (x px, y px, confidence).
        K: [P, 3, 3] or [3, 3] intrinsics (pixels).
        layout: keypoint layout name.
        reestimate: also try the translation from :func:`estimate_translation` and keep, per person, the
            better-scoring of the two.
    Returns:
        ``score`` [P] (canonical pixels, NaN where no point is confident) and ``transl`` [P, 3], the translation
        that was scored.
    """
    lay = get_layout(layout)
    P = len(params)
    dtype, dev = model.joint_template.dtype, model.joint_template.device
    kp = torch.as_tensor(keypoints, dtype=dtype, device=dev)
    Kp = torch.as_tensor(K, dtype=dtype, device=dev).expand(P, 3, 3)
    p = params.to(dev, dtype)
    with torch.no_grad():
        body = model(p.pose, p.betas, None, layout=lay)
    conf = confident_points(kp, body.keypoint_mask.to(dev))
    transl = p.transl
    score = score_points(project(body.keypoints + transl[:, None], Kp), kp, conf)
    if reestimate and P:
        t2 = estimate_translation(body.keypoints, kp, conf, Kp)
        ok = torch.isfinite(t2).all(-1) & (t2[:, 2] > 0.1)
        t2 = torch.where(ok[:, None], t2, transl)
        s2 = score_points(project(body.keypoints + t2[:, None], Kp), kp, conf)
        better = ok & (s2 < torch.nan_to_num(score, nan=float("inf")))
        score = torch.where(better, s2, score)
        transl = torch.where(better[:, None], t2, transl)
    return score, transl
