"""2D body keypoints from images: ``fitlib.detect(image) -> Keypoints``.

Backends:

* ``"default"``: the bundled multi-person BlazePose detector (:mod:`fitlib.blazepose`), no extra
  install, no download. Its 33 landmarks are mapped to COCO-17 (or COCO-17 + feet).
* ``"mmpose"``: a local mmpose config + checkpoint (installed by ``scripts/install_mmpose.sh``), run top-down
  on person boxes (given, or found by the default detector), see :mod:`fitlib.mmpose_io`.

Conventions: images are RGB (see :func:`fitlib.image_io.load_image`); keypoints are
``(x, y, confidence)`` in pixels with pixel centres at integers, confidence in [0, 1], 0 meaning
"not detected" (its x, y are then meaningless).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .image_io import ImageLike, load_image
from .layouts import get_layout

MEDIAPIPE33_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# BlazePose has heels and a "foot index" (tip of the foot), no small toe (-1: confidence 0).
MEDIAPIPE33_TO_FEET: tuple[int, ...] = (31, -1, 29, 32, -1, 30)


@dataclass
class Keypoints:
    """People found in one image.

    Attributes:
        keypoints: ``(P, J, 3)`` float64: x px, y px, confidence in [0, 1] (0: not detected).
        boxes: ``(P, 4)`` float64 person boxes ``(x1, y1, x2, y2)`` in pixels.
        scores: ``(P,)`` float64 person scores in [0, 1].
        layout: keypoint layout name (see :mod:`fitlib.layouts`), e.g. ``"coco17"``.
        image_size: ``(height, width)`` of the image in pixels, or ``None`` if unknown.
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    layout: str = "coco17"
    image_size: tuple[int, int] | None = None

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, np.float64)
        if self.keypoints.ndim != 3 or self.keypoints.shape[2] != 3:
            raise ValueError(f"keypoints must have shape (P, J, 3), got {self.keypoints.shape}")
        p, j = self.keypoints.shape[:2]
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4) if np.size(self.boxes) else np.zeros((0, 4))
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        if self.boxes.shape != (p, 4) or self.scores.shape != (p,):
            raise ValueError(f"{p} people but boxes {self.boxes.shape} and scores {self.scores.shape}")
        n = len(get_layout(self.layout))
        if n != j:
            raise ValueError(f"layout {self.layout!r} has {n} keypoints, got {j}")
        conf = self.keypoints[..., 2]
        if not np.all(np.isfinite(self.keypoints[..., :2])[conf > 0]) or np.any((conf < 0) | (conf > 1)):
            raise ValueError("keypoint confidences must be in [0, 1] and detected keypoints finite")
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index) -> "Keypoints":
        """The people at ``index`` (an int, slice, index array or boolean mask), as a new Keypoints."""
        index = np.atleast_1d(np.arange(len(self))[index])
        return Keypoints(self.keypoints[index], self.boxes[index], self.scores[index], self.layout, self.image_size)


