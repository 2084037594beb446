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
