"""People followed across video frames: box IoU and keypoint OKS against each track's predicted position,
one Hungarian assignment per frame (``scipy.optimize.linear_sum_assignment``), identities kept through
short gaps.

A track predicts its keypoints and box at a later frame by constant velocity (its observations'
velocity, averaged over frames and damped over a gap), which keeps two people apart when they cross; the
similarity is the better of the one at the predicted and the one at the last seen position for a track
seen in the previous frame (a jittery detection's velocity overshoots), the predicted one after a gap.
A detection joins the track of highest similarity ``iou_weight * IoU + (1 - iou_weight) * OKS`` if that is
at least ``min_similarity``; a detection no track takes starts a new track; a track not seen for more
than ``max_gap`` frames ends (its id is never reused).

Keypoints are ``(x px, y px, confidence)``; boxes ``(x1, y1, x2, y2)`` pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from fitlib.detection.keypoints import box_iou, keypoint_boxes

COCO17_SIGMAS = np.array([0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                          0.107, 0.107, 0.087, 0.087, 0.089, 0.089])
"""COCO's per-keypoint OKS constants (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)."""
DEFAULT_SIGMA = 0.07
"""OKS constant of keypoints of other layouts."""


def oks(a: np.ndarray, b: np.ndarray, area: np.ndarray, sigmas: np.ndarray | None = None,
        min_confidence: float = 0.3) -> np.ndarray:
    """[A, B] object keypoint similarity of people ``a`` [A, J, 3] with ``b`` [B, J, 3], each pair scaled by
    ``area`` [A] (px², e.g. the box areas of ``a``), over the points confident in both; 0 for pairs sharing
    fewer than 2 such points. ``sigmas`` [J] (default COCO's for 17 points, :data:`DEFAULT_SIGMA` else)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    J = a.shape[1]
    if sigmas is None:
        sigmas = COCO17_SIGMAS if J == 17 else np.full(J, DEFAULT_SIGMA)
    k2 = (2 * np.asarray(sigmas, np.float64)) ** 2
    va = (a[..., 2] >= min_confidence) & np.isfinite(a[..., :2]).all(-1)
    vb = (b[..., 2] >= min_confidence) & np.isfinite(b[..., :2]).all(-1)
    both = va[:, None] & vb[None]  # [A, B, J]
    d2 = ((np.nan_to_num(a[:, None, :, :2]) - np.nan_to_num(b[None, :, :, :2])) ** 2).sum(-1)
    s2 = np.maximum(np.asarray(area, np.float64).reshape(-1), 1.0)[:, None, None]
    e = np.exp(-d2 / (2 * s2 * k2))
    n = both.sum(-1)
    return np.where(n >= 2, (e * both).sum(-1) / np.maximum(n, 1), 0.0)


@dataclass
class Track:
    """One followed person: ``id``, the frames (tracker steps) it was seen at, and its last two observations
    (keypoints [J, 3], box [4]) for the constant-velocity prediction."""

    id: int
    frames: list[int] = field(default_factory=list)
    keypoints: np.ndarray | None = None
    box: np.ndarray | None = None
    velocity_kp: np.ndarray | None = None  # [J, 2] px per frame
    velocity_box: np.ndarray | None = None  # [4] px per frame

    @property
    def last(self) -> int:
        return self.frames[-1]

    def predict(self, frame: int, damping: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints [J, 3], box [4]) expected at ``frame``: constant velocity, damped by ``damping`` per
        frame of gap beyond the first."""
        gap = frame - self.last
        if self.velocity_kp is None or gap <= 0:
            return self.keypoints, self.box
        steps = sum(damping ** k for k in range(gap))  # 1 + d + d² ... : slows down through a gap
        kp = self.keypoints.copy()
        kp[:, :2] = kp[:, :2] + steps * self.velocity_kp
        return kp, self.box + steps * self.velocity_box

    def observe(self, frame: int, keypoints: np.ndarray, box: np.ndarray) -> None:
        if self.keypoints is not None and np.isfinite(box).all() and np.isfinite(self.box).all():
            gap = max(frame - self.last, 1)
            v_kp = (np.nan_to_num(keypoints[:, :2]) - np.nan_to_num(self.keypoints[:, :2])) / gap
            ok = (keypoints[:, 2] > 0) & (self.keypoints[:, 2] > 0)
            v_box = (box - self.box) / gap
            centre_v = 0.5 * (v_box[:2] + v_box[2:])
            v_kp[~ok] = centre_v  # points not seen twice move with the box centre
            if self.velocity_kp is not None:  # averaged with the previous estimate: detections jitter
                v_kp, v_box = 0.5 * (v_kp + self.velocity_kp), 0.5 * (v_box + self.velocity_box)
            self.velocity_kp, self.velocity_box = v_kp, v_box
        self.frames.append(frame)
        self.keypoints, self.box = np.asarray(keypoints, np.float64).copy(), np.asarray(box, np.float64).copy()