def detect(image: ImageLike, backend: str = "default", *, layout: str = "coco17", max_side: int = 2048,
           **kwargs) -> Keypoints:
    """Find every person in an image and their 2D keypoints.

    Args:
        image: a path, or a uint8 array ``(H, W)`` grayscale, ``(H, W, 3)`` **RGB** or
            ``(H, W, 4)`` RGBA (see :func:`fitlib.image_io.load_image`).
        backend: ``"default"`` (bundled BlazePose) or ``"mmpose"``.
        layout: output layout: ``"coco17"``, ``"coco17_feet"`` (COCO-17 + 6 foot points; BlazePose
            has no small toes, their confidence is 0) or, for the default backend, ``"mediapipe33"``.
        max_side: images whose longer side exceeds this many pixels are shrunk (area averaging)
            before detection; the results are mapped back to the original pixels.
        **kwargs: for ``"default"``: ``model`` ("full" or a landmark .tflite path), ``min_detection_score``,
            ``min_presence``, ``nms_iou``, ``levels``, ``num_threads`` (see
            :class:`fitlib.blazepose.BlazePose`). For ``"mmpose"``: ``config``, ``checkpoint``,
            ``bboxes`` (``(N, 4)`` xyxy person boxes; default: found by the default detector),
            ``device`` (see :func:`fitlib.mmpose_io.run_mmpose`).

    Returns:
        :class:`Keypoints`, people sorted by decreasing score; ``len(result) == 0`` if nobody is found.

    Raises:
        ValueError: unreadable, empty or badly shaped image, unknown backend or layout.
    """
    if backend not in ("default", "mmpose"):
        raise ValueError(f"unknown detector backend {backend!r}; choose 'default' or 'mmpose'")
    allowed = ("coco17", "coco17_feet", "mediapipe33") if backend == "default" else ("coco17", "coco17_feet")
    if layout not in allowed:
        raise ValueError(f"backend {backend!r} cannot output layout {layout!r}; choose one of {allowed}")
    if max_side < 64:
        raise ValueError(f"max_side must be at least 64 pixels, got {max_side}")
    img = load_image(image)
    h, w = img.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    small = img if factor == 1.0 else cv2.resize(
        img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    if backend == "default":
        result = _detect_blazepose(small, layout, **kwargs)
    else:
        from .mmpose_io import run_mmpose
        if kwargs.get("bboxes") is not None and factor != 1.0:
            kwargs["bboxes"] = (np.asarray(kwargs["bboxes"], np.float64) + 0.5) * factor - 0.5
        result = run_mmpose(small, layout=layout, **kwargs)
    if factor != 1.0:
        sx, sy = w / small.shape[1], h / small.shape[0]
        result.keypoints[..., 0] = (result.keypoints[..., 0] + 0.5) * sx - 0.5
        result.keypoints[..., 1] = (result.keypoints[..., 1] + 0.5) * sy - 0.5
        result.boxes = (result.boxes + 0.5) * [sx, sy, sx, sy] - 0.5
    result.image_size = (h, w)
    return result


def _detect_blazepose(image: np.ndarray, layout: str, **kwargs) -> Keypoints:
    from .blazepose import BlazePose

    people = BlazePose(**kwargs)(image)
    lm = people["landmarks"]  # (P, 33, 5): x, y, z, visibility, presence
    conf = np.minimum(lm[..., 3], lm[..., 4])  # reliable only if in the frame and not occluded
    kp33 = np.concatenate([lm[..., :2], conf[..., None]], axis=-1)
    boxes = np.array([_person_box(k, image.shape[:2]) for k in kp33]).reshape(-1, 4)
    return Keypoints(mediapipe33_to(kp33, layout), boxes, people["presence"], layout, image.shape[:2])


def mediapipe33_to(kp33: np.ndarray, layout: str) -> np.ndarray:
    """Map ``(..., 33, 3)`` BlazePose keypoints to ``"coco17"``, ``"coco17_feet"`` or ``"mediapipe33"``."""
    if layout == "mediapipe33":
        return kp33.copy()
    index = MEDIAPIPE33_TO_COCO17 + (MEDIAPIPE33_TO_FEET if layout == "coco17_feet" else ())
    out = kp33[..., list(index), :].copy()
    out[..., [i for i, j in enumerate(index) if j < 0], :] = 0.0
    return out


def _person_box(kp: np.ndarray, hw: tuple[int, int], pad: float = 0.1) -> np.ndarray:
    """xyxy box around the confident keypoints (all if none), padded by ``pad`` x its size on
    each side and clipped to the image."""
    pts = kp[kp[:, 2] >= 0.5, :2]
    pts = pts if len(pts) else kp[:, :2]
    lo, hi = pts.min(0), pts.max(0)
    lo, hi = lo - pad * (hi - lo), hi + pad * (hi - lo)
    h, w = hw
    return np.clip(np.concatenate([lo, hi]), -0.5, [w - 0.5, h - 0.5, w - 0.5, h - 0.5])
