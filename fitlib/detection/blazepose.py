"""Multi-person BlazePose (MediaPipe Pose) on a TFLite runtime, with fitlib's own pre/post-processing.

Two bundled models (``fitlib/detection/models/``, Apache-2.0, see the NOTICE there):

1. ``pose_detection.tflite``: an SSD person detector on a 224x224 letterboxed
   image. Each detection carries 4 keypoints; keypoint 0 is the mid-hip centre
   and keypoint 1 a point towards the head whose distance encodes the body
   size. Every detection above threshold is kept, so several people are found.
2. ``pose_landmark_full.tflite``: 33 body landmarks (plus 6 auxiliary
   ones) on a 256x256 crop of a rotated square region around one person.

The pipeline: letterbox -> SSD decoding on 2254 fixed-size anchors -> weighted
NMS -> one rotated square ROI per detection (centre = mid-hip, side = 2.5x the
hip-to-scale-point distance, rotated so that the body axis is vertical) ->
landmark model on each ROI -> heatmap refinement -> projection back to the
image -> removal of duplicate people.

Coordinates are image pixels with pixel centres at integers (see
:mod:`fitlib.io.images`). The TFLite interpreter is not thread safe: use one
:class:`BlazePose` per thread.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from fitlib.detection.keypoints import Keypoints, box_iou

_log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "models"

LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
"""The 33 BlazePose landmarks ("mediapipe33" layout), left/right from the person's viewpoint."""

MODELS: tuple[str, ...] = ("full",)
"""Bundled landmark models (``lite``/``heavy`` are not shipped; pass a path to use them)."""

# Facts about the models (MediaPipe's pose_detection / pose_landmark graphs).
_DET_SIZE = 224
_DET_STRIDES = (8, 16, 32, 32, 32)   # SSD layers; 2 fixed-size anchors per cell and layer
_ROI_SCALE = 1.25                    # ROI side = 2 * |kp1 - kp0| * 1.25
_LMK_SIZE = 256
_NUM_LMK = 39                        # 33 landmarks + 6 auxiliary
_HEATMAP_KERNEL = 7
_HEATMAP_MIN_CONF = 0.5


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -100.0, 100.0)))


