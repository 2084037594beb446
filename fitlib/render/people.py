"""Several people in one z-buffer: their meshes rasterised together (one face index space), so a nearer
person hides a farther one pixel by pixel; the person-index mask and depth map for pseudo-labels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fitlib.render.rasterize import Raster, rasterize


@dataclass
class PeopleRaster:
    """The people of one image rasterised together.

    Attributes:
        raster: the :class:`~fitlib.render.rasterize.Raster` of the stacked meshes (faces of person p are
            ``p * F ... (p + 1) * F - 1``).
        person: [H, W] int64, index (into the vertices given) of the person seen at each pixel, -1 for none.
        depth: [H, W] float32 camera z of the visible surface (metres), 0 where no one is seen.
        faces: [P * F, 3] the stacked faces (indices into the [P * V, 3] stacked vertices).
        vertices: [P * V, 3] the stacked vertices (camera frame, metres).
    """

    raster: Raster
    person: torch.Tensor
    faces: torch.Tensor
    vertices: torch.Tensor

    @property
    def depth(self) -> torch.Tensor:
        return self.raster.depth


def _as_tensor(name: str, value, dtype: torch.dtype, device) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    return value.to(device=device, dtype=dtype)


def rasterize_people(vertices, faces, K, image_size: tuple[int, int], device: str | torch.device | None = None
                     ) -> PeopleRaster:
    """Rasterise P meshes of one topology in one z-buffer.

    Args:
        vertices: [P, V, 3] camera-frame vertices (metres; numpy or torch). A person with any non-finite
            vertex (e.g. not fitted) is not drawn.
        faces: [F, 3] the shared faces (e.g. ``BodyModel.faces``).
        K: [3, 3] intrinsics (pixels).
        image_size: (height, width) in pixels.
        device: where to rasterise (default: the vertices' device, CPU for numpy).

    Returns:
        A :class:`PeopleRaster`.
    """
    dev = torch.device(device) if device is not None else (
        vertices.device if isinstance(vertices, torch.Tensor) else torch.device("cpu"))
    v = _as_tensor("vertices", vertices, torch.float32, dev)
    f = _as_tensor("faces", faces, torch.int64, dev)
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError(f"vertices must be [P, V, 3], got shape {tuple(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3], got shape {tuple(f.shape)}")
    P, V, _ = v.shape
    drawn = torch.isfinite(v).all(-1).all(-1)
    v = torch.where(drawn[:, None, None], v, torch.full_like(v, float("nan")))
    stacked_faces = (f[None] + V * torch.arange(P, device=dev)[:, None, None]).reshape(-1, 3)
    stacked = v.reshape(-1, 3)
    raster = rasterize(stacked, stacked_faces, _as_tensor("K", K, torch.float32, dev), tuple(int(s) for s in image_size))
    person = torch.where(raster.face >= 0, torch.div(raster.face, max(len(f), 1), rounding_mode="floor"),
                         torch.full_like(raster.face, -1))
    return PeopleRaster(raster, person, stacked_faces, stacked)


@dataclass
class PersonMaps:
    """Pseudo-labels of one image (numpy).

    Attributes:
        person: [H, W] int64 index of the result's person seen at each pixel, -1 for background.
        depth: [H, W] float32 camera z of the visible body surface (metres), 0 for background.
    """

    person: np.ndarray
    depth: np.ndarray


def render_maps(result, body_model=None, device: str | torch.device | None = None) -> PersonMaps:
    """The person-index mask and depth map of a :class:`~fitlib.FitResult` at its image size.

    Args:
        result: the fit; its people not fitted are absent from the maps.
        body_model: as for :meth:`FitResult.vertices` (default: the result's model).
        device: where to rasterise (default CPU).
    """
    bm = result._body_model(body_model, "render_maps")
    pr = rasterize_people(result.vertices(bm), bm.faces, result.K, result.image_size, device)
    return PersonMaps(pr.person.cpu().numpy(), pr.depth.cpu().numpy())
