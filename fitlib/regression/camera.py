"""Cameras of the regressor: the person box, CLIFF's ``bbox_info``, and crop cameras to full-image translations.

The network never sees pixels of the full image: it sees the keypoints normalised to a square person
box and, CLIFF-style, where that box sits in the full image relative to the focal length
(:func:`bbox_info`). It predicts a weak-perspective *crop camera* ``(s, tx, ty)``: a body point ``X``
(metres, camera axes, relative to the pelvis) lands at ``s * (X_xy + (tx, ty))`` in box-normalised
coordinates (the box spans [-1, 1]). :func:`crop_to_translation` turns that into the pelvis position
in the full image's camera frame with the real intrinsics (CLIFF's conversion), so that the body
can be projected with full perspective and the 2D loss computed in full-image pixels:

    tz = 2 f / (b s),   tx_full = tx + 2 (cx - u0) / (b s),   ty_full = ty + 2 (cy - v0) / (b s)

(``b`` box size px, ``(cx, cy)`` box centre, ``(u0, v0)`` principal point, ``f`` focal length px).
The pelvis then projects exactly to the box point ``(cx, cy) + b/2 * s * (tx, ty)`` (tested), as the
weak-perspective crop camera says. With ``fx != fy`` the mean focal length is used for depth.

The ``weak`` camera uses the same conversion but no ``bbox_info`` input and a 2D loss in box coordinates
(:func:`weak_perspective_project`). SPIN's camera (``spin``) is the same crop camera on SMPL's origin instead
of the pelvis, seen by SPIN's perspective camera: focal length :data:`SPIN_FOCAL` px on a :data:`SPIN_CROP` px
crop, depth ``tz = 2 f / (224 s)`` (:func:`spin_project`). Its full-image pose is the same conversion
(:func:`crop_to_translation`, with the real intrinsics: the origin lands where SPIN puts it and the body
has SPIN's size in the image; other points differ by the perspective of the real focal length); under
:func:`spin_intrinsics`, the full-image camera SPIN's crop camera implies, every point projects exactly as in
SPIN (tested).
"""
from __future__ import annotations

import torch

BOX_SCALE = 1.2
"""The square person box is this many times the larger side of the visible keypoints' extent."""
SPIN_FOCAL = 5000.0
"""SPIN's focal length (px) on its crop."""
SPIN_CROP = 224
"""SPIN's crop side (px)."""
MIN_SCALE = 1e-2
"""Crop-camera scales below this are clamped when converting (the camera loss keeps s above it)."""