class Tracker:
    """Assigns track ids to the people of successive frames (see the module doc).

    Args:
        max_gap: a track unseen for more than this many frames (tracker steps) ends; 0 ends it at its
            first missed frame.
        min_similarity: smallest similarity in [0, 1] at which a detection continues a track.
        iou_weight: weight of box IoU in the similarity (the rest is keypoint OKS); 0.3 kept the jumping man
            of the sports2d demo on one track through a garbage detection beside him (0.5 switched).
        min_confidence: keypoints below this confidence are not compared.
    """

    def __init__(self, max_gap: int = 10, min_similarity: float = 0.2, iou_weight: float = 0.3,
                 min_confidence: float = 0.3) -> None:
        if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)) or max_gap < 0:
            raise ValueError(f"max_gap must be a non-negative number of frames, got {max_gap!r}")
        for name, v in (("min_similarity", min_similarity), ("iou_weight", iou_weight),
                        ("min_confidence", min_confidence)):
            if not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
        self.max_gap, self.min_similarity, self.iou_weight = int(max_gap), float(min_similarity), float(iou_weight)
        self.min_confidence = float(min_confidence)
        self.active: dict[int, Track] = {}
        self.ended: dict[int, Track] = {}
        self._next_id = 0
        self._frame = -1

    def similarity(self, frame: int, keypoints: np.ndarray, boxes: np.ndarray) -> tuple[list[int], np.ndarray]:
        """(active track ids, [T, D] similarity of each active track's prediction at ``frame`` with each
        detection)."""
        ids = list(self.active)
        if not ids or not len(keypoints):
            return ids, np.zeros((len(ids), len(keypoints)))
        sims = []
        for preds in ([self.active[i].predict(frame) for i in ids],
                      [(self.active[i].keypoints, self.active[i].box) for i in ids]):
            pkp = np.stack([p[0] for p in preds])
            pbox = np.stack([p[1] for p in preds])
            area = np.nan_to_num(np.clip(pbox[:, 2] - pbox[:, 0], 0, None) * np.clip(pbox[:, 3] - pbox[:, 1], 0, None))
            sims.append(self.iou_weight * box_iou(pbox, boxes) + (1 - self.iou_weight) * oks(
                pkp, keypoints, area, min_confidence=self.min_confidence))
        # seen in the previous frame: the better of the predicted and the last seen position (a noisy detection's
        # velocity can overshoot); after a gap only the prediction (the last position may be where another
        # person now is: two people crossing while one is hidden)
        recent = np.array([frame - self.active[i].last <= 1 for i in ids])[:, None]
        return ids, np.where(recent, np.maximum(*sims), sims[0])

    def update(self, keypoints: np.ndarray, boxes: np.ndarray | None = None, frame: int | None = None) -> np.ndarray:
        """Assign the D people of the next frame to tracks.

        Args:
            keypoints: [D, J, 3] (x px, y px, confidence), one layout for the whole video.
            boxes: [D, 4] person boxes (x1, y1, x2, y2 px); default: around the confident keypoints.
            frame: the frame's step number (increasing; default: the previous one + 1). Gaps count in these.
        Returns:
            [D] int track id of each detection (new ids for new tracks).
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, *(kp.shape[1:] if kp.ndim == 3 else (0, 3)))
        if kp.ndim != 3 or kp.shape[-1] != 3:
            raise ValueError(f"keypoints must be [D, J, 3] (x px, y px, confidence), got shape {kp.shape}")
        frame = self._frame + 1 if frame is None else int(frame)
        if frame <= self._frame:
            raise ValueError(f"frames must come in increasing order: got {frame} after {self._frame}")
        self._frame = frame
        boxes = keypoint_boxes(kp, self.min_confidence, 0.1, np.nan) if boxes is None else \
            np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) != len(kp):
            raise ValueError(f"{len(kp)} people's keypoints but {len(boxes)} boxes")
        for tid in [t for t, tr in self.active.items() if frame - tr.last > self.max_gap + 1]:
            self.ended[tid] = self.active.pop(tid)
        ids, sim = self.similarity(frame, kp, boxes)
        out = np.full(len(kp), -1, dtype=np.int64)
        if ids and len(kp):
            ok = sim >= self.min_similarity
            rows, cols = linear_sum_assignment(np.where(ok, 1.0 - sim, 1e6))
            for r, c in zip(rows, cols):
                if ok[r, c]:
                    out[c] = ids[r]
        for d in range(len(kp)):
            if out[d] < 0:
                out[d] = self._next_id
                self.active[self._next_id] = Track(self._next_id)
                self._next_id += 1
            self.active[int(out[d])].observe(frame, kp[d], boxes[d])
        return out

    def finish(self) -> dict[int, Track]:
        """End every track; returns all tracks (ended and active) by id."""
        self.ended.update(self.active)
        self.active = {}
        return dict(sorted(self.ended.items()))


def track_people(keypoints: list[np.ndarray], boxes: list[np.ndarray | None] | None = None,
                 **settings) -> list[np.ndarray]:
    """Track ids for every frame of a sequence: ``keypoints`` per frame [D_t, J, 3] (and optional boxes
    [D_t, 4]); ``settings`` as for :class:`Tracker`. Returns [D_t] ids per frame."""
    tracker = Tracker(**settings)
    boxes = [None] * len(keypoints) if boxes is None else boxes
    return [tracker.update(k, b) for k, b in zip(keypoints, boxes)]
