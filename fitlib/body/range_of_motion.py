"""Random body poses within the human joints' anatomical ranges of motion.

:func:`fitlib.body.open_model.sample_plausible_poses` turns each joint about a random axis, so a thigh is as
likely to swing 90° backwards as forwards. The real joints are lopsided: a hip flexes about 125° but extends
about 30°, a shoulder lifts the arm overhead but reaches behind the back only so far, knees and elbows bend
one way. That lopsidedness is what tells which way a limb points in depth when 2D keypoints cannot. It holds
for every motion, seen or not, so random poses drawn within these ranges teach it without teaching any
particular motion.

Ball joints (hips, shoulders) draw the direction of their bone uniformly over the region of the sphere the
joint reaches, then a twist about the bone; hinges (knees, elbows) a flexion and a little twist; the spine,
neck, head, collars, ankles, wrists and hands a rotation within a box of flexion, side bending and twist. The
ranges (:data:`RANGES_DEG`) are clinical active ranges of motion of adults (e.g. the American Academy of
Orthopaedic Surgeons' tables), rounded; the spine's, neck's and collars' are split over their SMPL joints.
They are bounds, not a prior: the poses are uniform within them, joints independent.

Axes are SMPL's (:mod:`fitlib.body.skeleton`): x to the body's left, y up, z forward, joint frames aligned
with the world in the T-pose. The sampler works on the left joints; the right ones are their mirror images.
"""
from __future__ import annotations

import math

import roma
import torch

from fitlib.body.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, swing_rotvec

RANGES_DEG: dict[str, dict[str, tuple[float, float]]] = {
    # ball joints: where the bone may point (see _hip_ok / _shoulder_ok) and the twist about it
    "hip": {"flexion": (-30.0, 125.0), "abduction": (-25.0, 50.0), "twist": (-40.0, 40.0)},
    "shoulder": {"behind": (0.0, 55.0), "twist": (-70.0, 70.0)},
    # hinges: flexion about the hinge axis, a little twist
    "knee": {"flexion": (0.0, 140.0), "twist": (-10.0, 10.0)},
    "elbow": {"flexion": (0.0, 145.0), "twist": (-70.0, 70.0)},
    # boxes: (x, y, z) rotation-vector components of the left joint (y: twist about the bone for the legs and
    # trunk; for the arm's joints x is the twist)
    "spine": {"x": (-10.0, 27.0), "y": (-15.0, 15.0), "z": (-12.0, 12.0)},
    "neck": {"x": (-25.0, 25.0), "y": (-35.0, 35.0), "z": (-20.0, 20.0)},
    "head": {"x": (-20.0, 20.0), "y": (-25.0, 25.0), "z": (-15.0, 15.0)},
    "collar": {"x": (-5.0, 5.0), "y": (-15.0, 15.0), "z": (-10.0, 20.0)},
    "ankle": {"x": (-20.0, 45.0), "y": (-10.0, 10.0), "z": (-20.0, 20.0)},
    "foot": {"x": (-25.0, 15.0), "y": (0.0, 0.0), "z": (0.0, 0.0)},
    "wrist": {"x": (-30.0, 30.0), "y": (-25.0, 25.0), "z": (-60.0, 60.0)},
    "hand": {"x": (-10.0, 10.0), "y": (-10.0, 10.0), "z": (-15.0, 15.0)},
}
"""Ranges of motion (degrees) per joint kind, for the body's left joints. Hip: flexion is the thigh's angle
forward of straight down in the sagittal plane (negative: extension), abduction its angle out of the sagittal
plane (negative: across the midline). Shoulder: the upper arm may point anywhere but more than ``behind`` behind
the frontal plane, and across the midline only in front of the body. Knee and ankle signs as SMPL's (knee
flexion: positive about x; ankle: positive x is plantar flexion)."""


def _kind(name: str) -> str:
    return name.split("_")[-1].rstrip("123")


def _uniform(lo_hi: tuple[float, float], n: int, g: torch.Generator | None, dtype) -> torch.Tensor:
    lo, hi = (math.radians(v) for v in lo_hi)
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=dtype)


def _directions(n: int, ok, g: torch.Generator | None, dtype) -> torch.Tensor:
    """[n, 3] directions uniform over the region ``ok`` (unit [m, 3] -> [m] bool) of the sphere, by rejection; the
    Gaussian draws themselves, not normalised (:func:`~fitlib.body.skeleton.swing_rotvec` normalises once)."""
    out, have = [], 0
    while have < n:
        d = torch.randn(2 * n + 8, 3, generator=g, dtype=dtype)
        d = d[ok(torch.nn.functional.normalize(d, dim=-1))]
        out.append(d)
        have += len(d)
    return torch.cat(out)[:n]


