"""mmpose results into fitlib: parsing every structure mmpose produces (no mmpose needed; running
a local mmpose model is :mod:`fitlib.detection.mmpose_backend`).

Accepted by :func:`keypoints_from_mmpose`:

* ``MMPoseInferencer`` result dicts: ``{"predictions": [[person, ...] per image], ...}``;
* lists of per-person dicts (``mmpose.structures.split_instances``, the files the inferencer
  writes with ``pred_out_dir``): ``{"keypoints": [[x, y]] * K, "keypoint_scores": [K],
  "bbox": [[x1, y1, x2, y2]] or [x1, y1, x2, y2], "bbox_score": s}``;
* ``PoseDataSample`` objects (or lists of them, e.g. from ``inference_topdown``), or their
  ``pred_instances``: ``keypoints (N, K, 2)``, ``keypoint_scores (N, K)``, ``bboxes (N, 4)``
  xyxy, ``bbox_scores (N,)``;
* the JSON the demo scripts save (``topdown_demo_with_mmdet.py --save-predictions``):
  ``{"meta_info": dataset_meta, "instance_info": [person, ...] or [{"frame_id", "instances"}]}``
  (json_tricks ``__ndarray__`` encodings decoded), or a path to any of these JSON files;
* fitlib's own detections: a :class:`~fitlib.detection.Keypoints`, or the JSON ``fitlib detect --out``
  writes: ``{"layout": name, "keypoints": [P][J][3] (x px, y px, conf), "boxes": [P][4] xyxy,
  "scores": [P]}`` (optionally ``"image_size": [h, w]``), taken as they are (``layout`` must be one
  of fitlib's layouts; ``boxes`` default to the detected points' extent, ``scores`` to 1).

Layouts: the model's ``keypoint_id2name`` (from ``meta_info`` / ``dataset_meta``) when present,
else the keypoint count: 17 = COCO, 133 = COCO-WholeBody, 26 / 136 = Halpe. Their body parts map
to ``"coco17"`` or, when the model has feet, ``"coco17_feet"``.

Scores: mmpose keypoint scores are not probabilities (RTMPose's SimCC score is the smaller of
the x and y peak values of un-normalised 1-D classification outputs, typically about 0-1.2;
heatmap heads give heatmap peak values). fitlib clips them to [0, 1]: monotone, keeps mmpose's
usual thresholds (0.3 for visualisation) meaningful, and saturates only the already-confident
values above 1. Box scores are clipped likewise (1 if absent).
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fitlib.body.layouts import COCO17_NAMES, FEET_NAMES, LAYOUTS, conversion_matrix, convert_keypoints, get_layout
from fitlib.detection.keypoints import Keypoints, keypoint_boxes

# Index layouts by keypoint count, used when no keypoint names are available.
_BY_COUNT: dict[int, tuple[int, ...]] = {
    17: tuple(range(17)),
    133: tuple(range(23)),                        # COCO-WholeBody: body, then feet in fitlib's order
    26: tuple(range(17)) + (20, 22, 24, 21, 23, 25),   # Halpe: big toes, small toes, heels (L, R)
    136: tuple(range(17)) + (20, 22, 24, 21, 23, 25),  # Halpe-136 starts with Halpe-26
}


def keypoints_from_mmpose(obj: Any, *, frame: int | None = None, layout: str | None = None,
                          meta: dict | None = None, image_size: tuple[int, int] | None = None) -> Keypoints:
    """Convert an mmpose result (see the module doc for the accepted structures) to :class:`Keypoints`.

    Args:
        obj: the mmpose result, or a path to a JSON file holding one.
        frame: which image / video frame to take when ``obj`` holds several (required then).
        layout: ``"coco17"`` or ``"coco17_feet"``; default: ``"coco17_feet"`` if the model has
            feet, else ``"coco17"``. For fitlib's own detections: the file's layout by default,
            else any fitlib layout whose points that layout provides (converted with
            :func:`fitlib.convert_keypoints`).
        meta: the model's ``dataset_meta`` (for ``keypoint_id2name``) if ``obj`` does not carry it.
        image_size: ``(height, width)`` to record in the result.

    Returns:
        :class:`Keypoints` with the people in mmpose's order; boxes from mmpose or, if absent, the
        keypoints' extent.

    Raises:
        ValueError: unrecognised structure, a person or field with a missing or badly shaped value
            (the message names it), keypoint names (``keypoint_id2name``) that do not fit the
            keypoint count, a keypoint layout without the COCO body joints, ``"coco17_feet"``
            asked of a model without feet, or an ambiguous frame.
    """
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        try:
            obj = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"cannot read mmpose JSON file {path}: {err}") from err
    obj = _decode_json_tricks(obj)
    if isinstance(obj, Keypoints) or _is_fitlib_detection(obj):
        return _from_fitlib_detection(obj, layout, image_size)
    if isinstance(obj, dict) and "meta_info" in obj:
        meta = meta or obj["meta_info"]
    people, found_meta, size = _instances(obj, frame)
    meta = meta or found_meta
    image_size = image_size or size
    kps, kscores, boxes, bscores = people
    # with nobody there is no keypoint count to check the names against
    index, native = _layout_index(kps.shape[1], meta, check_range=len(kps) > 0)
    layout = layout or native
    if layout not in ("coco17", "coco17_feet"):
        raise ValueError(f"mmpose keypoints can be converted to 'coco17' or 'coco17_feet', not {layout!r}")
    if layout == "coco17_feet" and native != "coco17_feet":
        raise ValueError("layout 'coco17_feet' asked but the mmpose model has no foot keypoints")
    index = index[:17] if layout == "coco17" else index
    if len(kps) == 0:
        kps, kscores = np.zeros((0, max(index) + 1, 2)), np.zeros((0, max(index) + 1))
    conf = np.clip(np.nan_to_num(kscores[:, index], nan=0.0), 0.0, 1.0)
    out = np.concatenate([kps[:, index], conf[..., None]], axis=-1)
    bad = np.flatnonzero(~np.all(np.isfinite(out[..., :2]).all(-1) | (conf == 0), axis=1))
    if bad.size:
        raise ValueError(f"mmpose person {bad[0]}: keypoints with a score above 0 must have finite x, y")
    if boxes is None:
        boxes = keypoint_boxes(out)
    scores = np.ones(len(kps)) if bscores is None else np.clip(bscores, 0.0, 1.0)
    return Keypoints(out, boxes, scores, layout, image_size)


def _is_fitlib_detection(obj: Any) -> bool:
    """The JSON ``fitlib detect --out`` writes (mmpose structures carry no ``"layout"``)."""
    return isinstance(obj, dict) and "layout" in obj and "keypoint_scores" not in obj


def _from_fitlib_detection(obj: Any, layout: str | None, image_size: tuple[int, int] | None) -> Keypoints:
    """fitlib's own detections (a Keypoints or ``fitlib detect --out`` JSON), checked field by field."""
    what = "fitlib detection"
    if isinstance(obj, Keypoints):
        obj = {"layout": obj.layout, "keypoints": obj.keypoints, "boxes": obj.boxes, "scores": obj.scores,
               "image_size": obj.image_size}
    src = obj["layout"]
    if not isinstance(src, str) or src not in LAYOUTS:
        raise ValueError(f"{what}: 'layout' must be one of fitlib's layouts {sorted(LAYOUTS)}, got {src!r}")
    j = len(LAYOUTS[src])
    if "keypoints" not in obj:
        raise ValueError(f"{what}: no 'keypoints' field (expected [P][{j}][3] x px, y px, confidence)")
    kps = _array(obj["keypoints"], f"{what} 'keypoints'")
    if kps.size == 0:
        kps = kps.reshape(0, j, 3)
    if kps.ndim != 3 or kps.shape[1:] != (j, 3):
        raise ValueError(f"{what}: 'keypoints' must be [P][{j}][3] (x px, y px, confidence) for layout "
                         f"{src!r}, got shape {kps.shape}")
    p = len(kps)
    conf = kps[..., 2]
    if not np.all(np.isfinite(conf)) or np.any((conf < 0) | (conf > 1)):
        raise ValueError(f"{what}: 'keypoints' confidences (third column) must be in [0, 1]")
    detected = conf > 0
    if not np.all(np.isfinite(kps[..., :2])[detected]):
        raise ValueError(f"{what}: 'keypoints' x, y must be finite where the confidence is above 0")
    if obj.get("boxes") is None:
        boxes = keypoint_boxes(kps)
    else:
        boxes = _array(obj["boxes"], f"{what} 'boxes'")
        boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
        if boxes.shape != (p, 4) or not np.all(np.isfinite(boxes)):
            raise ValueError(f"{what}: 'boxes' must be [{p}][4] finite xyxy pixels for {p} people, "
                             f"got shape {boxes.shape}")
    if obj.get("scores") is None:
        scores = np.ones(p)
    else:
        scores = _array(obj["scores"], f"{what} 'scores'").reshape(-1)
        if scores.shape != (p,) or not np.all(np.isfinite(scores)) or np.any((scores < 0) | (scores > 1)):
            raise ValueError(f"{what}: 'scores' must be {p} person scores in [0, 1], got {scores.tolist()}")
    if image_size is None and obj.get("image_size") is not None:
        size = _array(obj["image_size"], f"{what} 'image_size'").reshape(-1)
        if size.shape != (2,) or not np.all(np.isfinite(size)) or np.any(size < 1) or np.any(size % 1):
            raise ValueError(f"{what}: 'image_size' must be [height, width] in pixels, got {obj['image_size']!r}")
        image_size = (int(size[0]), int(size[1]))
    layout = layout or src
    if layout != src:
        lacking = [n for n, row in zip(get_layout(layout).names, conversion_matrix(src, layout)) if not row.any()]
        if lacking:
            raise ValueError(f"layout {layout!r} asked but the {what} (layout {src!r}) has no {lacking}")
        kps = convert_keypoints(kps, src, layout)
    return Keypoints(kps, boxes, scores, layout, image_size)


