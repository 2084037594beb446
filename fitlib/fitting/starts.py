"""Where the fitter starts: the neutral pose, the depth from the torso's 2D length, and the
multi-start machinery (several headings for the camera stage, the pose prior's modes for the body
stage; each person keeps its best start).

Camera frame: OpenCV (x right, y down, z forward), metres; keypoints in pixels.
"""
from __future__ import annotations

import math

import roma
import torch

from fitlib.body.layouts import KeypointLayout
from fitlib.body.model import BodyModel
from fitlib.fitting.config import FitConfig, Stage
from fitlib.fitting.optimizers import Objective, runner
from fitlib.params import SMPLParams

TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
"""The points the starting depth and the front/back test are measured on."""

FACING_CAMERA = (math.pi, 0.0, 0.0)
"""Global orientation (axis-angle) of an upright body facing the camera: 180 degrees about x."""


def relaxed_pose(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """A neutral starting pose [n, 24, 3]: arms lowered 70 degrees from the T-pose, the rest at rest."""
    pose = torch.zeros(n, 24, 3, dtype=dtype, device=device)
    pose[:, 16, 2] = -math.radians(70)  # left shoulder
    pose[:, 17, 2] = math.radians(70)  # right shoulder
    return pose


def point_indices(layout: KeypointLayout, names: tuple[str, ...] | list[str]) -> list[int]:
    """Indices in ``layout`` of the named points (a name may also match ``smpl_<name>``); absent ones are skipped."""
    out = []
    for n in names:
        for candidate in (n, f"smpl_{n}"):
            if candidate in layout.names:
                out.append(layout.names.index(candidate))
                break
    return out


def initial_translation(model: BodyModel, pose: torch.Tensor, betas: torch.Tensor, xy: torch.Tensor,
                        usable: torch.Tensor, K: torch.Tensor, torso_idx: list[int]) -> torch.Tensor:
    """Translation [P, 3] (m) putting the torso at the depth implied by its 2D length, centred on the 2D torso.

    Args:
        pose: [P, 24, 3], betas: [P, 10]: the starting body.
        xy: [P, J, 2] keypoints (px), usable: [P, J] bool, K: [P, 3, 3].
        torso_idx: the layout's indices of :data:`TORSO`.
    """
    ls, rs, lh, rh = torso_idx
    rest = model.rest_joints(betas)  # SMPL joints: 16/17 shoulders, 1/2 hips
    len3d = 0.5 * ((rest[:, 16] - rest[:, 1]).norm(dim=-1) + (rest[:, 17] - rest[:, 2]).norm(dim=-1))
    pairs = [(ls, lh), (rs, rh)]
    num = torch.zeros_like(len3d)
    cnt = torch.zeros_like(len3d)
    for a, b in pairs:
        ok = usable[:, a] & usable[:, b]
        num = num + torch.where(ok, (xy[:, a] - xy[:, b]).norm(dim=-1), torch.zeros_like(num))
        cnt = cnt + ok.to(num.dtype)
    # Without a visible shoulder-hip pair, fall back on shoulder or hip width (about 0.8 torso lengths).
    for a, b in ((ls, rs), (lh, rh)):
        ok = (cnt == 0) & usable[:, a] & usable[:, b]
        num = num + torch.where(ok, (xy[:, a] - xy[:, b]).norm(dim=-1) / 0.8, torch.zeros_like(num))
        cnt = cnt + ok.to(num.dtype)
    len2d = (num / cnt.clamp(min=1)).clamp(min=1.0)
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    depth = (f * len3d / len2d).clamp(min=0.3)  # no upper bound: len2d >= 1 px already bounds it by f * len3d
    tmask = usable[:, list(torso_idx)].to(xy.dtype)
    centre2d = (xy[:, list(torso_idx)] * tmask[..., None]).sum(1) / tmask.sum(1, keepdim=True).clamp(min=1)
    ray = torch.stack([(centre2d[:, 0] - K[:, 0, 2]) / K[:, 0, 0], (centre2d[:, 1] - K[:, 1, 2]) / K[:, 1, 1],
                       torch.ones_like(depth)], -1)
    out = model(pose, betas)
    body_centre = out.joints[:, [1, 2, 16, 17]].mean(1)
    return ray * depth[:, None] - body_centre


def best_of_starts(problem: Objective, params: SMPLParams, targets, stage: Stage, config: FitConfig,
                   owner: torch.Tensor, starts: SMPLParams):
    """Run a stage from several starts per person and keep, per person, the start of lowest loss.

    Args:
        params, targets: per-person parameters and targets (P people).
        owner: [S] person index of each start.
        starts: start parameters of S rows (all four fields).
    Returns:
        (params of P people, loss [P], converged [P], iterations [P] summed over the starts).
    """
    P = len(params)
    l, c, n = runner(config, stage)(problem, starts, targets.index(owner), stage, config)
    iters = torch.zeros(P, dtype=n.dtype, device=owner.device).index_add_(0, owner, n)
    pick = best_per_owner(l, owner)
    return starts.index(pick), l[pick], c[pick], iters


def best_per_owner(loss: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Index of the lowest-loss row of each owner (NaN counts as infinite), in owner order: [owners]."""
    pick = best_rows(torch.nan_to_num(loss, nan=float("inf")), owner, 1)
    return pick[torch.argsort(owner[pick])]


def best_rows(loss: torch.Tensor, owner: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` lowest-loss rows of each owner (ties: the earlier row)."""
    order = torch.argsort(loss, stable=True)
    order = order[torch.argsort(owner[order], stable=True)]  # grouped by owner, by loss within a group
    grouped = owner[order]
    start = torch.searchsorted(grouped, grouped)  # first position of each row's group
    rank = torch.arange(len(order), device=order.device) - start
    return order[rank < k]


def ambiguous_front(xy: torch.Tensor, usable: torch.Tensor, layout: KeypointLayout, threshold: float) -> torch.Tensor:
    """[P] bool: people whose 2D shoulder width is below ``threshold`` x their torso height (all four
    torso points seen), so that front and back cannot be told apart from the torso."""
    ls, rs, lh, rh = point_indices(layout, TORSO)
    width = (xy[:, ls] - xy[:, rs]).norm(dim=-1)
    height = 0.5 * ((xy[:, ls] - xy[:, lh]).norm(dim=-1) + (xy[:, rs] - xy[:, rh]).norm(dim=-1))
    return usable[:, [ls, rs, lh, rh]].all(1) & (width < threshold * height)


def turned(global_orient: torch.Tensor, degrees: float) -> torch.Tensor:
    """Orientations [n, 3] turned by ``degrees`` about the body's own vertical axis."""
    turn = torch.tensor([0.0, math.radians(degrees), 0.0], dtype=global_orient.dtype, device=global_orient.device)
    return roma.rotvec_composition([global_orient, turn.expand_as(global_orient)])


def heading_starts(params: SMPLParams, xy: torch.Tensor, usable: torch.Tensor, config: FitConfig,
                   layout: KeypointLayout, free_heading: bool) -> tuple[torch.Tensor, SMPLParams]:
    """Starts of the first stage: ``config.camera_headings`` (degrees about the body's vertical axis)
    for people without an initial orientation; with one, the turned body (180 degrees) only for
    people whose shoulders are too close in 2D to tell front from back (:func:`ambiguous_front`).

    Returns:
        (owner [S] person of each start, the starts: S rows of ``params``, orientations turned).
    """
    P = len(params)
    dev = params.transl.device
    if free_heading:
        extra = [(torch.arange(P, device=dev), h) for h in config.camera_headings if h % 360]
    else:
        extra = [(torch.nonzero(ambiguous_front(xy, usable, layout, config.flip_threshold)).flatten(), 180.0)]
    extra = [(idx, h) for idx, h in extra if idx.numel()]
    owner = torch.cat([torch.arange(P, device=dev)] + [idx for idx, _ in extra])
    starts = params.index(owner)
    orients = [params.global_orient] + [turned(params.global_orient[idx], h) for idx, h in extra]
    return owner, starts.replace(global_orient=torch.cat(orients))


def pose_starts(params: SMPLParams, prior_poses: torch.Tensor) -> tuple[torch.Tensor, SMPLParams]:
    """Starts of the body stage: each person's current pose, then each of ``prior_poses`` [S, 69]."""
    P = len(params)
    S = prior_poses.shape[0]
    owner = torch.arange(P, device=prior_poses.device).repeat(S + 1)
    starts = params.index(owner)
    starts.body_pose[P:] = prior_poses.repeat_interleave(P, 0)
    return owner, starts