def keypoint_box(xy: torch.Tensor, visible: torch.Tensor, scale: float = BOX_SCALE,
                 min_size: float = 8.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Square person boxes from keypoints.

    Args:
        xy: [..., J, 2] pixels; visible: [..., J] bool (non-visible points are ignored).
    Returns:
        centre [..., 2] px and size [...] px (``scale`` x the larger side of the visible points' extent,
        at least ``min_size``); a person without visible points gets centre 0 and size ``min_size``.
    """
    big = torch.finfo(xy.dtype).max
    lo = torch.where(visible[..., None], xy, torch.full_like(xy, big)).amin(-2)
    hi = torch.where(visible[..., None], xy, torch.full_like(xy, -big)).amax(-2)
    anyv = visible.any(-1)
    centre = torch.where(anyv[..., None], 0.5 * (lo + hi), torch.zeros_like(lo))
    size = torch.where(anyv, (hi - lo).amax(-1) * scale, torch.zeros_like(lo[..., 0])).clamp_min(min_size)
    return centre, size


def bbox_info(centre: torch.Tensor, size: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """CLIFF's box information [..., 3]: box centre offset from the principal point and box size, over
    the focal length, standardised (offsets x 2.8 as CLIFF; size as ``log(b / f)`` shifted to ~zero mean).

    Args:
        centre: [..., 2] px; size: [...] px; K: [..., 3, 3] intrinsics.
    """
    f = 0.5 * (K[..., 0, 0] + K[..., 1, 1])
    off = (centre - K[..., :2, 2]) / f[..., None]
    return torch.cat([2.8 * off, (torch.log(size / f) + 1.2)[..., None]], -1)


def crop_to_translation(cam: torch.Tensor, centre: torch.Tensor, size: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pelvis position [..., 3] (metres, full-image camera frame) from crop cameras ``(s, tx, ty)`` [..., 3]
    (see the module doc); boxes ``centre`` [..., 2], ``size`` [...] px; intrinsics K [..., 3, 3]."""
    s = cam[..., 0].clamp_min(MIN_SCALE)
    f = 0.5 * (K[..., 0, 0] + K[..., 1, 1])
    bs = size * s
    tz = 2.0 * f / bs
    txy = cam[..., 1:] + 2.0 * (centre - K[..., :2, 2]) / bs[..., None]
    return torch.cat([txy, tz[..., None]], -1)


def translation_to_crop(pelvis: torch.Tensor, centre: torch.Tensor, size: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`crop_to_translation`: crop cameras [..., 3] for pelvis positions [..., 3] (z > 0)."""
    f = 0.5 * (K[..., 0, 0] + K[..., 1, 1])
    s = 2.0 * f / (size * pelvis[..., 2])
    txy = pelvis[..., :2] - 2.0 * (centre - K[..., :2, 2]) / (size * s)[..., None]
    return torch.cat([s[..., None], txy], -1)


def weak_perspective_project(points: torch.Tensor, pelvis: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """SPIN's weak-perspective projection: box-normalised coordinates [..., N, 2] of camera-frame points
    [..., N, 3], ``s * ((X - pelvis)_xy + (tx, ty))`` with ``cam = (s, tx, ty)`` [..., 3]."""
    rel = points[..., :2] - pelvis[..., None, :2]
    return cam[..., None, :1] * (rel + cam[..., None, 1:])


def to_box(xy: torch.Tensor, centre: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Pixels [..., N, 2] to box-normalised coordinates (the box spans [-1, 1])."""
    return (xy - centre[..., None, :]) / (0.5 * size[..., None, None])


def spin_project(points: torch.Tensor, origin: torch.Tensor, cam: torch.Tensor, focal: float = SPIN_FOCAL,
                 crop: int = SPIN_CROP) -> torch.Tensor:
    """SPIN's projection of camera-frame points [..., N, 3] (m) posed at ``origin`` [..., 3] (SMPL's origin),
    with SPIN crop cameras ``cam = (s, tx, ty)`` [..., 3]: box-normalised coordinates [..., N, 2] (the crop
    spans [-1, 1]) of the perspective camera of focal ``focal`` px on a ``crop`` px crop placing the origin
    at depth ``tz = 2 focal / (crop s)``; i.e. ``s (X_xy + t) tz / (Z + tz)`` for X relative to the origin."""
    rel = points - origin[..., None, :]
    s = cam[..., None, :1].clamp_min(MIN_SCALE)
    tz = 2.0 * focal / (crop * s)
    return s * (rel[..., :2] + cam[..., None, 1:]) * tz / (rel[..., 2:] + tz)


def spin_intrinsics(centre: torch.Tensor, size: torch.Tensor, focal: float = SPIN_FOCAL,
                    crop: int = SPIN_CROP) -> torch.Tensor:
    """[..., 3, 3] the full-image intrinsics SPIN's crop camera implies for boxes ``centre`` [..., 2], ``size``
    [...] px: focal ``focal * size / crop`` px, principal point at the box centre. With these,
    :func:`crop_to_translation` of a SPIN camera projects every point exactly where :func:`spin_project` puts
    it in the box."""
    f = focal * size / crop
    K = torch.zeros(*size.shape, 3, 3, dtype=size.dtype, device=size.device)
    K[..., 0, 0] = K[..., 1, 1] = f
    K[..., :2, 2] = centre
    K[..., 2, 2] = 1.0
    return K
