"""SMPL's 24-joint kinematic tree: names, parents and the conventions fitlib uses.

Conventions (shared by every body model fitlib loads):

* units are metres, the body frame is y up, z forward (the way the body faces),
  x towards the body's left;
* the rest pose is a T-pose (arms horizontal, palms down) and every joint's
  local frame is aligned with the world axes in rest, so a zero pose vector
  reproduces the T-pose;
* a pose is 24 axis-angle vectors (radians), joint 0 being the global
  orientation of the pelvis, in the joint order below.
"""
from __future__ import annotations

import roma
import torch

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
"""Names of SMPL's 24 joints in SMPL order."""

SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
"""Parent index of each joint (-1 for the root), SMPL's ``kintree_table[0]``."""

NUM_JOINTS: int = 24
NUM_BETAS: int = 10


def global_rotations(pose: torch.Tensor) -> torch.Tensor:
    """World rotation of every joint's frame: products of the local rotations along the tree.

    Args:
        pose: [..., 72] or [..., 24, 3] axis-angle (radians), joint 0 = global orientation.

    Returns:
        [..., 24, 3, 3] rotation matrices.
    """
    if pose.shape[-2:] != (NUM_JOINTS, 3):
        if pose.shape[-1] != 3 * NUM_JOINTS:
            raise ValueError(f"pose must have shape [..., 72] or [..., 24, 3], got {tuple(pose.shape)}")
        pose = pose.reshape(*pose.shape[:-1], NUM_JOINTS, 3)
    rot = roma.rotvec_to_rotmat(pose)
    glob = [rot[..., 0, :, :]]
    for j in range(1, NUM_JOINTS):
        glob.append(glob[SMPL_PARENTS[j]] @ rot[..., j, :, :])
    return torch.stack(glob, dim=-3)


def swing_rotvec(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The smallest rotation taking direction ``u`` to direction ``v`` (about their common normal), as rotation
    vectors [..., 3] (radians); no turn (to rounding) for parallel directions, and none either for opposite ones,
    where the axis is not defined.

    Args:
        u, v: [..., 3] directions, any length (broadcast against each other).
    """
    u, v = torch.broadcast_tensors(unit(u), unit(v))
    axis = torch.cross(u, v, dim=-1)
    angle = torch.atan2(axis.norm(dim=-1), (u * v).sum(-1))
    return unit(axis) * angle[..., None]


def unit(v: torch.Tensor) -> torch.Tensor:
    """``v`` [..., 3] scaled to unit length (a zero vector stays zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
