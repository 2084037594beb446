"""Matching detected people to known ones by their 2D keypoints (Hungarian assignment)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def associate(detections: np.ndarray, references: np.ndarray, max_distance: float = 0.5,
              min_confidence: float = 0.2) -> np.ndarray:
    """Match detected people to reference people (one frame).

    Args:
        detections: [D, J, 3] detected keypoints (x px, y px, confidence).
        references: [P, J, 3] reference keypoints of the same layout (e.g. the dataset's 2D poses).
        max_distance: largest accepted mean distance, as a fraction of the reference's 2D size
            (diagonal of its confident points' box).
        min_confidence: points below this confidence in either set are not compared.
    Returns:
        [P] index of the detection assigned to each reference person, -1 if none.
    """
    P, D = len(references), len(detections)
    out = np.full(P, -1)
    if P == 0 or D == 0:
        return out
    cost = np.full((P, D), np.inf)
    for p in range(P):
        ref = references[p]
        ok_ref = (ref[:, 2] >= min_confidence) & np.isfinite(ref[:, :2]).all(-1)
        if ok_ref.sum() < 2:
            continue
        size = np.linalg.norm(ref[ok_ref, :2].max(0) - ref[ok_ref, :2].min(0))
        for d in range(D):
            ok = ok_ref & (detections[d, :, 2] >= min_confidence)
            if ok.sum() < 2:
                continue
            dist = np.linalg.norm(detections[d, ok, :2] - ref[ok, :2], axis=-1).mean() / max(size, 1.0)
            if dist <= max_distance:
                cost[p, d] = dist
    finite = np.isfinite(cost)
    if not finite.any():
        return out
    rows, cols = linear_sum_assignment(np.where(finite, cost, 1e6))
    for r, c in zip(rows, cols):
        if finite[r, c]:
            out[r] = c
    return out
