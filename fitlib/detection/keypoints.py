"""The people found in one image: :class:`Keypoints`, what every detector backend returns, and the box helpers
they share (boxes around keypoints, IoU).

Conventions: keypoints are ``(x, y, confidence)`` in pixels with pixel centres at integers,
confidence in [0, 1], 0 meaning "not detected" (its x, y are then meaningless).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitlib.body.layouts import get_layout


def keypoint_boxes(keypoints: np.ndarray, min_confidence: float = 0.0, margin: float = 0.0,
                   missing: float = 0.0) -> np.ndarray:
    """Boxes [P, 4] (x1, y1, x2, y2 px) around each person's keypoints [P, J, 3] with a finite position and a
    confidence above ``min_confidence`` (or equal to it, when it is > 0), widened on each side by ``margin`` x
    the box's longer side; ``missing`` (e.g. 0 or NaN) for a person without any such point."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, *np.shape(keypoints)[-2:])
    conf = kp[..., 2]
    use = ((conf >= min_confidence) if min_confidence > 0 else (conf > 0)) & np.isfinite(kp[..., :2]).all(-1)
    out = np.full((len(kp), 4), float(missing))
    for i in range(len(kp)):
        if use[i].any():
            lo, hi = kp[i, use[i], :2].min(0), kp[i, use[i], :2].max(0)
            pad = margin * (hi - lo).max()
            out[i] = [*(lo - pad), *(hi + pad)]
    return out



def stack_world(parts: list[tuple[int, np.ndarray | None]]) -> np.ndarray | None:
    """The world landmarks of several groups of people in one array [P, 33, 3] (m), given per group its number of
    people and its landmarks [n, 33, 3] or None (NaN rows for those); None when no group has any."""
    if all(w is None for _, w in parts):
        return None
    return np.concatenate([np.full((n, 33, 3), np.nan) if w is None else np.asarray(w, np.float64) for n, w in parts])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] intersection over union of boxes ``a`` [A, 4] and ``b`` [B, 4] (x1, y1, x2, y2); 0 with NaN boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return np.where(np.isfinite(iou), iou, 0.0)

@dataclass
class Keypoints:
    """People found in one image.

    Attributes:
        keypoints: ``(P, J, 3)`` float64: x px, y px, confidence in [0, 1] (0: not detected).
        boxes: ``(P, 4)`` float64 person boxes ``(x1, y1, x2, y2)`` in pixels.
        scores: ``(P,)`` float64 person scores in [0, 1].
        layout: keypoint layout name (see :mod:`fitlib.body.layouts`), e.g. ``"coco17"``.
        image_size: ``(height, width)`` of the image in pixels, or ``None`` if unknown.
        world: ``(P, 33, 3)`` float64 BlazePose world landmarks (``mediapipe33`` order, metres, origin between
            the hips, the body as seen along the ray to the person:
            :meth:`fitlib.detection.blazepose.BlazePose.landmarks`), or ``None`` (a detector without them).
    """

    keypoints: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    layout: str = "coco17"
    image_size: tuple[int, int] | None = None
    world: np.ndarray | None = None

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
        if self.world is not None:
            self.world = np.asarray(self.world, np.float64)
            if self.world.shape != (p, 33, 3) or not np.isfinite(self.world).all():
                raise ValueError(f"world landmarks must be finite, shape ({p}, 33, 3), got {self.world.shape}")

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index) -> "Keypoints":
        """The people at ``index`` (an int, slice, index array or boolean mask), as a new Keypoints."""
        index = np.atleast_1d(np.arange(len(self))[index])
        return Keypoints(self.keypoints[index], self.boxes[index], self.scores[index], self.layout, self.image_size,
                         None if self.world is None else self.world[index])
