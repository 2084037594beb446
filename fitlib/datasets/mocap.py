"""Real motion capture that ships offline, converted to SMPL poses in fitlib's conventions.

Two sources (see ``priors/DATA.md`` for origin and licences):

* DeepMimic clips from the ``pybullet`` wheel (``pybullet_data/data/motions/humanoid3d_*.txt``):
  joint rotations of a 13-body humanoid, converted by a change of basis plus a rest-pose
  offset for the arms (DeepMimic's rest pose has the arms hanging down);
* climbing sequences from the ``holosoma-retargeting`` wheel (``demo_data/climb``): world joint
  positions of a Mixamo skeleton, converted by inverse kinematics onto SMPL's 24-joint tree.

Both produce ``poses`` [T, 72] (24 axis-angle vectors, radians, joint 0 = global orientation) and
``transl`` [T, 3]: the world position of the pelvis joint in metres, in a y-up world (NOT SMPL's
``transl`` argument, which offsets the mesh origin: ``smpl_transl = transl - J_pelvis(betas)``).
Joints a source does not observe are left at zero (rest): collars, head, hands and toes for
both; wrists for DeepMimic. ``OBSERVED_JOINTS`` names the joints both sources observe.

The converted clips are shipped in ``priors/mocap_poses.npz`` (built by
``fitlib extract-mocap``) and read with :func:`load_mocap`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import roma
import torch

from fitlib.body.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS, global_rotations, swing_rotvec, unit

__all__ = [
    "MocapClip", "DEEPMIMIC_CLIPS", "HOLOSOMA_CLIPS", "TRAIN_CLIPS", "EVAL_CLIPS", "OBSERVED_JOINTS",
    "LICENCES", "REST_JOINTS", "MIXAMO_JOINT_NAMES", "HOLOSOMA_FPS",
    "deepmimic_to_smpl", "read_deepmimic", "holosoma_to_smpl", "read_holosoma",
    "forward_kinematics", "mirror_pose", "load_mocap",
]

_J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}

DEEPMIMIC_CLIPS: tuple[str, ...] = (
    "backflip", "cartwheel", "crawl", "dance_a", "dance_b", "getup_facedown", "getup_faceup",
    "jump", "kick", "punch", "roll", "run", "spin", "spinkick", "walk",
)
"""DeepMimic clip names (file ``humanoid3d_<name>.txt``)."""

HOLOSOMA_CLIPS: tuple[str, ...] = tuple(f"climb_seq_{i}" for i in range(5))
"""holosoma climbing sequences (folder ``demo_data/climb/mocap_<name>``)."""

EVAL_CLIPS: tuple[str, ...] = ("dance_a", "dance_b", "kick", "spinkick", "climb_seq_4")
"""Clips held out from prior training; the synthetic benchmark evaluates on these only."""

TRAIN_CLIPS: tuple[str, ...] = tuple(c for c in DEEPMIMIC_CLIPS + HOLOSOMA_CLIPS if c not in EVAL_CLIPS)
"""Clips the shipped priors are trained on."""

OBSERVED_JOINTS: tuple[str, ...] = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
)
"""Body joints (SMPL order) whose rotation both sources measure; all others stay at rest."""

LICENCES: dict[str, str] = {
    "deepmimic": "zlib (pybullet 3.2.7 wheel, pybullet_data/data/motions; DeepMimic clips)",
    "holosoma": "Apache-2.0 (holosoma-retargeting 0.1.0 wheel, demo_data/climb)",
}
"""Licence of each source's data, as recorded in the wheels (see priors/DATA.md)."""

HOLOSOMA_FPS: float = 30.0
"""Frame rate of the holosoma climbing data (holosoma's default ``input_fps``; not stored in the files)."""

