"""One person's motion as a BVH file (Biovision hierarchy), which animation tools (Blender, MotionBuilder, Maya)
import as an animated skeleton.

The skeleton is the body model's 24 joints with the track's shape: each joint's offset from its parent is the
rest pose's (``BodyModel.rest_joints(betas)``, metres). The root (pelvis) has position and rotation channels,
every other joint rotation channels, all in ``Zrotation Xrotation Yrotation`` order (degrees; the rotation is
``Rz @ Rx @ Ry``, the joint's local SMPL rotation). Frames are in a y-up world: fitlib's camera frame (OpenCV:
x right, y down, z forward) turned 180 degrees about x, so ``(x, y, z) -> (x, -y, -z)``: the person stands
upright, the camera at the origin looking along -z. Positions are metres (Blender's BVH importer: scale 1).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from fitlib.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from fitlib.io.atomic import atomic_write

_FLIP = np.diag([1.0, -1.0, -1.0])
"""OpenCV camera frame (y down, z forward) to a y-up world (z towards the viewer)."""


def bvh_text(poses: np.ndarray, trans: np.ndarray, rest_joints: np.ndarray, fps: float) -> str:
    """The BVH file's text (see the module doc).

    Args:
        poses: [T, 72] axis-angle (radians), joint 0 the global orientation in the camera frame.
        trans: [T, 3] SMPL translation in the camera frame (metres).
        rest_joints: [24, 3] the body's rest-pose joints for its betas (metres, the model's own frame).
        fps: frames per second (> 0).
    Raises:
        ValueError: shapes that do not fit together, non-finite values, a bad fps.
    """
    poses = np.asarray(poses, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    rest = np.asarray(rest_joints, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 72 or len(poses) == 0:
        raise ValueError(f"poses must have shape [T, 72] with T >= 1, got {poses.shape}")
    if trans.shape != (len(poses), 3):
        raise ValueError(f"trans must have shape [{len(poses)}, 3], got {trans.shape}")
    if rest.shape != (24, 3):
        raise ValueError(f"rest_joints must have shape [24, 3], got {rest.shape}")
    if not (np.isfinite(poses).all() and np.isfinite(trans).all() and np.isfinite(rest).all()):
        raise ValueError("poses, trans and rest_joints must be finite")
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    children: dict[int, list[int]] = {j: [] for j in range(24)}
    for j in range(1, 24):
        children[SMPL_PARENTS[j]].append(j)
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        off = rest[j] if j == 0 else rest[j] - rest[SMPL_PARENTS[j]]
        lines.append(f"{pad}{'ROOT' if j == 0 else 'JOINT'} {SMPL_JOINT_NAMES[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}")
        lines.append(f"{pad}  CHANNELS " + ("6 Xposition Yposition Zposition " if j == 0 else "3 ")
                     + "Zrotation Xrotation Yrotation")
        for c in children[j]:
            joint(c, depth + 1)
        if not children[j]:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET 0.000000 0.050000 0.000000")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    order = []  # joints in the order their channels appear (depth first, as written)

    def visit(j: int) -> None:
        order.append(j)
        for c in children[j]:
            visit(c)

    visit(0)
    T = len(poses)
    rot = poses.reshape(T, 24, 3).copy()
    root = Rotation.from_matrix(_FLIP @ Rotation.from_rotvec(rot[:, 0]).as_matrix())
    rot_euler = np.empty((T, 24, 3))
    rot_euler[:, 0] = root.as_euler("ZXY", degrees=True)
    rot_euler[:, 1:] = Rotation.from_rotvec(rot[:, 1:].reshape(-1, 3)).as_euler("ZXY", degrees=True).reshape(T, 23, 3)
    pelvis = (trans + rest[0]) @ _FLIP.T  # SMPL turns the body about the rest pelvis, which lands at transl + J0
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.8f}"]
    for t in range(T):
        vals = list(pelvis[t]) + [v for j in order for v in rot_euler[t, j]]
        lines.append(" ".join(f"{v:.6f}" for v in vals))
    return "\n".join(lines) + "\n"


def write_bvh(path: str | os.PathLike, poses: np.ndarray, trans: np.ndarray, rest_joints: np.ndarray,
              fps: float) -> Path:
    """Write :func:`bvh_text` to ``path`` atomically; returns the path."""
    path = Path(path)
    text = bvh_text(poses, trans, rest_joints, fps)
    with atomic_write(path) as fh:
        fh.write(text.encode())
    return path
