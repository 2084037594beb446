"""Fit results as the plain per-sample arrays the writers of :mod:`fitlib.interop` take.

One sample is one person of one image. :func:`results_to_arrays` flattens a list of :class:`~fitlib.FitResult`
(one per image); the pseudo-label store's export builds the same :class:`ExportArrays` from its rows, so that
both go through the same writers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fitlib.body.layouts import get_layout
from fitlib.detection.keypoints import keypoint_boxes
from fitlib.interop._common import text_list


@dataclass
class ExportArrays:
    """N samples (people), numpy.

    Attributes:
        image_names: [N] the image each person belongs to (as the caller names it, e.g. a path relative to a
            dataset root).
        person_index: [N] int64, the person's index within its image's result.
        pose: [N, 72] axis-angle (radians), joint 0 the orientation in the camera frame; NaN rows where
            ``has_smpl`` is False.
        betas: [N, 10]; NaN rows where ``has_smpl`` is False.
        transl: [N, 3] SMPL translation in the camera frame (metres); NaN rows where ``has_smpl`` is False.
        keypoints: [N, J, 3] the 2D keypoints fitted (x px, y px, confidence), in ``layout``.
        layout: keypoint layout name.
        boxes: [N, 4] person boxes x1, y1, x2, y2 (pixels).
        box_scores: [N] person (detection) scores in [0, 1].
        has_smpl: [N] bool, the person was fitted.
        K: [N, 3, 3] intrinsics (pixels); image_size: [N, 2] (height, width) px.
        model: the body model the parameters belong to (``"open"``: 13,718 vertices, its own betas; not SMPL's).
    """

    image_names: list[str]
    person_index: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    keypoints: np.ndarray
    layout: str
    boxes: np.ndarray
    box_scores: np.ndarray
    has_smpl: np.ndarray
    K: np.ndarray
    image_size: np.ndarray
    model: str = "open"

    def __len__(self) -> int:
        return len(self.image_names)


def results_to_arrays(results: Sequence[Any], image_names: Sequence[str], *,
                      boxes: Sequence[Any] | None = None, box_scores: Sequence[Any] | None = None) -> ExportArrays:
    """Flatten per-image fit results into per-person arrays.

    Args:
        results: :class:`~fitlib.FitResult` per image (people not fitted are kept with ``has_smpl`` False).
        image_names: the name to record for each image (same length as ``results``).
        boxes: per image, [P, 4] person boxes x1, y1, x2, y2 px; default: the result's ``boxes`` (the detector's
            or the keypoint input's), else the extent of each person's keypoints with confidence > 0 (tighter than
            a detector's box: no head top, no feet soles).
        box_scores: per image, [P] person scores in [0, 1]; default: the result's ``scores``, else 1.
    Returns:
        :class:`ExportArrays`.
    Raises:
        ValueError: lengths that do not match, results of different keypoint layouts or body models.
    """
    names = text_list("image_names", image_names)
    if len(names) != len(results):
        raise ValueError(f"{len(names)} image names for {len(results)} results")
    for what, per_image in (("boxes", boxes), ("box_scores", box_scores)):
        if per_image is not None and len(per_image) != len(results):
            raise ValueError(f"{what} is given for {len(per_image)} images, there are {len(results)} results")
    people = [r for r in results if len(r)]
    layouts = sorted({r.layout for r in people})
    models = sorted({r.model for r in people})
    if len(layouts) > 1:
        raise ValueError(f"the results use different keypoint layouts {layouts}: export them separately")
    if len(models) > 1:
        raise ValueError(f"the results belong to different body models {models}: export them separately")
    layout = layouts[0] if layouts else (results[0].layout if len(results) else "coco17")
    model = models[0] if models else (results[0].model if len(results) else "open")
    J = len(get_layout(layout))
    parts: dict[str, list] = {k: [] for k in ("names", "index", "pose", "betas", "transl", "kps", "boxes", "scores",
                                              "fitted", "K", "size")}
    for i, (r, name) in enumerate(zip(results, names)):
        P = len(r)
        if P == 0:
            continue
        if boxes is not None and boxes[i] is not None:
            b = np.asarray(boxes[i], np.float64)
        else:  # the result's own boxes (the detector's), else the keypoints' extent
            own = np.asarray(getattr(r, "boxes", np.full((P, 4), np.nan)), np.float64)
            b = np.where(np.isfinite(own).all(1, keepdims=True), own, keypoint_boxes(r.keypoints))
        if box_scores is not None and box_scores[i] is not None:
            s = np.asarray(box_scores[i], np.float64)
        else:
            own = np.asarray(getattr(r, "scores", np.full(P, np.nan)), np.float64)
            s = np.where(np.isfinite(own), own, 1.0)
        if b.shape != (P, 4) or s.shape != (P,):
            raise ValueError(f"image {i} ({name}): {P} people but boxes of shape {list(b.shape)} and scores of "
                             f"shape {list(s.shape)}")
        parts["names"] += [name] * P
        parts["index"].append(np.arange(P))
        for key, value in (("pose", r.pose), ("betas", r.betas), ("transl", r.transl), ("kps", r.keypoints),
                           ("boxes", b), ("scores", s), ("fitted", r.fitted)):
            parts[key].append(np.asarray(value))
        parts["K"].append(np.repeat(np.asarray(r.K)[None], P, 0))
        parts["size"].append(np.repeat(np.asarray(r.image_size)[None], P, 0))

    def cat(key: str, shape: tuple, dtype=np.float64) -> np.ndarray:
        return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.zeros((0, *shape), dtype)

    return ExportArrays(parts["names"], cat("index", (), np.int64), cat("pose", (72,)), cat("betas", (10,)),
                        cat("transl", (3,)), cat("kps", (J, 3)), layout, cat("boxes", (4,)), cat("scores", ()),
                        cat("fitted", (), bool), cat("K", (3, 3)), cat("size", (2,), np.int64), model)