def _array(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array, or a ValueError naming ``what``."""
    try:
        return _np(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not a numeric array: {err}") from None


def _decode_json_tricks(obj: Any) -> Any:
    """Undo json_tricks' numpy encodings ({"__ndarray__": ..., "dtype": ..., "shape": ...})."""
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            data, dtype = obj["__ndarray__"], obj.get("dtype", "float64")
            try:
                if isinstance(data, str):  # compact form: "b64:<base64 of the raw buffer>"
                    arr = np.frombuffer(base64.b64decode(data.split(":", 1)[-1]), dtype=dtype)
                else:
                    arr = np.asarray(data, dtype=dtype)
                return arr.reshape(obj.get("shape", arr.shape))
            except (TypeError, ValueError) as err:  # binascii.Error is a ValueError
                raise ValueError(f"bad json_tricks array (dtype {dtype!r}, shape {obj.get('shape')}): {err}") from None
        return {k: _decode_json_tricks(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_decode_json_tricks(v) for v in obj]
    return obj


def _pick(frames: list, frame: int | None, what: str):
    if frame is None:
        if len(frames) != 1:
            raise ValueError(f"the mmpose result holds {len(frames)} {what}; pass frame=<index>")
        return frames[0]
    if not -len(frames) <= frame < len(frames):
        raise ValueError(f"frame {frame} out of range: the mmpose result holds {len(frames)} {what}")
    return frames[frame]


def _is_person(d: Any) -> bool:
    return isinstance(d, dict) and "keypoints" in d


def _instances(obj: Any, frame: int | None):
    """Return ((keypoints (N,K,2), scores (N,K), boxes (N,4) or None, box scores (N,) or None),
    dataset_meta or None, image size or None) for one image."""
    meta, size = None, None
    if hasattr(obj, "pred_instances"):  # PoseDataSample
        meta = getattr(obj, "metainfo", {}) or {}
        size = meta.get("ori_shape")
        meta = meta if "keypoint_id2name" in meta else None
        obj = obj.pred_instances
    elif isinstance(obj, (list, tuple)) and obj and all(hasattr(o, "pred_instances") for o in obj):
        return _instances(_merge_samples(obj), frame)
    if isinstance(obj, dict) and "predictions" in obj:  # MMPoseInferencer result
        obj = obj["predictions"]
        if isinstance(obj, list) and obj and not _is_person(obj[0]):
            obj = _pick(obj, frame, "images")
    if isinstance(obj, dict) and "instance_info" in obj:  # demo-script JSON
        obj = obj["instance_info"]
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and "instances" in obj[0]:  # video frames
        obj = _pick(obj, frame, "frames")["instances"]
    if isinstance(obj, dict) and "instances" in obj:
        obj = obj["instances"]
    if isinstance(obj, (list, tuple)) and all(_is_person(d) for d in obj):
        return _from_person_dicts(list(obj)), meta, size
    if hasattr(obj, "keypoints") and hasattr(obj, "keypoint_scores") or (
            isinstance(obj, dict) and "keypoints" in obj and "keypoint_scores" in obj):
        return _from_arrays(obj), meta, size
    if isinstance(obj, (list, tuple)) and obj and not any(isinstance(d, dict) for d in obj):
        shapes = sorted({str(np.shape(d)) if _is_rectangular(d) else "ragged" for d in obj})
        raise ValueError(f"per-person keypoint arrays must all have one shape [J, 3] (x, y, confidence) "
                         f"of one layout; got shapes {shapes}")
    raise ValueError(
        "unrecognised mmpose result: expected an MMPoseInferencer result dict, a list of per-person "
        "dicts with 'keypoints' and 'keypoint_scores', a PoseDataSample / pred_instances, a "
        "demo-script JSON with 'instance_info', or fitlib's detection JSON ('layout', 'keypoints', "
        f"'boxes', 'scores'); got {type(obj).__name__}")


def _is_rectangular(x: Any) -> bool:
    try:
        np.asarray(x, np.float64)
        return True
    except (TypeError, ValueError):
        return False


def _merge_samples(samples: list) -> Any:
    """Concatenate the pred_instances of per-box PoseDataSamples (what inference_topdown returns)."""
    fields = {}
    for name in ("keypoints", "keypoint_scores", "bboxes", "bbox_scores"):
        parts = [_np(getattr(s.pred_instances, name)) for s in samples if hasattr(s.pred_instances, name)]
        if len(parts) == len(samples):
            fields[name] = np.concatenate(parts)

    class _Merged:  # noqa: D401 - a minimal PoseDataSample stand-in
        pred_instances = type("I", (), fields)()
        metainfo = getattr(samples[0], "metainfo", {})
    return _Merged()


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float64)


def _from_arrays(inst: Any):
    get = (lambda k: inst.get(k)) if isinstance(inst, dict) else (lambda k: getattr(inst, k, None))
    kps, sc = _array(get("keypoints"), "mmpose 'keypoints'"), _array(get("keypoint_scores"), "mmpose 'keypoint_scores'")
    if kps.ndim == 2:
        kps, sc = kps[None], sc.reshape(1, -1)
    boxes, bscores = get("bboxes"), get("bbox_scores")
    boxes = None if boxes is None else _array(boxes, "mmpose 'bboxes'")
    if boxes is not None and boxes.size % 4 == 0:
        boxes = boxes.reshape(-1, 4)
    bscores = None if bscores is None else _array(bscores, "mmpose 'bbox_scores'").reshape(-1)
    return _check(kps, sc, boxes, bscores)


def _from_person_dicts(people: list[dict]):
    if not people:
        return _check(np.zeros((0, 17, 2)), np.zeros((0, 17)), None, None)
    kps, sc, boxes, bscores = [], [], [], []
    for i, p in enumerate(people):
        who = f"mmpose person {i}"
        if "keypoint_scores" not in p:
            raise ValueError(f"{who} has no 'keypoint_scores' (mmpose per-person dicts need 'keypoints' "
                             "and 'keypoint_scores')")
        k = _array(p["keypoints"], f"{who}: 'keypoints'")
        if k.ndim == 3 and k.shape[0] == 1:  # (1, K, 2), as a single-instance array
            k = k[0]
        if k.ndim != 2 or k.shape[1] < 2:
            raise ValueError(f"{who}: 'keypoints' must be [K][2] (x, y), got shape {k.shape}")
        s = _array(p["keypoint_scores"], f"{who}: 'keypoint_scores'").reshape(-1)
        if s.shape != (len(k),):
            raise ValueError(f"{who}: {len(k)} 'keypoints' but {s.size} 'keypoint_scores'")
        if i and len(k) != len(kps[0]):
            raise ValueError(f"{who} has {len(k)} keypoints but person 0 has {len(kps[0])}: "
                             "all people of one result must come from the same model")
        kps.append(k[:, :2])
        sc.append(s)
        if "bbox" in p:
            b = _array(p["bbox"], f"{who}: 'bbox'").reshape(-1)
            if b.shape != (4,):
                raise ValueError(f"{who}: 'bbox' must be 4 numbers x1, y1, x2, y2, got {b.size}")
            boxes.append(b)
        if "bbox_score" in p:
            b = _array(p["bbox_score"], f"{who}: 'bbox_score'").reshape(-1)
            if b.shape != (1,):
                raise ValueError(f"{who}: 'bbox_score' must be one number, got {b.size}")
            bscores.append(b[0])
    return _check(np.stack(kps), np.stack(sc), np.stack(boxes) if len(boxes) == len(people) else None,
                  np.array(bscores) if len(bscores) == len(people) else None)


def _check(kps, sc, boxes, bscores):
    n = len(kps)
    if kps.ndim != 3 or kps.shape[2] < 2 or sc.shape != kps.shape[:2]:
        raise ValueError(f"mmpose keypoints (N, K, 2) and keypoint_scores (N, K) disagree: {kps.shape} vs {sc.shape}")
    if boxes is not None and boxes.shape != (n, 4):
        raise ValueError(f"mmpose bboxes must be (N, 4) xyxy for {n} people, got {boxes.shape}")
    if bscores is not None and bscores.shape != (n,):
        raise ValueError(f"mmpose bbox_scores must be (N,) for {n} people, got {bscores.shape}")
    return kps[..., :2], sc, boxes, bscores


def _layout_index(k: int, meta: dict | None, check_range: bool = True) -> tuple[tuple[int, ...], str]:
    """Indices of fitlib's COCO-17 (+ feet) joints in a K-keypoint mmpose layout, and the native
    fitlib layout name ("coco17" or "coco17_feet")."""
    id2name = (meta or {}).get("keypoint_id2name")
    if id2name:
        if not isinstance(id2name, dict):
            raise ValueError(f"the mmpose model's keypoint_id2name must map indices to names, got "
                             f"{type(id2name).__name__}")
        try:
            name2id = {str(v): int(i) for i, v in id2name.items()}
        except (TypeError, ValueError):
            raise ValueError("the mmpose model's keypoint_id2name must have integer indices as keys, got "
                             f"{list(id2name)[:5]}...") from None
        missing = [n for n in COCO17_NAMES if n not in name2id]
        if missing:
            raise ValueError(f"the mmpose model's keypoints lack COCO body joints {missing}; "
                             "fitlib needs a body model (COCO, COCO-WholeBody, Halpe...)")
        names = COCO17_NAMES + FEET_NAMES if all(n in name2id for n in FEET_NAMES) else COCO17_NAMES
        if check_range:
            bad = [f"{n}: {name2id[n]}" for n in names if not 0 <= name2id[n] < k]
            if bad:
                shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                raise ValueError(f"the mmpose keypoint_id2name puts keypoints at indices ({shown}) but the data "
                                 f"has {k} keypoints per person (indices 0-{k - 1}): the keypoint names (meta_info / "
                                 "dataset_meta) belong to another model than the keypoints")
        index = tuple(name2id[n] for n in names)
        return index, "coco17_feet" if len(index) > 17 else "coco17"
    if k not in _BY_COUNT:
        raise ValueError(f"cannot tell the layout of {k} mmpose keypoints without the model's "
                         "keypoint_id2name; known counts: 17 (COCO), 133 (COCO-WholeBody), 26/136 (Halpe)")
    index = _BY_COUNT[k]
    return index, "coco17" if len(index) == 17 else "coco17_feet"
