"""Overlay pictures of fits: the shaded meshes over the photo (one z-buffer for everyone), an optional side
view beside it, the input keypoints beside the fitted ones and person ids.

Colours (RGB): meshes light blue (:data:`fitlib.render.shade.LIGHT_BLUE`); the fitted skeleton and its
points in cyan; the input keypoints as orange dots ringed in black (points below ``min_confidence`` are
not drawn), joined to their fitted counterparts by a thin white line (the residual the fit left).
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from fitlib.render.people import rasterize_people
from fitlib.render.rasterize import NEAR
from fitlib.render.shade import LIGHT_BLUE, shade, vertex_normals

MIN_CONFIDENCE = 0.2
"""Input keypoints below this confidence are not drawn (the default config's fitting threshold)."""

FITTED_COLOUR = (0, 230, 255)
INPUT_COLOUR = (255, 140, 0)
RESIDUAL_COLOUR = (255, 255, 255)
ID_COLOURS = ((230, 60, 60), (60, 130, 230), (40, 170, 80), (200, 120, 20), (150, 70, 200), (20, 160, 170))
SIDE_BACKGROUND = (255, 255, 255)


def side_view_vertices(vertices: np.ndarray, K: np.ndarray, image_size: tuple[int, int],
                       angle: float = math.pi / 2, margin: float = 0.9) -> np.ndarray:
    """The people turned by ``angle`` (radians) about the camera's vertical (y) axis through their common
    centre, and framed for the same camera: [P, V, 3] camera-frame vertices (metres).

    The centre is the middle of the bounding box of all finite vertices; it keeps its height and depth,
    moves onto the optical axis, and the group moves back if needed so that it fills at most ``margin`` of
    the image. With ``angle = pi / 2`` the original camera is to the left of the picture (what was near it
    is on the left).

    Args:
        vertices: [P, V, 3] (metres); rows with non-finite values stay non-finite.
        K: [3, 3] intrinsics (pixels).
        image_size: (height, width) in pixels.
    """
    v = np.asarray(vertices, np.float64)
    if v.ndim != 3 or v.shape[2] != 3:
        raise ValueError(f"vertices must be [P, V, 3], got shape {v.shape}")
    finite = np.isfinite(v).all(-1).all(-1)
    if not finite.any():
        return v.copy()
    pts = v[finite].reshape(-1, 3)
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    turned = (pts - centre) @ R.T
    half = np.abs(turned).max(0)
    H, W = image_size
    fit = max(K[0, 0] * half[0] / (margin * W / 2), K[1, 1] * (half[1] + abs(centre[1])) / (margin * H / 2))
    depth = max(float(centre[2]), float(half[2] + fit))
    offset = np.array([0.0, centre[1], depth])
    out = np.full_like(v, np.nan)
    out[finite] = (v[finite] - centre) @ R.T + offset
    return out


def _supersampled_K(K: np.ndarray, s: int) -> np.ndarray:
    """Intrinsics of an image ``s`` times larger whose s x s blocks average to the original pixels
    (pixel centres at whole coordinates)."""
    Ks = np.array(K, np.float64)
    Ks[:2] *= s
    Ks[:2, 2] += (s - 1) / 2
    Ks[2] = (0.0, 0.0, 1.0)
    return Ks


def _window(vertices: np.ndarray, K: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The pixel window (y0, x0, y1, x1), end exclusive, holding the projections of all finite vertices in
    front of the camera, clipped to the image; None when it is empty."""
    v = vertices.reshape(-1, 3)
    v = v[np.isfinite(v).all(1) & (v[:, 2] > NEAR)]
    if not len(v):
        return None
    uv = v[:, :2] / v[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    uv[:, 0] += K[0, 1] * v[:, 1] / v[:, 2]
    H, W = image_size
    x0, y0 = (max(0, int(math.floor(c)) - 1) for c in uv.min(0))
    x1, y1 = (int(math.ceil(c)) + 2 for c in uv.max(0))
    x1, y1 = min(W, x1), min(H, y1)
    return (y0, x0, y1, x1) if x1 > x0 and y1 > y0 else None


def render_layer(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, image_size: tuple[int, int],
                 supersample: int = 2, device: str | torch.device | None = None
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | None:
    """The shaded meshes of P people alone, in the window of the image they cover: (colour [h, w, 3] float32
    RGB in [0, 1] premultiplied by coverage, coverage [h, w] float32 in [0, 1], the window's top-left pixel
    (y0, x0)), or None when nobody is in view. Rasterised ``supersample`` times finer and averaged, so
    silhouettes are antialiased; a dark line is drawn where two people meet.

    Args:
        vertices: [P, V, 3] camera-frame vertices (metres); people with non-finite vertices are skipped.
        faces: [F, 3] shared faces.
        K: [3, 3] intrinsics (pixels).
        image_size: (height, width) in pixels.
        supersample: 1 (none) to 4.
    """
    if not (isinstance(supersample, int) and 1 <= supersample <= 4):
        raise ValueError(f"supersample must be a whole number 1-4, got {supersample!r}")
    K = np.asarray(K, np.float64)
    window = _window(np.asarray(vertices, np.float64), K, image_size)
    if window is None:
        return None
    y0, x0, y1, x1 = window
    h, w, s = y1 - y0, x1 - x0, supersample
    Kw = K.copy()
    Kw[0, 2] -= x0
    Kw[1, 2] -= y0
    Ks = _supersampled_K(Kw, s)
    pr = rasterize_people(vertices, faces, Ks, (h * s, w * s), device)
    normals = vertex_normals(pr.vertices, pr.faces)
    rgb = shade(pr.raster, normals, pr.faces, LIGHT_BLUE)
    person = pr.person
    seam = torch.zeros_like(person, dtype=torch.bool)
    across = (person[:, 1:] != person[:, :-1]) & (person[:, 1:] >= 0) & (person[:, :-1] >= 0)
    down = (person[1:] != person[:-1]) & (person[1:] >= 0) & (person[:-1] >= 0)
    seam[:, 1:] |= across
    seam[:, :-1] |= across
    seam[1:] |= down
    seam[:-1] |= down
    rgb = torch.where(seam[..., None], rgb * 0.45, rgb)
    cover = pr.raster.mask.to(torch.float32)
    if s > 1:
        rgb = torch.nn.functional.avg_pool2d(rgb.permute(2, 0, 1)[None], s)[0].permute(1, 2, 0)
        cover = torch.nn.functional.avg_pool2d(cover[None, None], s)[0, 0]
    return rgb.cpu().numpy(), cover.cpu().numpy(), (y0, x0)


def _blend(canvas: np.ndarray, layer, alpha: float) -> np.ndarray:
    """``canvas`` (uint8 RGB, in place) with a :func:`render_layer` result blended in at opacity ``alpha``."""
    if layer is None:
        return canvas
    rgb, cover, (y0, x0) = layer
    h, w = cover.shape
    region = canvas[y0:y0 + h, x0:x0 + w].astype(np.float32)
    out = region * (1 - alpha * cover[..., None]) + (255.0 * alpha) * rgb
    canvas[y0:y0 + h, x0:x0 + w] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return canvas


def _unit(image_size: tuple[int, int]) -> int:
    """Line width (pixels) for drawings on an image of this size."""
    return max(1, round(max(image_size) / 450))


def _point(p: np.ndarray) -> tuple[int, int]:
    """Pixel (x, y) as OpenCV draws it: rounded, and clipped far outside any image (OpenCV takes 32-bit
    coordinates; a wild keypoint must not overflow)."""
    x, y = np.clip(np.round(np.asarray(p[:2], np.float64)), -1e6, 1e6)
    return int(x), int(y)


def draw_keypoints(canvas: np.ndarray, keypoints: np.ndarray | None, projected: np.ndarray | None,
                   edges: tuple[tuple[int, int], ...], min_confidence: float = MIN_CONFIDENCE) -> None:
    """Draw one person's fitted skeleton (``projected`` [J, 2] pixels, NaN where absent) and input keypoints
    (``keypoints`` [J, 3]: x px, y px, confidence; points below ``min_confidence`` skipped) on ``canvas``
    (H x W x 3 uint8 RGB, in place), with a line from each input point to its fitted one."""
    u = _unit(canvas.shape[:2])
    ok_fit = np.isfinite(projected).all(1) if projected is not None else None
    ok_in = None
    if keypoints is not None:
        ok_in = np.isfinite(keypoints).all(1) & (keypoints[:, 2] >= min_confidence)
    if projected is not None:
        for a, b in edges:
            if ok_fit[a] and ok_fit[b]:
                cv2.line(canvas, _point(projected[a]), _point(projected[b]), FITTED_COLOUR, u, cv2.LINE_AA)
    if keypoints is not None and projected is not None:
        for j in np.flatnonzero(ok_in & ok_fit):
            cv2.line(canvas, _point(keypoints[j]), _point(projected[j]), RESIDUAL_COLOUR, max(1, u // 2), cv2.LINE_AA)
    if projected is not None:
        for j in np.flatnonzero(ok_fit):
            cv2.circle(canvas, _point(projected[j]), u + 1, FITTED_COLOUR, -1, cv2.LINE_AA)
    if keypoints is not None:
        for j in np.flatnonzero(ok_in):
            cv2.circle(canvas, _point(keypoints[j]), 2 * u + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(canvas, _point(keypoints[j]), 2 * u, INPUT_COLOUR, -1, cv2.LINE_AA)


def draw_label(canvas: np.ndarray, text: str, anchor: tuple[float, float], colour: tuple[int, int, int]) -> None:
    """Draw ``text`` white on a filled ``colour`` box centred above ``anchor`` (x, y pixels), kept inside the
    image (in place)."""
    u = _unit(canvas.shape[:2])
    scale = 0.45 * u
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, u)
    pad = 2 * u
    H, W = canvas.shape[:2]
    x0 = int(np.clip(anchor[0] - tw / 2 - pad, 0, max(W - tw - 2 * pad, 0)))
    y1 = int(np.clip(anchor[1] - pad, th + base + 2 * pad, H))
    y0 = y1 - th - base - 2 * pad
    cv2.rectangle(canvas, (x0, y0), (x0 + tw + 2 * pad, y1), colour, -1)
    cv2.putText(canvas, text, (x0 + pad, y1 - pad - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), u,
                cv2.LINE_AA)


def _head_anchor(vertices: np.ndarray, K: np.ndarray) -> tuple[float, float] | None:
    """Where a person's label goes: above the top of the projected mesh (x, y pixels), or None."""
    if not np.isfinite(vertices).all() or (vertices[:, 2] <= 1e-3).any():
        return None
    uv = vertices[:, :2] / vertices[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    top = uv[np.argmin(uv[:, 1])]
    return float(top[0]), float(top[1])


def _keypoint_anchor(keypoints: np.ndarray, min_confidence: float) -> tuple[float, float] | None:
    ok = np.isfinite(keypoints).all(1) & (keypoints[:, 2] >= min_confidence)
    if not ok.any():
        return None
    pts = keypoints[ok, :2]
    return float(np.median(pts[:, 0])), float(pts[:, 1].min())


def compose_overlay(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, *,
                    keypoints: np.ndarray | None = None, projected: np.ndarray | None = None,
                    edges: tuple[tuple[int, int], ...] = (), labels: list[str] | None = None,
                    alpha: float = 0.8, side_view: bool = False, show_keypoints: bool = True,
                    show_ids: bool = True, min_confidence: float = MIN_CONFIDENCE, supersample: int = 2,
                    device: str | torch.device | None = None) -> np.ndarray:
    """The overlay picture of P people fitted in ``image``.

    Args:
        image: [H, W, 3] uint8 RGB.
        vertices: [P, V, 3] camera-frame vertices (metres); a person with non-finite vertices (not fitted)
            gets no mesh (its input keypoints and label are still drawn).
        faces: [F, 3] shared faces.
        K: [3, 3] intrinsics (pixels).
        keypoints: [P, J, 3] input keypoints (x px, y px, confidence) or None.
        projected: [P, J, 2] the fitted keypoints (pixels; NaN where absent) or None.
        edges: skeleton edges of the keypoint layout.
        labels: P texts drawn at each person (default: the person's index), or None for ``str(p)``.
        alpha: mesh opacity over the photo in [0, 1].
        side_view: also render the meshes turned 90 degrees about the vertical axis through the people's
            centre (:func:`side_view_vertices`) on a plain background, beside the photo: the result is
            then [H, 2W, 3].
        show_keypoints: draw the fitted skeleton and the input keypoints.
        show_ids: draw each person's label.
        min_confidence: input keypoints below it are not drawn.
        supersample: antialiasing factor (1-4) of the mesh rendering.

    Returns:
        A new [H, W, 3] (or [H, 2W, 3] with ``side_view``) uint8 RGB array.
    """
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise ValueError(f"image must be an [H, W, 3] uint8 array, got {getattr(image, 'shape', type(image))}")
    if not (isinstance(alpha, (int, float)) and 0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    vertices = np.asarray(vertices, np.float64)
    if vertices.ndim != 3 or vertices.shape[2] != 3:
        raise ValueError(f"vertices must be [P, V, 3], got shape {vertices.shape}")
    P = len(vertices)
    for name, arr, last in (("keypoints", keypoints, 3), ("projected", projected, 2)):
        if arr is not None and (np.ndim(arr) != 3 or len(arr) != P or np.shape(arr)[2] != last):
            raise ValueError(f"{name} must be [{P}, J, {last}], got shape {np.shape(arr)}")
    labels = [str(p) for p in range(P)] if labels is None else list(labels)
    if len(labels) != P:
        raise ValueError(f"{len(labels)} labels for {P} people")
    K = np.asarray(K, np.float64)
    size = image.shape[:2]
    drawn = np.isfinite(vertices).all(-1).all(-1) & (vertices.shape[1] > 0)
    canvas = image.copy()
    if drawn.any():
        _blend(canvas, render_layer(vertices, faces, K, size, supersample, device), float(alpha))
    for p in range(P):
        if show_keypoints:
            draw_keypoints(canvas, None if keypoints is None else np.asarray(keypoints[p], np.float64),
                           None if projected is None or not drawn[p] else np.asarray(projected[p], np.float64),
                           edges, min_confidence)
    if show_ids:
        for p in range(P):
            anchor = _head_anchor(vertices[p], K) if drawn[p] else None
            text = labels[p]
            if anchor is None and keypoints is not None:
                anchor = _keypoint_anchor(np.asarray(keypoints[p], np.float64), min_confidence)
                text = f"{labels[p]} (not fitted)" if not drawn[p] else text
            if anchor is not None:
                draw_label(canvas, text, anchor, ID_COLOURS[p % len(ID_COLOURS)])
    if not side_view:
        return canvas
    side = np.empty_like(image)
    side[:] = SIDE_BACKGROUND
    if drawn.any():
        turned = side_view_vertices(vertices, K, size)
        _blend(side, render_layer(turned, faces, K, size, supersample, device), 1.0)
        if show_ids:
            for p in np.flatnonzero(drawn):
                anchor = _head_anchor(turned[p], K)
                if anchor is not None:
                    draw_label(side, labels[p], anchor, ID_COLOURS[p % len(ID_COLOURS)])
    u = _unit(size)
    cv2.putText(side, "side view", (4 * u, 12 * u), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * u, (90, 90, 90), u, cv2.LINE_AA)
    return np.concatenate([canvas, side], axis=1)
