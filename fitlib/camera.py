"""Pinhole camera: default intrinsics and projection (OpenCV convention: x right, y down, z forward)."""
from __future__ import annotations

import math

import torch


def default_intrinsics(height: int, width: int, dtype: torch.dtype = torch.float32,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Intrinsics [3, 3] for an image of ``height`` x ``width`` pixels.

    Focal length ``sqrt(w² + h²)`` pixels (the CLIFF convention, about a 53°
    diagonal field of view), principal point at the image centre.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    f = math.hypot(width, height)
    return torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def project(points: torch.Tensor, K: torch.Tensor, min_depth: float = 1e-3) -> torch.Tensor:
    """Project camera-frame points [..., N, 3] (metres) to pixels [..., N, 2] with intrinsics K [..., 3, 3].

    Depths below ``min_depth`` metres are clamped so that the projection and
    its gradient stay finite for points behind the camera.
    """
    z = points[..., 2:3].clamp(min=min_depth)
    xy = points[..., :2] / z
    f = torch.stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :]
    c = K[..., :2, 2][..., None, :]
    return xy * f + c


def ray_rotation(target: torch.Tensor) -> torch.Tensor:
    """Rotations [..., 3, 3] (the shortest, about an axis perpendicular to both) that take the camera's z axis to
    the ray through ``target`` [..., 3] (camera frame, in front of the camera): ``R @ (0, 0, 1) = target / |target|``.

    ``points @ R`` (row vectors, i.e. ``R^T p``) expresses camera-frame points in the camera turned to look at
    the target, the frame of a crop centred on it, in which a landmark network such as BlazePose sees a body.
    """
    z = target / target.norm(dim=-1, keepdim=True)
    zero = torch.zeros_like(z[..., 0])
    # [e_z]_x z = v = (-z_y, z_x, 0); Rodrigues with cos = z_z: R = I + [v]_x + [v]_x² / (1 + cos)
    vx = torch.stack([zero, zero, z[..., 0], zero, zero, z[..., 1], -z[..., 0], -z[..., 1], zero], -1)
    vx = vx.view(*z.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=z.dtype, device=z.device)
    return eye + vx + vx @ vx / (1.0 + z[..., 2])[..., None, None]
