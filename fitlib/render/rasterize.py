"""A depth-buffered triangle rasteriser in torch (CPU or GPU, no GL).

Design, for meshes of many small triangles (a body mesh's faces cover a few pixels each):

* Per face (vectorised over all faces, float64): project, cull, and write its 3 barycentric weights and
  1/z as affine functions of the pixel offset from its bounding box's corner (float32 coefficients in
  local coordinates, so the inside test stays exact to ~1e-6 px).
* Each face is tested at the pixel centres of its bounding box. Faces are grouped by box size into dense
  S x S stencils (:data:`_STENCILS`; one broadcast per group, no gathers, no Python loop over faces);
  larger faces are expanded into (face, pixel) candidates with ``repeat_interleave``, in bands of rows
  and chunks of at most :data:`CANDIDATE_BUDGET`, so a face covering the whole image costs time, not memory.
* The z-buffer is one ``scatter_reduce(amin)`` of an int64 key per inside candidate: the float32 bits of
  its depth (a positive float's bits order like the number) in the high half, the face index in the low
  half. The nearest face wins, ties go to the lower face index (deterministic), and the meshes of several
  people rasterised together share one buffer: occlusion between them is per pixel.
* Only the winners' perspective-correct barycentrics and depth are computed afterwards.

The work is about the pixels the faces' boxes cover (a few times the covered pixels), not pixels x faces as
a per-pixel ray test would be; tiling would add a sort and per-tile face lists for no gain at these sizes.

Conventions: camera frame x right, y down, z forward (metres, OpenCV); a pixel's centre has whole
coordinates (the centre of the top-left pixel is (0, 0)), like :mod:`fitlib.camera`'s projection. A pixel
centre on an edge counts as inside (both faces of a shared edge cover it; the z-buffer picks one). Faces
with a vertex nearer than :data:`NEAR` are dropped, not clipped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

CANDIDATE_BUDGET = 4_000_000
"""Most (face, pixel) candidates evaluated at once (each about 100 bytes of temporaries)."""

NEAR = 1e-3
"""Faces with a vertex nearer than this (metres, camera z) are not drawn (no clipping)."""

_NO_KEY = torch.iinfo(torch.int64).max


@dataclass
class Raster:
    """What :func:`rasterize` returns for an H x W image.

    Attributes:
        face: [H, W] int64, the visible face at each pixel, -1 where no face covers it.
        depth: [H, W] float32, camera z of the visible surface (metres), 0 where no face covers it.
        bary: [H, W, 3] float32 perspective-correct barycentric weights of the face's 3 vertices (0 where
            no face covers the pixel); interpolate a per-vertex attribute with :meth:`interpolate`.
    """

    face: torch.Tensor
    depth: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """[H, W] bool, True where a face is visible."""
        return self.face >= 0

    def interpolate(self, attributes: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-vertex ``attributes`` [V, C] blended at each pixel: [H, W, C] (0 where nothing is visible).
        ``faces`` [F, 3] are the faces given to :func:`rasterize`."""
        if attributes.ndim != 2:
            raise ValueError(f"attributes must be [V, C], got shape {tuple(attributes.shape)}")
        H, W = self.face.shape
        out = attributes.new_zeros(H, W, attributes.shape[1])
        m = self.mask
        if m.any():
            corners = attributes[faces[self.face[m]]]  # [N, 3, C]
            out[m] = (self.bary[m].to(attributes.dtype)[..., None] * corners).sum(1)
        return out


def _check(vertices: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, image_size: tuple[int, int]) -> None:
    if not isinstance(vertices, torch.Tensor) or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be a [V, 3] tensor, got {getattr(vertices, 'shape', type(vertices))}")
    if not isinstance(faces, torch.Tensor) or faces.ndim != 2 or faces.shape[1] != 3 \
            or faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"faces must be an integer [F, 3] tensor, got {getattr(faces, 'shape', type(faces))}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= len(vertices)):
        raise ValueError(f"faces index vertices outside 0..{len(vertices) - 1}")
    if len(faces) >= 2**31:
        raise ValueError(f"at most 2**31 - 1 faces, got {len(faces)}")
    if not isinstance(K, torch.Tensor) or K.shape != (3, 3) or not torch.isfinite(K).all():
        raise ValueError(f"K must be a finite [3, 3] tensor, got {getattr(K, 'shape', type(K))}")
    if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
        raise ValueError(f"image_size must be (height, width) in positive whole pixels, got {image_size!r}")


