"""Evaluation metrics: MPJPE, PA-MPJPE, PVE (millimetres) and 2D reprojection error (pixels).

All functions take arrays or tensors with arbitrary leading batch dims and return
per-sample values [...]; aggregate with a mean.  Inputs of different float dtypes are
computed in the wider one (numpy arrays and lists as float64).  The 3D metrics refuse
non-finite input with a ValueError naming the argument; the 2D reprojection error counts a
non-finite keypoint as not visible.  The 14-joint protocol of the
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


def _t(x, what: str = "input") -> torch.Tensor:
    """``x`` as a floating-point tensor (float64 unless it already is a floating tensor)."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.to(torch.float64)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a numeric array or tensor: {err}") from None
    return torch.as_tensor(arr)


def _common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both in their promoted floating dtype (float32 with float64 -> float64), on ``a``'s device
    (``b``'s if only ``b`` is on an accelerator)."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    device = a.device if a.device.type != "cpu" else b.device
    return a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)


def _finite(x: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} holds non-finite values (NaN or inf) at {int((~torch.isfinite(x)).sum())} "
                         "entries; drop or mask those samples first")


def _pair(pred, gt, what: str, names: tuple[str, str] = ("pred", "gt")) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as finite tensors of the same shape [..., N, C] and dtype (ValueError naming the problem otherwise)."""
    pred, gt = _common(_t(pred, f"{what}: {names[0]}"), _t(gt, f"{what}: {names[1]}"))
    if pred.shape != gt.shape or pred.ndim < 2:
        raise ValueError(f"{what}: prediction and ground truth must have the same shape [..., N, C], "
                         f"got {tuple(pred.shape)} and {tuple(gt.shape)}")
    _finite(pred, f"{what}: {names[0]}")
    _finite(gt, f"{what}: {names[1]}")
    return pred, gt


def _root(root, n: int, what: str) -> list[int]:
    try:
        idx = [int(i) for i in root]
    except (TypeError, ValueError):
        raise ValueError(f"{what}: root must be a tuple of joint indices, got {root!r}") from None
    if not idx or not all(-n <= i < n for i in idx):
        raise ValueError(f"{what}: root {tuple(idx)} must be non-empty joint indices in [0, {n})")
    return idx


def procrustes_align(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Similarity-align ``pred`` [..., N, 3] to ``gt`` [..., N, 3] (rotation, uniform scale, translation).

    Arrays or tensors, any float dtypes (computed in the wider one); the result is in ``gt``'s units.

    Raises:
        ValueError: shapes differ, or a non-finite value (the SVD has no answer for it).
    """
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

    ``pred`` and ``gt`` are [..., N, C] arrays or tensors of one shape, any float dtypes (computed
    in the wider one). A ValueError names a shape mismatch, a non-finite value or a bad root.
    """
    pred, gt = _pair(pred, gt, "mpjpe")
    if root_align and root is None:
        root = {14: LSP14_HIPS, 24: SMPL24_HIPS}.get(pred.shape[-2])
        if root is None:
            raise ValueError(f"mpjpe: no default root for {pred.shape[-2]} joints; pass root=(...)")
    if root_align:
        root = _root(root, pred.shape[-2], "mpjpe")
        pred = pred - pred[..., root, :].mean(-2, keepdim=True)
        gt = gt - gt[..., root, :].mean(-2, keepdim=True)
    return (pred - gt).norm(dim=-1).mean(-1)


def pa_mpjpe(pred, gt) -> torch.Tensor:
    """Procrustes-aligned MPJPE [...]: error left after the best similarity transform.

    ``pred`` and ``gt``: [..., N, 3] arrays or tensors of one shape, any float dtypes, all finite
    (ValueError naming the argument otherwise); the error is in ``gt``'s units.
    """
    pred, gt = _pair(pred, gt, "pa_mpjpe")
    return (procrustes_align(pred, gt) - gt).norm(dim=-1).mean(-1)


def pve(pred_vertices, gt_vertices, pred_joints=None, gt_joints=None, root: tuple[int, ...] = (1, 2)) -> torch.Tensor:
    """Per-vertex error [...] after aligning the mean of the ``root`` joints (default SMPL hips),
    or the vertex centroids when no joints are given.

    Vertices [..., V, 3] and joints [..., J, 3] (both pairs of one shape), any float dtypes, all
    finite; the error is in the input units. A ValueError names the argument at fault.
    """
    pv, gv = _pair(pred_vertices, gt_vertices, "pve", ("pred_vertices", "gt_vertices"))
    if (pred_joints is None) != (gt_joints is None):
        raise ValueError("pve: pass both pred_joints and gt_joints, or neither")
    if pred_joints is not None:
        pj, gj = _pair(pred_joints, gt_joints, "pve", ("pred_joints", "gt_joints"))
        if pj.shape[:-2] != pv.shape[:-2] or pj.shape[-1] != pv.shape[-1]:
            raise ValueError(f"pve: joints {tuple(pj.shape)} do not go with vertices {tuple(pv.shape)} "
                             "(same leading dims and coordinates)")
        root = _root(root, pj.shape[-2], "pve")
        pv = pv - pj.to(pv.dtype)[..., root, :].mean(-2, keepdim=True)
        gv = gv - gj.to(gv.dtype)[..., root, :].mean(-2, keepdim=True)
    else:
        pv, gv = pv - pv.mean(-2, keepdim=True), gv - gv.mean(-2, keepdim=True)
    return (pv - gv).norm(dim=-1).mean(-1)


def reprojection_error(pred_2d, gt_2d, visible=None) -> torch.Tensor:
    """Mean pixel distance [...] over visible keypoints (``visible`` [..., J] bool); NaN where none is visible.

    ``pred_2d`` and ``gt_2d`` are [..., J, >=2] pixels (extra columns, e.g. a confidence, are
    ignored), any float dtypes; a keypoint with a non-finite coordinate counts as not visible.
    ``visible`` must have the shape [..., J] (or one that broadcasts to it, e.g. [J]).

    Raises:
        ValueError: mismatched shapes of ``pred_2d`` / ``gt_2d`` or of ``visible``, or non-numeric input.
    """
    p, g = _common(_t(pred_2d, "reprojection_error: pred_2d"), _t(gt_2d, "reprojection_error: gt_2d"))
    if p.ndim < 2 or g.ndim < 2 or p.shape[:-1] != g.shape[:-1] or p.shape[-1] < 2 or g.shape[-1] < 2:
        raise ValueError(f"reprojection_error: pred_2d and gt_2d must be [..., J, >=2] with the same [..., J], "
                         f"got {tuple(p.shape)} and {tuple(g.shape)}")
    d = (p[..., :2] - g[..., :2]).norm(dim=-1)
    if visible is None:
        v = torch.ones_like(d, dtype=torch.bool)
    else:
        try:
            v = torch.as_tensor(np.asarray(visible) if not isinstance(visible, torch.Tensor) else visible)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"reprojection_error: visible must be a boolean array [..., J]: {err}") from None
        v = v.to(device=d.device, dtype=torch.bool)
        try:
            fits = torch.broadcast_shapes(v.shape, d.shape) == d.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"reprojection_error: visible has shape {tuple(v.shape)}, expected "
                             f"{tuple(d.shape)} ([..., J], one flag per keypoint)")
    v = v & torch.isfinite(d)
    n = v.sum(-1)
    s = torch.where(v, d, torch.zeros_like(d)).sum(-1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def lsp14(joints24) -> torch.Tensor:
    """SMPL joints [..., 24, 3] to the 14-joint protocol order [..., 14, 3]."""
    j = _t(joints24, "lsp14: joints24")
    if j.ndim < 2 or j.shape[-2] != 24:
        raise ValueError(f"lsp14 takes SMPL joints [..., 24, 3], got {tuple(j.shape)}")
    return j[..., list(SMPL24_TO_LSP14), :]
