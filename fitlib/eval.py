"""Evaluation metrics: MPJPE, PA-MPJPE, PVE (millimetres) and 2D reprojection error (pixels).

All functions take arrays or tensors with arbitrary leading batch dims and return
per-sample values [...]; aggregate with a mean.  The 14-joint protocol of the
literature (LSP order: ankles, knees, hips, wrists, elbows, shoulders, neck, head)
is :data:`H36M_LSP14_FROM_SMPL24` applied to SMPL joints where no H36M regressor
is available; it is reported separately from the 24-joint numbers because the
two are not comparable.
"""
from __future__ import annotations

import numpy as np
import torch

SMPL24_TO_LSP14 = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)
"""SMPL joint indices in LSP-14 order: right ankle, knee, hip; left hip, knee, ankle; right wrist,
elbow, shoulder; left shoulder, elbow, wrist; neck; head."""

LSP14_HIPS = (2, 3)
"""Right and left hip in LSP-14 order."""
SMPL24_HIPS = (1, 2)
"""Left and right hip in SMPL-24 order."""


def _t(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float64)


def _pair(pred, gt, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as tensors of the same shape [..., N, C] (ValueError naming the mismatch otherwise)."""
    pred, gt = _t(pred), _t(gt)
    if pred.shape != gt.shape or pred.ndim < 2:
        raise ValueError(f"{what}: prediction and ground truth must have the same shape [..., N, C], "
                         f"got {tuple(pred.shape)} and {tuple(gt.shape)}")
    return pred, gt


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Similarity-align ``pred`` [..., N, 3] to ``gt`` [..., N, 3] (rotation, uniform scale, translation)."""
    pred, gt = _pair(pred, gt, "procrustes_align")
    mp, mg = pred.mean(-2, keepdim=True), gt.mean(-2, keepdim=True)
    p, g = pred - mp, gt - mg
    cov = p.transpose(-1, -2) @ g  # [..., 3, 3]
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.det(U @ Vh))
    D = torch.ones_like(S)
    D[..., -1] = d
    R = (U * D[..., None, :]) @ Vh  # p @ R ~ g
    scale = (S * D).sum(-1) / p.pow(2).sum((-1, -2)).clamp(min=1e-12)
    return scale[..., None, None] * (p @ R) + mg


def mpjpe(pred, gt, root_align: bool = True, root: tuple[int, ...] | None = None) -> torch.Tensor:
    """Mean per-joint position error [...] in the input units (x1000 for mm from metres).

    With ``root_align`` both sets are translated so that the mean of the ``root``
    joints coincides, as the 3DPW protocol does.  The default root is the hips of
    the joint set: :data:`LSP14_HIPS` for 14 joints, :data:`SMPL24_HIPS` for 24;
    other joint counts must name their root.
    """
    pred, gt = _pair(pred, gt, "mpjpe")
    if root_align and root is None:
        root = {14: LSP14_HIPS, 24: SMPL24_HIPS}.get(pred.shape[-2])
        if root is None:
            raise ValueError(f"mpjpe: no default root for {pred.shape[-2]} joints; pass root=(...)")
    if root_align:
        pred = pred - pred[..., list(root), :].mean(-2, keepdim=True)
        gt = gt - gt[..., list(root), :].mean(-2, keepdim=True)
    return (pred - gt).norm(dim=-1).mean(-1)


def pa_mpjpe(pred, gt) -> torch.Tensor:
    """Procrustes-aligned MPJPE [...]: error left after the best similarity transform."""
    pred, gt = _pair(pred, gt, "pa_mpjpe")
    return (procrustes_align(pred, gt) - gt).norm(dim=-1).mean(-1)


def pve(pred_vertices, gt_vertices, pred_joints=None, gt_joints=None, root: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    """Per-vertex error [...] after aligning the mean of the ``root`` joints (default SMPL hips),
    or the vertex centroids when no joints are given."""
    pv, gv = _pair(pred_vertices, gt_vertices, "pve")
    if pred_joints is not None and gt_joints is not None:
        pv = pv - _t(pred_joints)[..., list(root), :].mean(-2, keepdim=True)
        gv = gv - _t(gt_joints)[..., list(root), :].mean(-2, keepdim=True)
    else:
        pv, gv = pv - pv.mean(-2, keepdim=True), gv - gv.mean(-2, keepdim=True)
    return (pv - gv).norm(dim=-1).mean(-1)


def reprojection_error(pred_2d, gt_2d, visible=None) -> torch.Tensor:
    """Mean pixel distance [...] over visible keypoints (``visible`` [..., J] bool); NaN where none is visible."""
    p, g = _t(pred_2d), _t(gt_2d)
    if p.shape[:-1] != g.shape[:-1] or p.shape[-1] < 2 or g.shape[-1] < 2:
        raise ValueError(f"reprojection_error: shapes {tuple(p.shape)} and {tuple(g.shape)} do not match")
    d = (p[..., :2] - g[..., :2]).norm(dim=-1)
    v = torch.ones_like(d, dtype=torch.bool) if visible is None else torch.as_tensor(visible, dtype=torch.bool)
    v = v & torch.isfinite(d)
    n = v.sum(-1)
    s = torch.where(v, d, torch.zeros_like(d)).sum(-1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def lsp14(joints24) -> torch.Tensor:
    """SMPL joints [..., 24, 3] to the 14-joint protocol order [..., 14, 3]."""
    j = _t(joints24)
    if j.ndim < 2 or j.shape[-2] != 24:
        raise ValueError(f"lsp14 takes SMPL joints [..., 24, 3], got {tuple(j.shape)}")
    return j[..., list(SMPL24_TO_LSP14), :]