@functools.lru_cache(maxsize=None)
def ssd_anchors() -> np.ndarray:
    """Anchor centres of the detector, ``(2254, 2)`` (x, y) normalised to [0, 1].

    Consecutive layers with equal strides share one feature map; each cell has
    2 anchors per layer (the anchor size is fixed to 1, so only centres matter).
    """
    centres = []
    i = 0
    while i < len(_DET_STRIDES):
        stride, n = _DET_STRIDES[i], 0
        while i < len(_DET_STRIDES) and _DET_STRIDES[i] == stride:
            n, i = n + 2, i + 1
        size = -(-_DET_SIZE // stride)
        ys, xs = np.meshgrid((np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, n, axis=0))
    return np.concatenate(centres).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _interpreter(path: Path, num_threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise ImportError("fitlib's default detector needs the TFLite runtime: pip install ai-edge-litert") from err
    if not path.is_file():
        raise FileNotFoundError(f"detector model file not found: {path}")
    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    _allocate_quietly(interp)
    return interp


_DELEGATE_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_fd2_lock = threading.Lock()


def _allocate_quietly(interp) -> None:
    """``interp.allocate_tensors()`` without the line the TFLite runtime's C++ logger writes to file
    descriptor 2 when it applies its XNNPACK delegate (it honours no environment variable, and Python's
    ``sys.stderr`` does not see it): fd 2 goes to a temporary file for the call (once per model and process,
    under a lock), and anything else the runtime wrote there is passed on as a logged warning."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a detached process): nothing to keep quiet
        interp.allocate_tensors()
        return
    with _fd2_lock, tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 2)
            interp.allocate_tensors()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip() and line.strip() != _DELEGATE_LINE:
                    _log.warning("TFLite runtime: %s", line)


def _run(interp, x: np.ndarray) -> list[np.ndarray]:
    interp.set_tensor(interp.get_input_details()[0]["index"], x[None].astype(np.float32))
    interp.invoke()
    return [interp.get_tensor(d["index"])[0] for d in interp.get_output_details()]


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, iou: float) -> tuple:
    """Cluster detections by IoU > ``iou`` around the best one; average each cluster weighted by score.

    Args:
        boxes: ``(N, 4)`` xyxy; scores: ``(N,)``; extra: ``(N, D)`` values averaged like the boxes.

    Returns:
        ``(boxes (M, 4), scores (M,), extra (M, D))``, best first; a cluster keeps its best score.
    """
    order = np.argsort(-scores)
    boxes, scores, extra = boxes[order], scores[order], extra[order]
    alive = np.ones(len(scores), bool)
    out_b, out_s, out_e = [], [], []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        members = alive & (box_iou(boxes[i], boxes)[0] > iou)
        members[i] = True
        w = scores[members][:, None]
        out_b.append((boxes[members] * w).sum(0) / w.sum())
        out_e.append((extra[members] * w).sum(0) / w.sum())
        out_s.append(scores[i])
        alive &= ~members
    if not out_s:
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, extra.shape[1]))
    return np.array(out_b), np.array(out_s), np.array(out_e)


def _windows(h: int, w: int, levels: int) -> list[tuple[int, int, int]]:
    """Square detection windows (x0, y0, side): the whole image, then for each further level
    windows of half the previous side overlapping by half."""
    out = [(0, 0, max(h, w))]
    for level in range(1, levels):
        side = int(np.ceil(max(h, w) / 2 ** level))
        starts = lambda n: np.unique(np.linspace(0, max(n - side, 0), max(1, int(np.ceil(2 * (n - side) / side)) + 1)).round().astype(int))  # noqa: E731
        out += [(int(x), int(y), side) for y in starts(h) for x in starts(w)]
    return out


def _pixel_affine(src_to_dst: np.ndarray) -> np.ndarray:
    """Turn a 2x3 affine map between continuous coordinates (pixel i spans [i, i+1)) into one
    between pixel-centre coordinates (pixel i at i), the convention of cv2.warpAffine."""
    m = src_to_dst.astype(np.float64).copy()
    m[:, 2] += m[:, :2].sum(axis=1) * 0.5 - 0.5
    return m


class BlazePose:
    """Multi-person BlazePose detector.

    Args:
        model: landmark model: ``"full"`` (bundled) or the path of another BlazePose landmark
            ``.tflite`` file with the same interface (``pose_landmark_lite`` / ``_heavy`` from the
            npm package ``@mediapipe/pose``).
        min_detection_score: person-detector score threshold in [0, 1].
        min_presence: threshold on the landmark model's "a person is in this ROI" score.
        nms_iou: IoU above which two detections (and, after landmarks, two people) are merged.
        levels: detection windows: 1 = the whole image only (people taller than about 1/4 of the
            image); 2 (default) = also overlapping windows of half size (about 1/8, 7 detector runs
            for a 4:3 image); 3 = also quarter-size windows (slow).
        num_threads: TFLite CPU threads (``None``: the runtime's default).
    """

    def __init__(self, model: str | os.PathLike = "full", min_detection_score: float = 0.5, min_presence: float = 0.5,
                 nms_iou: float = 0.3, levels: int = 2, num_threads: int | None = None):
        path = DATA_DIR / f"pose_landmark_{model}.tflite" if model in MODELS else Path(model)
        if path.suffix != ".tflite":
            raise ValueError(f"BlazePose landmark model must be one of {MODELS} or a .tflite path, got {model!r}")
        for name, v in (("min_detection_score", min_detection_score), ("min_presence", min_presence),
                        ("nms_iou", nms_iou)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        self.model = model
        self.min_detection_score = min_detection_score
        self.min_presence = min_presence
        self.nms_iou = nms_iou
        if levels not in (1, 2, 3):
            raise ValueError(f"levels must be 1, 2 or 3, got {levels}")
        self.levels = levels
        self._det = _interpreter(DATA_DIR / "pose_detection.tflite", num_threads)
        self._lmk = _interpreter(path.resolve(), num_threads)

    # -- stage 1: person detection -------------------------------------------------------------
    def detect_people(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the person detector on an ``(H, W, 3)`` uint8 RGB image.

        The detector sees a 224-pixel image, so it misses people shorter than about a quarter of
        the image; with ``levels=2`` it also runs on overlapping windows of half the image size
        (stride a quarter), and the detections of all windows are merged by weighted NMS.

        Returns:
            ``scores (N,)`` in [0, 1] and ``points (N, 4, 2)``: the 4 detector keypoints in
            continuous image coordinates (pixel i spans [i, i+1)), best detection first.
        """
        h, w = image.shape[:2]
        found = [self._detect_window(image, x0, y0, side) for x0, y0, side in _windows(h, w, self.levels)]
        scores = np.concatenate([f[0] for f in found])
        boxes = np.concatenate([f[1] for f in found])
        points = np.concatenate([f[2] for f in found])
        _, scores, points = weighted_nms(boxes, scores, points.reshape(-1, 8), self.nms_iou)
        return scores, points.reshape(-1, 4, 2)

    def _detect_window(self, image: np.ndarray, x0: int, y0: int, side: int):
        """Detections in the window ``image[y0:y0+side, x0:x0+side]`` (clipped to the image):
        scores ``(N,)``, face boxes ``(N, 4)`` and keypoints ``(N, 4, 2)`` in image coordinates."""
        sub = image[y0:y0 + side, x0:x0 + side]
        h, w = sub.shape[:2]
        s = _DET_SIZE / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        ox, oy = (_DET_SIZE - nw) // 2, (_DET_SIZE - nh) // 2
        canvas = np.zeros((_DET_SIZE, _DET_SIZE, 3), np.uint8)  # letterbox with black borders
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        canvas[oy:oy + nh, ox:ox + nw] = cv2.resize(sub, (nw, nh), interpolation=interp)
        raw_boxes, raw_scores = _run(self._det, canvas.astype(np.float32) / 127.5 - 1.0)
        scores = _sigmoid(raw_scores[:, 0])
        keep = scores >= self.min_detection_score
        raw, scores, anchors = raw_boxes[keep] / _DET_SIZE, scores[keep], ssd_anchors()[keep]
        centre, half = raw[:, 0:2] + anchors, raw[:, 2:4] / 2
        xy = np.concatenate([centre - half, centre + half, raw[:, 4:12] + np.tile(anchors, 4)], axis=1)
        xy = xy.reshape(-1, 6, 2) * _DET_SIZE
        xy = (xy - [ox, oy]) / [nw / w, nh / h] + [x0, y0]  # undo the letterbox and the window
        return scores, xy[:, :2].reshape(-1, 4), xy[:, 2:]

    @staticmethod
    def rois(points: np.ndarray) -> np.ndarray:
        """Rotated square regions ``(N, 4)`` = (cx, cy, side, angle) from detector keypoints ``(N, 4, 2)``.

        The centre is the mid-hip point, the side 2 x 1.25 x the hip-to-scale-point distance and
        the angle (radians) rotates the image so that the hip-to-scale-point direction points up.
        """
        d = points[:, 1] - points[:, 0]
        side = 2.0 * _ROI_SCALE * np.linalg.norm(d, axis=1)
        angle = np.pi / 2 - np.arctan2(-d[:, 1], d[:, 0])
        angle = (angle + np.pi) % (2 * np.pi) - np.pi
        return np.concatenate([points[:, 0], side[:, None], angle[:, None]], axis=1)

    # -- stage 2: landmarks ------------------------------------------------------------------------
    def landmarks(self, image: np.ndarray, roi: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Landmarks of the person in one ROI ``(cx, cy, side, angle)`` (continuous coordinates).

        Returns:
            ``(39, 5)`` array (x px, y px, z (relative depth, ROI-pixel units), visibility, presence),
            x/y in continuous image coordinates, visibility/presence in [0, 1]; the probability that a
            person is present in the ROI; and ``(39, 3)`` world landmarks (m, the model's output
            ``Identity_4``: origin between the hips, x right, y down, z away from the camera), turned from
            the rotated ROI's axes back to the image's (the ROI's roll undone, as MediaPipe's graph does):
            the body as seen along the ray to the person (:func:`fitlib.datasets.synthetic.look_at_person`).
        """
        cx, cy, side, angle = (float(v) for v in roi)
        c, s = np.cos(angle), np.sin(angle)
        k = side / _LMK_SIZE
        # tensor (u, v) -> image: centre + k * R(angle) @ (u - 128, v - 128)
        t2i = np.array([[k * c, -k * s, 0.0], [k * s, k * c, 0.0]])
        t2i[:, 2] = [cx, cy] - t2i[:, :2] @ [_LMK_SIZE / 2, _LMK_SIZE / 2]
        crop = cv2.warpAffine(*_shrink_for_crop(image, t2i, cx, cy, side), (_LMK_SIZE, _LMK_SIZE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out = _run(self._lmk, crop.astype(np.float32) / 255.0)
        raw, flag, heatmap = out[0].reshape(_NUM_LMK, 5), float(out[1].ravel()[0]), out[3]
        uv = _refine_with_heatmap(raw[:, :2] / _LMK_SIZE, heatmap) * _LMK_SIZE
        xy = uv @ t2i[:, :2].T + t2i[:, 2]
        lm = np.concatenate([xy, raw[:, 2:3], _sigmoid(raw[:, 3:5])], axis=1)
        world = out[4].reshape(_NUM_LMK, 3).astype(np.float64)
        world[:, :2] = world[:, :2] @ np.array([[c, s], [-s, c]])  # R(angle) applied to row vectors
        return lm, flag, world

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Detect every person in an ``(H, W, 3)`` uint8 RGB image.

        Returns:
            dict with ``landmarks (P, 33, 5)`` (x px, y px, z, visibility, presence; pixel centres at
            integers), ``world (P, 33, 3)`` (m, see :meth:`landmarks`), ``presence (P,)``,
            ``detection_scores (P,)`` and ``rois (P, 4)``; people sorted
            by presence; of two people whose landmark boxes overlap by IoU > max(nms_iou, 0.5), only
            the more confident is kept (one person found from two detections).
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) == 0:
            raise ValueError(f"BlazePose expects a non-empty (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        det_scores, points = self.detect_people(image)
        rois = self.rois(points)
        lms, worlds, pres, keep = [], [], [], []
        for i, roi in enumerate(rois):
            if roi[2] < 1.0:
                continue
            lm, flag, world = self.landmarks(image, roi)
            if flag >= self.min_presence:
                lms.append(lm[:33])
                worlds.append(world[:33])
                pres.append(flag)
                keep.append(i)
        lms = np.array(lms, np.float64).reshape(-1, 33, 5)
        worlds = np.array(worlds, np.float64).reshape(-1, 33, 3)
        lms[:, :, :2] -= 0.5  # continuous -> pixel-centre coordinates
        pres, det_scores, rois = np.array(pres), det_scores[keep], rois[keep]
        rois[:, :2] -= 0.5
        order = np.argsort(-pres, kind="stable")
        lms, worlds, pres, det_scores, rois = lms[order], worlds[order], pres[order], det_scores[order], rois[order]
        boxes = np.array([_landmark_box(lm) for lm in lms]).reshape(-1, 4)
        unique = []
        for i in range(len(lms)):
            if not unique or box_iou(boxes[i], boxes[unique]).max() <= max(self.nms_iou, 0.5):
                unique.append(i)
        return {"landmarks": lms[unique], "world": worlds[unique], "presence": pres[unique],
                "detection_scores": det_scores[unique], "rois": rois[unique]}


def _shrink_for_crop(image: np.ndarray, t2i: np.ndarray, cx: float, cy: float, side: float):
    """Source image and pixel-centre tensor->source map for the ROI crop. A region much larger than
    the 256-pixel tensor is first cut out and shrunk with area averaging, so that the bilinear warp
    does not alias."""
    k = side / _LMK_SIZE
    h, w = image.shape[:2]
    r = 0.75 * side  # > half-diagonal of the rotated square
    x0, y0 = int(max(0, np.floor(cx - r))), int(max(0, np.floor(cy - r)))
    x1, y1 = int(min(w, np.ceil(cx + r))), int(min(h, np.ceil(cy + r)))
    if k <= 1.5 or x1 - x0 < 2 or y1 - y0 < 2:
        return image, _pixel_affine(t2i)
    nw, nh = max(2, round((x1 - x0) / k)), max(2, round((y1 - y0) / k))
    scale = np.array([nw / (x1 - x0), nh / (y1 - y0)])
    m = t2i * scale[:, None]
    m[:, 2] = (t2i[:, 2] - [x0, y0]) * scale
    return cv2.resize(image[y0:y1, x0:x1], (nw, nh), interpolation=cv2.INTER_AREA), _pixel_affine(m)


def _landmark_box(lm: np.ndarray) -> np.ndarray:
    """xyxy box around the landmarks present in the image (presence >= 0.5; all if none)."""
    pts = lm[lm[:, 4] >= 0.5, :2]
    pts = pts if len(pts) else lm[:, :2]
    return np.concatenate([pts.min(0), pts.max(0)])


def _refine_with_heatmap(uv: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Replace each landmark (normalised ROI coordinates ``(K, 2)``) by the centroid of its heatmap
    channel (sigmoid of ``(64, 64, K)``) in a 7x7 window around it, when the window's peak is
    confident (>= 0.5); otherwise keep the regressed position."""
    hh, hw, _ = heatmap.shape
    out = uv.copy()
    r = (_HEATMAP_KERNEL - 1) // 2
    for k, (u, v) in enumerate(uv):
        col, row = int(np.floor(u * hw)), int(np.floor(v * hh))
        if not (0 <= col < hw and 0 <= row < hh):
            continue
        r0, r1, c0, c1 = max(0, row - r), min(hh, row + r + 1), max(0, col - r), min(hw, col + r + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, k])
        total = conf.sum()
        if conf.max() >= _HEATMAP_MIN_CONF and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            # cell index / size (no half-cell offset): measured on real photos, this agrees with the
            # regressed positions (mean shift -0.5 px at 256 px) where index + 0.5 is biased (+1.5 px)
            out[k] = [(cols * conf).sum() / total / hw, (rows * conf).sum() / total / hh]
    return out


MEDIAPIPE33_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
# BlazePose has heels and a "foot index" (tip of the foot), no small toe (-1: confidence 0).
MEDIAPIPE33_TO_FEET: tuple[int, ...] = (31, -1, 29, 32, -1, 30)


def detect_people(image: np.ndarray, layout: str = "coco17", **kwargs) -> Keypoints:
    """Every person in an ``(H, W, 3)`` uint8 RGB image as :class:`Keypoints` in ``layout``
    (``"coco17"``, ``"coco17_feet"`` or ``"mediapipe33"``); confidence = min(visibility, presence);
    boxes around the confident points; ``world``: the 33 world landmarks (m, :meth:`BlazePose.landmarks`).
    ``kwargs`` go to :class:`BlazePose`."""
    people = BlazePose(**kwargs)(image)
    lm = people["landmarks"]  # (P, 33, 5): x, y, z, visibility, presence
    conf = np.minimum(lm[..., 3], lm[..., 4])  # reliable only if in the frame and not occluded
    kp33 = np.concatenate([lm[..., :2], conf[..., None]], axis=-1)
    boxes = np.array([_person_box(k, image.shape[:2]) for k in kp33]).reshape(-1, 4)
    return Keypoints(mediapipe33_to(kp33, layout), boxes, people["presence"], layout, image.shape[:2],
                     world=people["world"])


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