def _hip_ok(u: torch.Tensor) -> torch.Tensor:
    """Left thigh directions (body frame) within the hip's range (:data:`RANGES_DEG`)."""
    r = RANGES_DEG["hip"]
    flexion = torch.rad2deg(torch.atan2(u[:, 2], -u[:, 1]))  # in the sagittal plane, from straight down
    abduction = torch.rad2deg(torch.asin(u[:, 0].clamp(-1, 1)))  # out of the sagittal plane, outwards (+x)
    return (flexion >= r["flexion"][0]) & (flexion <= r["flexion"][1]) & \
        (abduction >= r["abduction"][0]) & (abduction <= r["abduction"][1])


def _shoulder_ok(u: torch.Tensor) -> torch.Tensor:
    """Left upper-arm directions within the shoulder's range: not more than ``behind`` behind the frontal
    plane, and across the midline (x < 0) only in front of the body."""
    behind = torch.rad2deg(torch.asin((-u[:, 2]).clamp(-1, 1)))
    return (behind <= RANGES_DEG["shoulder"]["behind"][1]) & ((u[:, 0] >= 0) | (u[:, 2] > 0.2))


def _swing_twist(rest: torch.Tensor, u: torch.Tensor, twist: torch.Tensor) -> torch.Tensor:
    """[n, 3] rotation vectors turning the bone from its rest direction ``rest`` [3] (unit) to the direction ``u``
    [n, 3] along the shortest arc, after a twist of ``twist`` [n] rad about the rest direction."""
    rest = rest.to(u)
    return roma.rotvec_composition([swing_rotvec(rest, u), rest * twist[:, None]])


def _left_joint(kind: str, n: int, g: torch.Generator | None, dtype) -> torch.Tensor:
    """[n, 3] rotation vectors of a left joint of ``kind``."""
    r = RANGES_DEG[kind]
    if kind == "hip":
        return _swing_twist(torch.tensor([0.0, -1.0, 0.0]), _directions(n, _hip_ok, g, dtype),
                            _uniform(r["twist"], n, g, dtype))
    if kind == "shoulder":
        return _swing_twist(torch.tensor([1.0, 0.0, 0.0]), _directions(n, _shoulder_ok, g, dtype),
                            _uniform(r["twist"], n, g, dtype))
    if kind == "knee":  # flexion about +x, twist about the shin (y)
        flex = torch.stack([_uniform(r["flexion"], n, g, dtype), torch.zeros(n, dtype=dtype),
                            torch.zeros(n, dtype=dtype)], -1)
        tw = torch.stack([torch.zeros(n, dtype=dtype), _uniform(r["twist"], n, g, dtype),
                          torch.zeros(n, dtype=dtype)], -1)
        return roma.rotvec_composition([flex, tw])
    if kind == "elbow":  # flexion about -y (the forearm swings forwards), twist about the forearm (x)
        flex = torch.stack([torch.zeros(n, dtype=dtype), -_uniform(r["flexion"], n, g, dtype),
                            torch.zeros(n, dtype=dtype)], -1)
        tw = torch.stack([_uniform(r["twist"], n, g, dtype), torch.zeros(n, dtype=dtype),
                          torch.zeros(n, dtype=dtype)], -1)
        return roma.rotvec_composition([flex, tw])
    return torch.stack([_uniform(r[a], n, g, dtype) for a in "xyz"], -1)


def sample_anatomical_poses(n: int, generator: torch.Generator | None = None,
                            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random SMPL poses [n, 24, 3] (axis-angle, radians, pelvis at zero) within :data:`RANGES_DEG`, uniform
    there and independent per joint; left and right joints drawn alike (the right ones mirrored).

    Args:
        n: number of poses.
        generator: torch generator (seeded: the same poses every call).
        dtype: float dtype of the result.
    """
    pose = torch.zeros(n, NUM_JOINTS, 3, dtype=dtype)
    mirror = torch.tensor([1.0, -1.0, -1.0], dtype=dtype)
    for j, name in enumerate(SMPL_JOINT_NAMES[1:], start=1):
        rv = _left_joint(_kind(name), n, generator, dtype)
        pose[:, j] = rv * mirror if name.startswith("right") else rv
    return pose