# Approximate adult SMPL-like rest skeleton (T-pose, metres, y up, z forward, x left), pelvis at 0,
# for forward-kinematics checks of the converted poses (the body models have their own skeletons).
_REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0],  # pelvis
    [0.07, -0.09, 0.0], [-0.07, -0.09, 0.0], [0.0, 0.11, -0.015],  # hips, spine1
    [0.035, -0.38, 0.0], [-0.035, -0.38, 0.0], [0.0, 0.13, 0.01],  # knees, spine2
    [-0.01, -0.40, -0.04], [0.01, -0.40, -0.04], [0.0, 0.055, 0.0],  # ankles, spine3
    [0.02, -0.055, 0.12], [-0.02, -0.055, 0.12], [0.0, 0.21, -0.03],  # feet, neck
    [0.075, 0.12, -0.02], [-0.075, 0.12, -0.02], [0.0, 0.09, 0.05],  # collars, head
    [0.12, 0.04, -0.01], [-0.12, 0.04, -0.01],  # shoulders
    [0.26, -0.01, -0.02], [-0.26, -0.01, -0.02],  # elbows
    [0.25, 0.0, 0.0], [-0.25, 0.0, 0.0],  # wrists
    [0.085, -0.01, -0.01], [-0.085, -0.01, -0.01],  # hands
])


def _rest_joints_from_offsets(offsets: np.ndarray) -> np.ndarray:
    joints = np.zeros_like(offsets)
    for j in range(1, NUM_JOINTS):
        joints[j] = joints[SMPL_PARENTS[j]] + offsets[j]
    return joints


REST_JOINTS: np.ndarray = _rest_joints_from_offsets(_REST_OFFSETS)
"""[24, 3] approximate SMPL-like rest (T-pose) joint positions in metres, pelvis at the origin."""


@dataclass(frozen=True)
class MocapClip:
    """One motion clip in SMPL conventions.

    Attributes:
        poses: [T, 72] float32 axis-angle (radians), joint 0 = global orientation (y-up world).
        transl: [T, 3] float32 world position of the pelvis joint in metres (y up).
        fps: frames per second.
        source: ``"deepmimic"`` or ``"holosoma"``.
        licence: licence of the source data.
    """

    poses: np.ndarray
    transl: np.ndarray
    fps: float
    source: str
    licence: str

    @property
    def body_pose(self) -> np.ndarray:
        """[T, 69] the pose without the global orientation."""
        return self.poses[:, 3:]


# ----------------------------------------------------------------------------------------------
# rotation helpers (torch float64, arbitrary leading dims)

def _triad(rest_a: torch.Tensor, rest_b: torch.Tensor, obs_a: torch.Tensor, obs_b: torch.Tensor) -> torch.Tensor:
    """Rotation R [..., 3, 3] with R rest_a parallel to obs_a and R rest_b as close as possible to obs_b."""
    def frame(a, b):
        e1 = unit(a)
        e2 = unit(torch.cross(e1, b.expand_as(e1), dim=-1))
        return torch.stack([e1, e2, torch.cross(e1, e2, dim=-1)], dim=-1)
    return frame(obs_a, obs_b) @ frame(rest_a, rest_b).transpose(-1, -2)


def _swing(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Smallest rotation [..., 3, 3] taking direction u to direction v."""
    return roma.rotvec_to_rotmat(swing_rotvec(u, v))


def _rotate(rot: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (rot @ v[..., None])[..., 0]


def _rotz(angle: float) -> torch.Tensor:
    return roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, angle], dtype=torch.float64))


def forward_kinematics(pose: torch.Tensor, rest_joints: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Posed joint positions of an SMPL-layout skeleton.

    Args:
        pose: [..., 72] axis-angle (radians), joint 0 = global orientation.
        rest_joints: [24, 3] or [..., 24, 3] rest (T-pose) joints in metres; default :data:`REST_JOINTS`.

    Returns:
        [..., 24, 3] joint positions in metres, the pelvis at its rest position.
    """
    glob = global_rotations(pose)
    rest = torch.as_tensor(REST_JOINTS if rest_joints is None else rest_joints, dtype=pose.dtype,
                           device=pose.device)
    if rest.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"rest_joints must have shape [..., 24, 3], got {tuple(rest.shape)}")
    pos = [rest[..., 0, :].expand(*pose.shape[:-1], 3)]
    for j in range(1, NUM_JOINTS):
        p = SMPL_PARENTS[j]
        pos.append(pos[p] + _rotate(glob[..., p, :, :], rest[..., j, :] - rest[..., p, :]))
    return torch.stack(pos, dim=-2)


_MIRROR_PERM = [SMPL_JOINT_NAMES.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
                for n in SMPL_JOINT_NAMES]


