"""A fit of one body model as the parameters of another (e.g. an open-model fit as real SMPL parameters, for
users who have the SMPL file): the target model is fitted to the source's posed joints and named surface points.

The two models share SMPL's layout (24 joints, 72 pose numbers, 10 betas) but not their meaning: the open
model has 13,718 vertices and its own shape space, SMPL 6,890 and another, and their joints are regressed
from different meshes. Copying parameters across is wrong; fitting is what gives a target body in the same
place and pose. Matched points: the 24 joints, and every point both models define by name (COCO-17 with
feet, MediaPipe-33: face, hands, heels, toes; each model places them on its own surface).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.fitting.lm import LMSettings, levenberg_marquardt

_SURFACE_LAYOUTS = ("coco17_feet", "mediapipe33")


@dataclass
class Conversion:
    """Target-model parameters and how well they match the source (per person).

    Attributes:
        pose: [P, 72] axis-angle (radians); betas: [P, 10]; transl: [P, 3] (metres), for the target model,
            in the source's frame (e.g. the camera frame of a fit).
        joint_error_mm: [P] mean distance of the 24 joints, target to source (millimetres).
        point_error_mm: [P] mean distance of the shared named surface points (millimetres).
        points: how many surface points were matched (the same for every person).
    """

    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    joint_error_mm: np.ndarray
    point_error_mm: np.ndarray
    points: int


def _shared_points(source, target) -> list[tuple[str, int]]:
    """(layout, index) of the named surface points both models produce, each name once."""
    seen, out = set(), []
    for layout in _SURFACE_LAYOUTS:
        names = get_layout(layout).names
        ms, mt = source.keypoint_map(layout).mask.cpu(), target.keypoint_map(layout).mask.cpu()
        for k, name in enumerate(names):
            if bool(ms[k]) and bool(mt[k]) and name not in seen:
                seen.add(name)
                out.append((layout, k))
    return out


def _points(model, pose, betas, transl, shared) -> tuple[torch.Tensor, torch.Tensor]:
    joints, parts = None, []
    for layout in _SURFACE_LAYOUTS:
        out = model(pose, betas, transl, layout=layout, validate=False)
        joints = out.joints
        idx = [k for lay, k in shared if lay == layout]
        parts.append(out.keypoints[:, idx])
    return joints, torch.cat(parts, 1)


def convert_fit(pose: Any, betas: Any, transl: Any, source: Any, target: Any, *, init_pose: Any = None,
                init_betas: Any = None, iterations: int = 50, shape_weight: float = 1e-6,
                pose_weight: float = 1e-6) -> Conversion:
    """Fit ``target`` to the posed joints and shared surface points of ``source`` with the given parameters.

    Args:
        pose: [P, 72] axis-angle (radians); betas: [P, 10]; transl: [P, 3] (metres) of the source model.
        source, target: :class:`~fitlib.BodyModel` (e.g. ``load_body_model("open")`` and
            ``load_body_model("SMPL_NEUTRAL.pkl")``).
        init_pose, init_betas: the target's start (default: the source's pose, betas 0).
        iterations: Levenberg-Marquardt iterations per person (:func:`fitlib.fitting.lm.levenberg_marquardt`:
            each person is its own least-squares problem over pose, betas and translation, 85 unknowns).
        shape_weight: weight of an L2 prior on the target's betas (per squared beta, against squared metres
            summed over the points), which keeps the shape plausible where the points do not decide it.
        pose_weight: weight of a pull of the body pose (joints 1-23, radians squared) towards the start pose,
            which settles what the points do not decide (a limb's twist about its own axis).
    Returns:
        :class:`Conversion` with errors in millimetres.
    """
    dtype = target.joint_template.dtype  # the models are used as they are (no copy, no cast)
    dev = target.joint_template.device
    t = lambda a: torch.as_tensor(np.asarray(a, np.float64), dtype=dtype, device=dev)  # noqa: E731
    pose_s, betas_s, transl_s = t(pose).reshape(-1, 24, 3), t(betas).reshape(-1, 10), t(transl).reshape(-1, 3)
    P = len(pose_s)
    if not (len(betas_s) == len(transl_s) == P):
        raise ValueError(f"pose, betas and transl must describe the same people: {P}, {len(betas_s)}, {len(transl_s)}")
    if not all(torch.isfinite(x).all() for x in (pose_s, betas_s, transl_s)):
        raise ValueError("pose, betas and transl must be finite (leave out people who were not fitted)")
    if not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive whole number, got {iterations!r}")
    src, tgt = source, target
    shared = _shared_points(src, tgt)
    sd, sdev = src.joint_template.dtype, src.joint_template.device
    with torch.no_grad():
        joints_s, points_s = _points(src, pose_s.to(sdev, sd), betas_s.to(sdev, sd), transl_s.to(sdev, sd), shared)
        joints_s, points_s = joints_s.to(dev, dtype), points_s.to(dev, dtype)
    pose0 = pose_s.clone() if init_pose is None else t(init_pose).reshape(P, 24, 3)
    betas0 = torch.zeros(P, 10, dtype=dtype, device=dev) if init_betas is None else t(init_betas).reshape(P, 10)
    with torch.no_grad():  # start the translation where the target's pelvis meets the source's
        transl0 = joints_s[:, 0] - tgt(pose0, betas0, None, validate=False).joints[:, 0]
    root_w, root_p = float(shape_weight) ** 0.5, float(pose_weight) ** 0.5
    start = pose0.reshape(P, 72)

    def residuals(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        joints, points = _points(tgt, x[:, :72].reshape(-1, 24, 3), x[:, 72:82], x[:, 82:], shared)
        return torch.cat([(joints - joints_s[rows]).flatten(1), (points - points_s[rows]).flatten(1),
                          root_w * x[:, 72:82], root_p * (x[:, 3:72] - start[rows, 3:])], 1)

    x0 = torch.cat([pose0.reshape(P, 72), betas0, transl0], 1)
    fit = levenberg_marquardt(residuals, x0, LMSettings(max_iterations=iterations, ftol=1e-10, xtol=1e-10))
    pose_t, betas_t, transl_t = fit.x[:, :72].reshape(P, 24, 3), fit.x[:, 72:82], fit.x[:, 82:]
    with torch.no_grad():
        joints, points = _points(tgt, pose_t, betas_t, transl_t, shared)
        je = (joints - joints_s).norm(dim=-1).mean(1) * 1000
        pe = (points - points_s).norm(dim=-1).mean(1) * 1000 if shared else torch.zeros(P, dtype=dtype)
    return Conversion(pose_t.detach().reshape(P, 72).cpu().numpy(), betas_t.detach().cpu().numpy(),
                      transl_t.detach().cpu().numpy(), je.cpu().numpy(), pe.cpu().numpy(), len(shared))