def rasterize(vertices: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, image_size: tuple[int, int],
              cull_backfaces: bool = True) -> Raster:
    """Rasterise a triangle mesh seen by a pinhole camera at the origin.

    Args:
        vertices: [V, 3] points in the camera frame (metres). Non-finite vertices make their faces invisible.
        faces: [F, 3] vertex indices (int64 or int32), counter-clockwise seen from outside (SMPL's and the
            open model's winding).
        K: [3, 3] intrinsics (pixels).
        image_size: (height, width) in pixels.
        cull_backfaces: skip faces turned away from the camera: exact for closed meshes seen from outside
            (the open model and SMPL are closed), about half the work.

    Returns:
        A :class:`Raster` (face index, depth in metres, barycentrics) on the vertices' device.
    """
    _check(vertices, faces, K, image_size)
    H, W = image_size
    dev = vertices.device
    v = vertices.to(torch.float64)
    K = K.to(dev, torch.float64)
    faces = faces.to(dev, torch.int64)
    z = v[:, 2]
    uv = v[:, :2] / z[:, None] * torch.stack([K[0, 0], K[1, 1]]) + K[:2, 2]
    # a skew term K[0, 1] as OpenCV allows it
    uv[:, 0] = uv[:, 0] + K[0, 1] * v[:, 1] / z
    tri = uv[faces]  # [F, 3, 2]
    ok = torch.isfinite(v).all(1)[faces].all(1) & (z[faces] > NEAR).all(1)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # twice the signed screen area
    ok &= area.abs() > 1e-12
    if cull_backfaces:
        normal = torch.linalg.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
        ok &= (normal * v[faces[:, 0]]).sum(1) < 0  # facing the camera
    lo = tri.amin(1).nan_to_num(0).ceil()
    hi = tri.amax(1).nan_to_num(-1).floor()
    x0, y0 = lo[:, 0].clamp(0, W), lo[:, 1].clamp(0, H)
    x1, y1 = hi[:, 0].clamp(-1, W - 1), hi[:, 1].clamp(-1, H - 1)
    w = (x1 - x0 + 1).clamp(min=0).long()
    h = (y1 - y0 + 1).clamp(min=0).long()
    ok &= (w > 0) & (h > 0)
    keep = torch.nonzero(ok).squeeze(1)
    inv_z = 1.0 / z
    # Per kept face, the 3 barycentric weights and 1/z as affine functions of the pixel offset (dx, dy) from
    # the face's bounding-box corner: small local coordinates keep float32 exact enough for the inside test.
    lam_coef, iz_coef = _plane_coefficients(tri[keep], area[keep], inv_z[faces[keep]], x0[keep], y0[keep])
    kx0, ky0, kw, kh = x0[keep].long(), y0[keep].long(), w[keep], h[keep]
    zbuf = torch.full((H * W,), _NO_KEY, dtype=torch.int64, device=dev)

    def z_test(f: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> None:
        """Candidates inside their face (kept-face index f, offsets dx, dy) into the z-buffer."""
        c = iz_coef[f]
        depth = 1.0 / (c[:, 0] * dx + c[:, 1] * dy + c[:, 2])
        key = (depth.view(torch.int32).to(torch.int64) << 32) | keep[f]
        pixel = (ky0[f] + dy.to(torch.int64)) * W + kx0[f] + dx.to(torch.int64)
        zbuf.scatter_reduce_(0, pixel, key, reduce="amin")

    # Small faces (nearly all of a body mesh's) by size class: a dense S x S stencil per face, no gathers.
    size = torch.maximum(kw, kh)
    done = torch.zeros(len(keep), dtype=torch.bool, device=dev)
    for S in _STENCILS:
        sel = torch.nonzero(~done & (size <= S)).squeeze(1)
        done[sel] = True
        for part in torch.split(sel, max(1, CANDIDATE_BUDGET // (S * S))):
            grid = torch.arange(S, device=dev, dtype=torch.float32)
            dx, dy = grid[None, None, :], grid[None, :, None]  # [1, 1, S], [1, S, 1]
            c = lam_coef[part][:, :, :, None, None]  # [n, 3 (dx, dy, 1), 3 (lambda), 1, 1]
            lam = c[:, 0] * dx + c[:, 1] * dy + c[:, 2]  # [n, 3, S, S]
            inside = (lam >= 0).all(1) & (dx[0] < kw[part, None, None]) & (dy[0] < kh[part, None, None])
            i, yy, xx = torch.nonzero(inside, as_tuple=True)
            z_test(part[i], xx.to(torch.float32), yy.to(torch.float32))
    # Larger faces: their bounding boxes in bands of rows, a (face, pixel) candidate each, in budgeted chunks.
    big = torch.nonzero(~done).squeeze(1)
    if len(big):
        rows = (CANDIDATE_BUDGET // kw[big]).clamp(min=1)
        bands = (kh[big] + rows - 1) // rows
        unit_face = big.repeat_interleave(bands)
        band = torch.arange(len(unit_face), device=dev) - (torch.cumsum(bands, 0) - bands).repeat_interleave(bands)
        unit_rows = rows.repeat_interleave(bands)
        unit_dy0 = band * unit_rows
        unit_w = kw[unit_face]
        sizes = unit_w * torch.minimum(unit_rows, kh[unit_face] - unit_dy0)
        ends = torch.cumsum(sizes, 0)
        start = 0
        while start < len(unit_face):
            base = int(ends[start - 1]) if start else 0
            stop = max(int(torch.searchsorted(ends, base + CANDIDATE_BUDGET, right=True)), start + 1)
            n = sizes[start:stop]
            f = unit_face[start:stop].repeat_interleave(n)
            k = torch.arange(int(n.sum()), device=dev) - (torch.cumsum(n, 0) - n).repeat_interleave(n)
            uw = unit_w[start:stop].repeat_interleave(n)
            dy = torch.div(k, uw, rounding_mode="floor")
            dx = (k - dy * uw).to(torch.float32)
            dy = (dy + unit_dy0[start:stop].repeat_interleave(n)).to(torch.float32)
            c = lam_coef[f]
            inside = torch.nonzero(((c[:, 0] * dx[:, None] + c[:, 1] * dy[:, None] + c[:, 2]) >= 0).all(1)).squeeze(1)
            z_test(f[inside], dx[inside], dy[inside])
            start = stop
    return _resolve(zbuf, (H, W), keep, lam_coef, iz_coef, inv_z[faces[keep]].to(torch.float32), kx0, ky0)


_STENCILS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
"""Bounding-box sizes (pixels) of the dense per-face stencils; larger faces take the general path."""


def _resolve(zbuf: torch.Tensor, image_size: tuple[int, int], keep: torch.Tensor, lam_coef: torch.Tensor,
             iz_coef: torch.Tensor, corner_iz: torch.Tensor, kx0: torch.Tensor, ky0: torch.Tensor) -> Raster:
    """The :class:`Raster` of a filled z-buffer: face ids unpacked, barycentrics and depth of the winners
    (``corner_iz`` [F', 3]: 1/z of each kept face's corners)."""
    H, W = image_size
    dev = zbuf.device
    hit = zbuf != _NO_KEY
    face = torch.where(hit, zbuf & 0xFFFFFFFF, -1)
    pix = torch.nonzero(hit).squeeze(1)
    bary = torch.zeros(H * W, 3, dtype=torch.float32, device=dev)
    depth = torch.zeros(H * W, dtype=torch.float32, device=dev)
    if len(pix):
        # kept-face index of each winner: keep is sorted, so searchsorted inverts it
        f = torch.searchsorted(keep, face[pix])
        dx = (pix % W - kx0[f]).to(torch.float32)
        dy = (torch.div(pix, W, rounding_mode="floor") - ky0[f]).to(torch.float32)
        c = lam_coef[f]
        lam = (c[:, 0] * dx[:, None] + c[:, 1] * dy[:, None] + c[:, 2]).clamp(min=0)
        ci = iz_coef[f]
        iz = ci[:, 0] * dx + ci[:, 1] * dy + ci[:, 2]
        persp = lam * corner_iz[f]  # perspective-correct weights: lambda_i / z_i, normalised
        bary[pix] = persp / persp.sum(1, keepdim=True).clamp(min=1e-30)
        depth[pix] = 1.0 / iz
    return Raster(face.view(H, W), depth.view(H, W), bary.view(H, W, 3))


def _plane_coefficients(tri: torch.Tensor, area: torch.Tensor, inv_z: torch.Tensor, x0: torch.Tensor,
                        y0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per face, the screen-space barycentric weights as ``row 0 * dx + row 1 * dy + row 2`` of the offset
    (dx, dy) from pixel (x0, y0): [F, 3 (dx, dy, 1), 3 (lambda)] float32, and 1/z the same way: [F, 3].
    ``tri`` [F, 3, 2] pixels, ``area`` [F] twice the signed area, ``inv_z`` [F, 3] 1/z of the corners."""
    local = tri - torch.stack([x0, y0], 1)[:, None]
    ax, ay = local[:, 0, 0], local[:, 0, 1]
    bx, by = local[:, 1, 0], local[:, 1, 1]
    cx, cy = local[:, 2, 0], local[:, 2, 1]
    # lambda_0 = ((bx - x)(cy - y) - (by - y)(cx - x)) / area, expanded in x and y; likewise for 1, 2
    gx = torch.stack([by - cy, cy - ay, ay - by], 1) / area[:, None]
    gy = torch.stack([cx - bx, ax - cx, bx - ax], 1) / area[:, None]
    g0 = torch.stack([bx * cy - by * cx, cx * ay - cy * ax, ax * by - ay * bx], 1) / area[:, None]
    lam = torch.stack([gx, gy, g0], 1)
    iz = (lam * inv_z[:, None, :]).sum(2)  # 1/z = sum_i lambda_i / z_i, affine in screen space
    return lam.to(torch.float32), iz.to(torch.float32)
