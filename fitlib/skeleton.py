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