def mirror_pose(pose: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Left-right mirror image of poses [..., 72] (or body poses [..., 69]) about the body's x=0 plane.

    Swaps left and right joints and negates the y and z components of every axis-angle vector.
    """
    n = pose.shape[-1] // 3
    if pose.shape[-1] not in (69, 72):
        raise ValueError(f"pose must have last dimension 69 or 72, got shape {tuple(pose.shape)}")
    perm = _MIRROR_PERM if n == NUM_JOINTS else [p - 1 for p in _MIRROR_PERM[1:]]
    sign = np.array([1.0, -1.0, -1.0])
    aa = pose.reshape(*pose.shape[:-1], n, 3)[..., perm, :]
    if isinstance(pose, torch.Tensor):
        return (aa * torch.as_tensor(sign, dtype=pose.dtype, device=pose.device)).reshape(pose.shape)
    return (aa * sign.astype(pose.dtype)).reshape(pose.shape)


# ----------------------------------------------------------------------------------------------
# DeepMimic

# DeepMimic's humanoid: y up, faces +x, +z is its right. SMPL: y up, faces +z, +x is its left.
_DM_TO_SMPL = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
# Rest offset of each arm: rotation taking SMPL's T-pose arm to DeepMimic's hanging arm.
_ARM_REST = {"left": _rotz(-np.pi / 2), "right": _rotz(np.pi / 2)}

# Frame layout (44 numbers): duration, root position (3), then quaternions (w, x, y, z) and
# single hinge angles in this order.
_DM_LAYOUT = (
    ("root", 4, 4), ("chest", 8, 4), ("neck", 12, 4), ("right_hip", 16, 4), ("right_knee", 20, 1),
    ("right_ankle", 21, 4), ("right_shoulder", 25, 4), ("right_elbow", 29, 1), ("left_hip", 30, 4),
    ("left_knee", 34, 1), ("left_ankle", 35, 4), ("left_shoulder", 39, 4), ("left_elbow", 43, 1),
)


def deepmimic_to_smpl(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert DeepMimic humanoid frames to SMPL poses.

    Args:
        frames: [T, 44] DeepMimic frames (duration s, root position m, root and joint quaternions
            w-first, knee and elbow hinge angles in radians about the body's +z axis).

    Returns:
        poses [T, 72] float32 (radians) and transl [T, 3] float32 (pelvis position, metres, y up).
        The chest rotation is shared equally by spine1..3, the neck rotation goes to the neck,
        collars, head, wrists, hands and toes stay at rest.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or frames.shape[1] != 44:
        raise ValueError(f"DeepMimic frames must have shape [T, 44], got {frames.shape}")
    f = torch.from_numpy(frames)
    c = _DM_TO_SMPL
    rot = {}
    for name, start, size in _DM_LAYOUT:
        if size == 4:
            q = f[:, start:start + 4]
            q = q / q.norm(dim=-1, keepdim=True)
            r = roma.unitquat_to_rotmat(q[:, [1, 2, 3, 0]])  # roma wants x, y, z, w
        else:  # hinge about DeepMimic's +z
            r = roma.rotvec_to_rotmat(f[:, start:start + 1] * torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
        rot[name] = c @ r @ c.T  # the same rotation expressed on SMPL's axes
    out = torch.zeros(len(frames), NUM_JOINTS, 3, dtype=torch.float64)
    out[:, 0] = roma.rotmat_to_rotvec(rot["root"])
    chest = roma.rotmat_to_rotvec(rot["chest"])
    for j in ("spine1", "spine2", "spine3"):
        out[:, _J[j]] = chest / 3.0
    out[:, _J["neck"]] = roma.rotmat_to_rotvec(rot["neck"])
    for side in ("left", "right"):
        o = _ARM_REST[side]
        for j in ("hip", "knee", "ankle"):
            out[:, _J[f"{side}_{j}"]] = roma.rotmat_to_rotvec(rot[f"{side}_{j}"])
        out[:, _J[f"{side}_shoulder"]] = roma.rotmat_to_rotvec(rot[f"{side}_shoulder"] @ o)
        out[:, _J[f"{side}_elbow"]] = roma.rotmat_to_rotvec(o.T @ rot[f"{side}_elbow"] @ o)
    transl = f[:, 1:4] @ c.T
    return out.reshape(len(frames), -1).float().numpy(), transl.float().numpy()


def read_deepmimic(path: str | Path) -> MocapClip:
    """Read a DeepMimic motion file (JSON with ``Frames`` [T, 44]) as a :class:`MocapClip`."""
    data = json.loads(Path(path).read_text())
    frames = np.asarray(data["Frames"], dtype=np.float64)
    poses, transl = deepmimic_to_smpl(frames)
    durations = frames[:-1, 0] if len(frames) > 1 else frames[:, 0]
    fps = float(1.0 / np.median(durations))
    return MocapClip(poses, transl, fps, "deepmimic", LICENCES["deepmimic"])


# ----------------------------------------------------------------------------------------------
# holosoma (Mixamo joint positions, z up)

MIXAMO_JOINT_NAMES: tuple[str, ...] = tuple(
    ["Hips", "Spine", "Spine1", "Neck", "Head"]
    + [f"{s}{n}" for s in ("Left", "Right") for n in
       ["Shoulder", "Arm", "ForeArm", "Hand"]
       + [f"Hand{f}{k}" for f in ("Thumb", "Index", "Middle", "Ring", "Pinky") for k in (1, 2, 3)]]
    + [f"{s}{n}" for s in ("Left", "Right") for n in ("UpLeg", "Leg", "Foot", "ToeBase")]
    + ["LeftFootMod", "RightFootMod"]
)
"""The 53 joints of holosoma's ``mocap`` format, in array order."""

_M = {name: i for i, name in enumerate(MIXAMO_JOINT_NAMES)}
# z-up world (x, y, z) -> y-up world (x, z, -y)
_ZUP_TO_YUP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)


