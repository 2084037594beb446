"""Person crops for an image regressor, as SPIN makes them: the affine map from an image to the square crop of a
person's box (rotated and mirrored for augmentation), SPIN's random augmentation, and what the augmentation does to
the image, to 2D keypoints, to SMPL poses and to 3D points. numpy and OpenCV only.

Conventions:

* pixels: ``(x, y)`` = (column, row), the centre of the top-left pixel at ``(0, 0)`` (:mod:`fitlib.io.images`), in
  the image and in the crop alike. ``cv2.warpAffine`` uses the same convention, so image content lands exactly
  where :func:`crop_matrix` maps its coordinates.
* the box: a square of side ``size`` px around ``center`` (SPIN's ``scale`` is ``size / 200``). It fills the
  ``res`` x ``res`` crop edge to edge: its left edge ``center_x - size / 2`` is the crop's left edge ``-0.5``, its
  centre is the crop's centre ``(res - 1) / 2``. In box units ``u`` in [-1, 1] (``x = center + u * size / 2``, the
  convention of the regressor's box coordinates), crop pixel ``i`` shows ``u = (2 i + 1) / res - 1``.
* rotation: ``rotation_deg > 0`` turns the image content counter-clockwise as seen on screen, about the box centre
  (SPIN's ``rot``: its point transform rotates by ``-rot`` in y-down pixel coordinates). The same turn of a body in
  the camera frame (x right, y down, z forward) is a rotation by ``-rotation_deg`` about the camera's z axis
  (:func:`augment_pose`, :func:`augment_points3d`).
* flip: the crop is mirrored left-right after the rotation. A mirrored person is a person whose left and right are
  swapped: keypoints are re-labelled through the layout's ``flip_index`` (the point where the person's right wrist
  went is the mirrored person's left wrist), and poses through :func:`fitlib.datasets.mocap.mirror_pose`
  (the camera frame's x -> -x mirror: left and right joints swapped, axis-angle y and z negated, SPIN's
  ``flip_pose``).

Checked against SPIN (nkolot/SPIN master): ``utils/imutils.py`` (``get_transform``, ``crop``, ``rot_aa``,
``flip_pose``) and ``datasets/base_dataset.py`` (``augm_params``, ``rgb_processing``, ``j2d_processing``,
``pose_processing``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.spatial.transform import Rotation

from fitlib.body.layouts import KeypointLayout, get_layout
from fitlib.datasets.mocap import mirror_pose

__all__ = ["AugmentConfig", "Augmentation", "IDENTITY", "augment_matrix", "augment_points3d", "augment_pose",
           "crop_image", "crop_keypoints", "crop_matrix", "crop_to_full", "draw_augmentation", "full_to_crop"]


# ------------------------------------------------------------------------------------------------ geometry
def _rotation_2d(rotation_deg: float) -> np.ndarray:
    """[2, 2] the turn of pixel coordinates (y down) that shows content ``rotation_deg`` counter-clockwise."""
    a = np.radians(float(rotation_deg))
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, s], [-s, c]])


def _check_box(center, size, res) -> tuple[np.ndarray, float, int]:
    c = np.asarray(center, dtype=np.float64)
    if c.shape != (2,) or not np.isfinite(c).all():
        raise ValueError(f"center must be 2 finite numbers (x, y px), got {np.asarray(center).tolist()!r}")
    if not (np.ndim(size) == 0 and np.isfinite(size) and float(size) > 0):
        raise ValueError(f"size must be a positive number of pixels, got {size!r}")
    if isinstance(res, bool) or not isinstance(res, (int, np.integer)) or res < 1:
        raise ValueError(f"res must be a positive integer (crop side, px), got {res!r}")
    return c, float(size), int(res)


def crop_matrix(center, size: float, res: int, rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """The affine map [2, 3] from image pixels to crop pixels (``[x_crop, y_crop] = M @ [x, y, 1]``).

    Args:
        center: [2] the box centre (x, y px in the image).
        size: the box side (px; SPIN's ``200 * scale``).
        res: the crop side (px).
        rotation_deg: degrees; > 0 shows the image content turned counter-clockwise on screen, about the box
            centre (SPIN's sign; see the module doc).
        flip: mirror the (rotated) crop left-right about its vertical centre line.
    Returns:
        float64 [2, 3]; ``cv2.warpAffine(image, M, (res, res))`` is the crop (:func:`crop_image`).
    Raises:
        ValueError: a non-finite centre, a non-positive size or res.
    """
    c, size, res = _check_box(center, size, res)
    k = res / size
    o = (res - 1) / 2.0
    lin = k * _rotation_2d(rotation_deg)
    if flip:
        lin = np.diag([-1.0, 1.0]) @ lin
    return np.concatenate([lin, (o - lin @ c)[:, None]], axis=1)


def augment_matrix(rotation_deg: float, flip: bool, pivot) -> np.ndarray:
    """The map [2, 3] from image pixels to the pixels of the "augmented full image": the image turned by
    ``rotation_deg`` (counter-clockwise on screen for > 0) about ``pivot`` [2] px, then mirrored left-right about
    the vertical line through ``pivot``.

    With ``pivot`` the principal point, this is exactly what :func:`augment_pose` / :func:`augment_points3d` do
    to a body in the camera frame (a turn about the optical axis, the x -> -x mirror), for any intrinsics with
    equal focal lengths; and ``crop_matrix(c, s, res, rot, flip)`` equals
    ``crop_matrix(A(c), s, res) @ A`` (A this map, as 3 x 3): the same crop is the unrotated box of side ``s``
    around ``A(c)`` in the augmented full image.
    """
    p = np.asarray(pivot, dtype=np.float64)
    if p.shape != (2,) or not np.isfinite(p).all():
        raise ValueError(f"pivot must be 2 finite numbers (x, y px), got {np.asarray(pivot).tolist()!r}")
    lin = _rotation_2d(rotation_deg)
    if flip:
        lin = np.diag([-1.0, 1.0]) @ lin
    return np.concatenate([lin, (p - lin @ p)[:, None]], axis=1)


def crop_to_full(xy, centre, size, res: int) -> np.ndarray:
    """Crop pixels [..., N, 2] back to image pixels with the box's scale and shift only (no rotation, no flip):
    ``x = centre + (x_crop - (res - 1) / 2) * size / res``, the inverse of ``crop_matrix(centre, size, res)``.

    Args:
        xy: [..., N, 2] crop px. centre: [..., 2] px. size: [...] px (box side). res: crop side px.
    """
    xy = np.asarray(xy, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)[..., None, :]
    s = np.asarray(size, dtype=np.float64)[..., None, None]
    return c + (xy - (res - 1) / 2.0) * (s / res)


def full_to_crop(xy, centre, size, res: int) -> np.ndarray:
    """Image pixels [..., N, 2] to crop pixels of the unrotated, unflipped box (``centre`` [..., 2], ``size``
    [...] px): the inverse of :func:`crop_to_full`."""
    xy = np.asarray(xy, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)[..., None, :]
    s = np.asarray(size, dtype=np.float64)[..., None, None]
    return (xy - c) * (res / s) + (res - 1) / 2.0


# ------------------------------------------------------------------------------------------- augmentation
class AugmentConfig(BaseModel):
    """SPIN's training augmentation (``augm_params``; its defaults ``rot_factor`` 30, ``scale_factor`` 0.25,
    ``noise_factor`` 0.4, flips half the time)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    """False: every sample unaugmented (validation)."""
    rotation_deg: float = Field(30.0, ge=0, le=90)
    """Std of the in-plane rotation (degrees, normal, clipped to +-2x this)."""
    rotation_prob: float = Field(0.4, ge=0, le=1)
    """Fraction of samples rotated at all (the others 0). SPIN sets the rotation to 0 with probability 0.6, so
    rotates 40% of its samples."""
    scale: float = Field(0.25, ge=0, lt=1)
    """The box side is multiplied by clip(N(1, scale²), 1 - scale, 1 + scale)."""
    flip: float = Field(0.5, ge=0, le=1)
    """Probability of a left-right mirror."""
    colour_noise: float = Field(0.4, ge=0, le=1)
    """Each RGB channel is multiplied by U(1 - this, 1 + this) (then clipped to [0, 255])."""


@dataclass(frozen=True)
class Augmentation:
    """One sample's augmentation: ``flip`` (mirror left-right), ``rotation_deg`` (degrees, counter-clockwise on
    screen for > 0), ``scale`` (factor on the box side; > 1 shows more context, the person smaller) and
    ``colour`` [3] (factors on R, G, B)."""

    flip: bool = False
    rotation_deg: float = 0.0
    scale: float = 1.0
    colour: np.ndarray = field(default_factory=lambda: np.ones(3))


IDENTITY = Augmentation()
"""No augmentation."""


def draw_augmentation(rng: np.random.Generator, cfg: AugmentConfig | None) -> Augmentation:
    """One sample's :class:`Augmentation` drawn from ``rng`` (SPIN's distributions, see :class:`AugmentConfig`).

    An enabled config always takes the same 7 numbers from ``rng`` (whatever its settings), so that changing one
    setting does not shift the other samples' draws; None or a disabled config takes none and gives the identity.
    """
    if cfg is None or not cfg.enabled:
        return IDENTITY
    flip = bool(rng.uniform() < cfg.flip)
    colour = rng.uniform(1 - cfg.colour_noise, 1 + cfg.colour_noise, 3)
    rot = float(np.clip(rng.normal() * cfg.rotation_deg, -2 * cfg.rotation_deg, 2 * cfg.rotation_deg))
    scale = float(np.clip(1 + rng.normal() * cfg.scale, 1 - cfg.scale, 1 + cfg.scale))
    if not rng.uniform() < cfg.rotation_prob:
        rot = 0.0
    return Augmentation(flip, rot, scale, colour)


# ----------------------------------------------------------------------------------------- applying it
def crop_image(image: np.ndarray, matrix: np.ndarray, res: int, colour=None) -> np.ndarray:
    """The crop [3, res, res] float32 RGB in [0, 1] of ``image`` [H, W, 3] uint8 RGB through ``matrix`` [2, 3]
    (:func:`crop_matrix`): bilinear, black outside the image; each channel multiplied by ``colour`` [3] (or
    not, None) and clipped to [0, 255] before scaling to [0, 1]."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape != (2, 3) or not np.isfinite(M).all():
        raise ValueError(f"matrix must be a finite [2, 3] affine map, got shape {M.shape}")
    out = cv2.warpAffine(image, M, (int(res), int(res)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0))
    out = out.astype(np.float32)
    if colour is not None:
        col = np.asarray(colour, dtype=np.float32).reshape(-1)
        if col.shape != (3,) or not np.isfinite(col).all() or (col < 0).any():
            raise ValueError(f"colour must be 3 non-negative factors (R, G, B), got {np.asarray(colour).tolist()!r}")
        out = np.clip(out * col, 0.0, 255.0)
    return np.ascontiguousarray(out.transpose(2, 0, 1) / np.float32(255.0))


def crop_keypoints(keypoints, matrix: np.ndarray, flip: bool, layout: str | KeypointLayout) -> np.ndarray:
    """Keypoints [..., J, 3] (x px, y px, confidence) of ``layout`` mapped through ``matrix`` [2, 3]
    (:func:`crop_matrix`, or :func:`augment_matrix`) into the crop.

    With ``flip`` (the flip the matrix holds), the points are re-labelled through ``layout.flip_index``: row
    ``left_wrist`` of the result is where the image's right wrist went, the mirrored person's left wrist. The
    confidence is kept; a missing point (confidence <= 0 or a non-finite value) comes out (0, 0, 0).
    """
    lay = get_layout(layout)
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim < 2 or kp.shape[-2:] != (len(lay), 3):
        raise ValueError(f"keypoints for layout {lay.name!r} must have shape [..., {len(lay)}, 3], got {kp.shape}")
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape != (2, 3):
        raise ValueError(f"matrix must be [2, 3], got shape {M.shape}")
    present = np.isfinite(kp).all(-1) & (kp[..., 2] > 0)
    xy = np.where(present[..., None], kp[..., :2], 0.0) @ M[:, :2].T + M[:, 2]
    out = np.concatenate([xy, kp[..., 2:3]], axis=-1)
    out = np.where(present[..., None], out, 0.0)
    if flip:
        out = out[..., list(lay.flip_index), :]
    return out


def _per_row(value, n: int, name: str, dtype) -> np.ndarray:
    a = np.asarray(value, dtype=dtype)
    if a.ndim == 0:
        return np.full(n, a, dtype=dtype)
    a = a.reshape(-1)
    if a.shape != (n,):
        raise ValueError(f"{name} must be one value or one per pose ({n}), got {a.shape[0]}")
    return a


def augment_pose(pose, rotation_deg=0.0, flip=False) -> np.ndarray:
    """SMPL poses after the image augmentation: the global orientation turned about the camera's z axis by
    ``-rotation_deg`` (the body turns on screen as the image content does, see the module doc), then, where
    ``flip``, the left-right mirror (:func:`fitlib.datasets.mocap.mirror_pose`: the camera frame's x -> -x, which
    is the image's left-right mirror).

    Args:
        pose: [N, 72] (or [72]) axis-angle, radians, joint 0 the global orientation in the camera frame
            (OpenCV axes).
        rotation_deg: degrees, one for all or [N].
        flip: one bool for all or [N].
    Returns:
        float64 [N, 72] (or [72]).
    """
    p = np.asarray(pose, dtype=np.float64)
    single = p.ndim == 1
    p = p.reshape(-1, p.shape[-1]) if p.ndim else p
    if p.ndim != 2 or p.shape[1] != 72:
        raise ValueError(f"pose must have shape [N, 72] or [72], got {np.shape(pose)}")
    n = len(p)
    rot = _per_row(rotation_deg, n, "rotation_deg", np.float64)
    flips = _per_row(flip, n, "flip", bool)
    out = p.copy()
    if n:
        turn = Rotation.from_rotvec(np.stack([np.zeros(n), np.zeros(n), -np.radians(rot)], -1))
        out[:, :3] = (turn * Rotation.from_rotvec(p[:, :3])).as_rotvec()
        out[flips] = mirror_pose(out[flips])
    return out[0] if single else out


def augment_points3d(points, rotation_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """Camera-frame points [..., 3] (metres) after the augmentation: turned by ``-rotation_deg`` about the camera's
    z axis, then x -> -x where ``flip`` (positions only: re-label left/right points with the layout's
    ``flip_index`` yourself)."""
    x = np.asarray(points, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"points must have shape [..., 3], got {x.shape}")
    a = -np.radians(float(rotation_deg))
    R = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    if flip:
        R = np.diag([-1.0, 1.0, 1.0]) @ R
    return x @ R.T
