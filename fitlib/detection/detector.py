"""2D body keypoints from images: ``fitlib.detect(image) -> Keypoints``.

Backends:

* ``"default"``: the bundled multi-person BlazePose detector (:mod:`fitlib.detection.blazepose`), no extra
  install, no download. Its 33 landmarks are mapped to COCO-17 (or COCO-17 + feet).
* ``"mmpose"``: a local mmpose config + checkpoint (installed by ``scripts/install_mmpose.sh``), run top-down
  on person boxes (given, or found by the default detector), see :mod:`fitlib.detection.mmpose_backend`.

Conventions: images are RGB (see :func:`fitlib.io.images.load_image`); keypoints are
``(x, y, confidence)`` in pixels with pixel centres at integers, confidence in [0, 1], 0 meaning
"not detected" (its x, y are then meaningless).
"""
from __future__ import annotations

import cv2
import numpy as np

from fitlib.detection.blazepose import detect_people
from fitlib.detection.keypoints import Keypoints
from fitlib.detection.mmpose_backend import run_mmpose
from fitlib.io.images import ImageLike, load_image

def detect(image: ImageLike, backend: str = "default", *, layout: str = "coco17", max_side: int = 2048,
           **kwargs) -> Keypoints:
    """Find every person in an image and their 2D keypoints.

    Args:
        image: a path, or a uint8 array ``(H, W)`` grayscale, ``(H, W, 3)`` **RGB** or
            ``(H, W, 4)`` RGBA (see :func:`fitlib.io.images.load_image`).
        backend: ``"default"`` (bundled BlazePose) or ``"mmpose"``.
        layout: output layout: ``"coco17"``, ``"coco17_feet"`` (COCO-17 + 6 foot points; BlazePose
            has no small toes, their confidence is 0) or, for the default backend, ``"mediapipe33"``.
        max_side: images whose longer side exceeds this many pixels are shrunk (area averaging)
            before detection; the results are mapped back to the original pixels.
        **kwargs: for ``"default"``: ``model`` ("full" or a landmark .tflite path), ``min_detection_score``,
            ``min_presence``, ``nms_iou``, ``levels``, ``num_threads`` (see
            :class:`fitlib.detection.blazepose.BlazePose`). For ``"mmpose"``: ``config``, ``checkpoint``,
            ``bboxes`` (``(N, 4)`` xyxy person boxes; default: found by the default detector),
            ``device`` (see :func:`fitlib.detection.mmpose_backend.run_mmpose`).

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
        result = detect_people(small, layout, **kwargs)
    else:
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