_X, _Y, _Z = (torch.eye(3, dtype=torch.float64)[i] for i in range(3))
_FOOT_NEUTRAL = torch.tensor([0.0, -np.sin(np.radians(20.0)), np.cos(np.radians(20.0))], dtype=torch.float64)
"""Neutral ankle-to-toe direction of the Mixamo skeleton: forward, 20 degrees down (measured on
upright frames of the climbing data, where shank and foot make 70 degrees)."""


def _local(parent: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
    return roma.rotmat_to_rotvec(parent.transpose(-1, -2) @ child)


def _hinge_limb(parent: torch.Tensor, rest_dir: torch.Tensor, axis: torch.Tensor,
                top: torch.Tensor, mid: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global rotations [T, 3, 3] of the upper and lower segment of a hinge limb (hip-knee-ankle,
    shoulder-elbow-wrist) whose two segments point along ``rest_dir`` in rest.

    The upper segment's twist is fixed by the hinge: its rest hinge ``axis`` goes to the normal of
    the plane through the three observed joints, with the sign of the twist-free swing (so the
    twist stays within +-90 degrees of it); a nearly straight limb falls back to the swing.
    """
    up, low = unit(mid - top), unit(end - mid)
    swing = parent @ _swing(rest_dir, _rotate(parent.transpose(-1, -2), up))
    fallback = swing @ axis
    normal = torch.cross(up, low, dim=-1)
    sign = torch.where((normal * fallback).sum(-1, keepdim=True) < 0, -1.0, 1.0)
    upper = _triad(rest_dir, axis, up, sign * normal + 0.1 * fallback)
    lower = upper @ _swing(rest_dir, _rotate(upper.transpose(-1, -2), low))
    return upper, lower


def holosoma_to_smpl(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse kinematics from Mixamo world joint positions (z up) to SMPL poses.

    Rotations are semantic: a zero rotation means the Mixamo bone is in its neutral T-pose
    direction (limbs straight down / sideways, spine and neck vertical, hips and clavicles
    lateral, feet forward and 20 degrees down), whatever the exact rest geometry of the SMPL
    skeleton that is then posed. The pelvis and chest get their full orientation from the
    hip and clavicle triangles, hips and shoulders their twist from the knee and elbow hinge
    planes, wrists theirs from the knuckles; other joints get the twist-free swing. The spine
    rotation (pelvis to chest) is shared equally by spine1..3; collars, head, hands and toes stay
    at rest (the shoulder carries the clavicle's small motion).

    Args:
        positions: [T, 53, 3] joint positions in metres, z up, joints as :data:`MIXAMO_JOINT_NAMES`.

    Returns:
        poses [T, 72] float32 (radians) and transl [T, 3] float32 (pelvis position, metres, y up).
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (len(MIXAMO_JOINT_NAMES), 3):
        raise ValueError(f"positions must have shape [T, 53, 3], got {positions.shape}")
    p = torch.from_numpy(positions) @ _ZUP_TO_YUP.T
    m = {name: p[:, i] for name, i in _M.items()}
    T = len(positions)
    out = torch.zeros(T, NUM_JOINTS, 3, dtype=torch.float64)

    pelvis = _triad(_X, _Y, m["LeftUpLeg"] - m["RightUpLeg"], m["Spine"] - m["Hips"])
    chest = _triad(_X, _Y, m["LeftShoulder"] - m["RightShoulder"], m["Neck"] - m["Spine1"])
    out[:, 0] = roma.rotmat_to_rotvec(pelvis)
    spine = _local(pelvis, chest) / 3.0
    for j in ("spine1", "spine2", "spine3"):
        out[:, _J[j]] = spine
    chest = pelvis @ roma.rotvec_to_rotmat(3.0 * spine)  # exactly the chain's product
    out[:, _J["neck"]] = roma.rotmat_to_rotvec(_swing(_Y, _rotate(chest.transpose(-1, -2), m["Head"] - m["Neck"])))

    for side, s, lateral in (("left", "Left", _X), ("right", "Right", -_X)):
        hip, knee = _hinge_limb(pelvis, -_Y, _X, m[f"{s}UpLeg"], m[f"{s}Leg"], m[f"{s}Foot"])
        out[:, _J[f"{side}_hip"]] = _local(pelvis, hip)
        out[:, _J[f"{side}_knee"]] = _local(hip, knee)
        foot = _rotate(knee.transpose(-1, -2), m[f"{s}ToeBase"] - m[f"{s}Foot"])
        out[:, _J[f"{side}_ankle"]] = roma.rotmat_to_rotvec(_swing(_FOOT_NEUTRAL, foot))
        # elbow flexion moves the forearm forward: axis -y for the left arm, +y for the right
        shoulder, elbow = _hinge_limb(chest, lateral, -lateral[0] * _Y, m[f"{s}Arm"], m[f"{s}ForeArm"], m[f"{s}Hand"])
        out[:, _J[f"{side}_shoulder"]] = _local(chest, shoulder)
        out[:, _J[f"{side}_elbow"]] = _local(shoulder, elbow)
        hand = _triad(lateral, _Z, m[f"{s}HandMiddle1"] - m[f"{s}Hand"], m[f"{s}HandIndex1"] - m[f"{s}HandPinky1"])
        out[:, _J[f"{side}_wrist"]] = _local(elbow, hand)
    return out.reshape(T, -1).float().numpy(), m["Hips"].float().numpy()


def read_holosoma(path: str | Path, fps: float = HOLOSOMA_FPS) -> MocapClip:
    """Read a holosoma ``*_joint_positions_*.npy`` file ([T, 53, 3], z up) as a :class:`MocapClip`."""
    poses, transl = holosoma_to_smpl(np.load(path))
    return MocapClip(poses, transl, float(fps), "holosoma", LICENCES["holosoma"])


# ----------------------------------------------------------------------------------------------
# shipped data

def _default_npz() -> Path:
    return Path(str(resources.files("fitlib.priors_data").joinpath("mocap_poses.npz")))


def load_mocap(split: str = "train", path: str | Path | None = None) -> dict[str, MocapClip]:
    """Load the shipped converted mocap clips.

    Args:
        split: ``"train"`` (:data:`TRAIN_CLIPS`), ``"eval"`` (:data:`EVAL_CLIPS`) or ``"all"``.
        path: npz written by ``fitlib extract-mocap``; default the shipped ``mocap_poses.npz``.

    Returns:
        ``{clip_name: MocapClip}`` in the order of the split's clip list.
    """
    names = {"train": TRAIN_CLIPS, "eval": EVAL_CLIPS, "all": DEEPMIMIC_CLIPS + HOLOSOMA_CLIPS}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train', 'eval' or 'all', got {split!r}")
    path = Path(path) if path is not None else _default_npz()
    if not path.is_file():
        raise FileNotFoundError(f"mocap file {path} not found; build it with `fitlib extract-mocap`")
    clips = {}
    with np.load(path) as data:
        for name in names:
            if f"{name}/poses" not in data:
                raise ValueError(f"clip {name!r} missing from {path}")
            source = str(data[f"{name}/source"])
            clips[name] = MocapClip(
                poses=data[f"{name}/poses"].astype(np.float32),
                transl=data[f"{name}/transl"].astype(np.float32),
                fps=float(data[f"{name}/fps"]),
                source=source,
                licence=LICENCES[source],
            )
    return clips
