"""mmhuman3d's HumanData ``.npz`` (what ``HumanData.fromfile`` / ``HumanData.load`` read and mmhuman3d's
``HumanImageDataset`` trains on).

Entries written (N samples = people):

* ``image_path`` [N] text: image paths relative to the dataset's image root;
* ``bbox_xywh`` [N, 5]: x, y (top left), width, height in pixels, then the box's score;
* ``keypoints2d`` [N, 190, 3] (x px, y px, confidence) in mmhuman3d's ``human_data`` convention (190 named
  points) with ``keypoints2d_mask`` [190] uint8 (1 where the source layout has the point) and
  ``keypoints2d_convention`` = ``"human_data"``; the dataset converts them to its model's convention with the
  mask. fitlib's ``coco17`` points go where mmhuman3d's own ``coco`` convention puts them (COCO's hips are
  ``left_hip_extra`` / ``right_hip_extra``, not SMPL's hip joints), ``body25`` to the ``*_openpose`` points,
  ``coco17_feet``'s feet to ``left_bigtoe`` etc., ``smpl24`` to SMPL's joints; other layouts are converted to
  ``coco17`` first. Uncompressed (``__keypoints_compressed__`` False).
* ``smpl``: a dict of ``global_orient`` [N, 3], ``body_pose`` [N, 23, 3] (axis-angle, radians), ``betas``
  [N, 10], ``transl`` [N, 3] (metres, camera frame: OpenCV x right, y down, z forward; SMPL's ``transl``
  argument); zeros for people without a fit, with ``has_smpl`` [N] 0 for them (``HumanImageDataset`` reads it).
* ``config`` (text), optional ``meta`` (dict), and HumanData's attributes ``__key_strict__`` (False),
  ``__data_len__`` (N), ``__keypoints_compressed__`` (False).

Pickles: ``np.savez`` stores a dict (``smpl``, ``meta``) as a 0-d object array, which only loads with
``allow_pickle=True`` (HumanData.load does exactly that). That is HumanData's own format. fitlib never
unpickles such files with the standard unpickler: :func:`read_humandata` reads them with fitlib's allow-list
unpickler (numpy arrays and plain values only).

Checked against mmhuman3d's ``mmhuman3d/data/data_structures/human_data.py`` (``load`` / ``dump``,
``SUPPORTED_KEYS``), ``core/conventions/keypoints_mapping/{human_data,coco,openpose}.py`` and
``data/datasets/human_image_dataset.py`` (main branch, 2024).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fitlib.body.layouts import convert_keypoints, get_layout
from fitlib.detection.keypoints import keypoint_boxes
from fitlib.interop._common import (as_array, boxes_xyxy, checked_keypoints, smpl_rows,
                                     text_list, write_npz)
from fitlib.io.safe_load import load_npz, read_regular_file

HUMAN_DATA_POINTS = 190
"""Number of points of mmhuman3d's ``human_data`` keypoint convention."""

MAX_HUMANDATA_BYTES = 4 * 2**30
"""Largest HumanData file :func:`read_humandata` reads (bytes, also the limit on its unpacked entries)."""

# Indices in mmhuman3d's ``human_data`` convention of the points fitlib's layouts name (looked up by name in
# mmhuman3d's HUMAN_DATA list; only the points fitlib writes).
_COCO17_AT = {"nose": 55, "left_eye": 57, "right_eye": 56, "left_ear": 59, "right_ear": 58, "left_shoulder": 16,
              "right_shoulder": 17, "left_elbow": 18, "right_elbow": 19, "left_wrist": 20, "right_wrist": 21,
              "left_hip": 145, "right_hip": 144, "left_knee": 4, "right_knee": 5, "left_ankle": 7,
              "right_ankle": 8}  # COCO's hips are mmhuman3d's "*_hip_extra"
_FEET_AT = {"left_big_toe": 60, "left_small_toe": 61, "left_heel": 62, "right_big_toe": 63, "right_small_toe": 64,
            "right_heel": 65}
_BODY25_AT = 153  # BODY_25's 25 points are human_data 153-177, in BODY_25's order ("nose_openpose", ...)
_SMPL24_AT = tuple(range(22)) + (188, 189)  # SMPL joints 0-21, then "left_hand", "right_hand"


def human_data_index(layout: str) -> np.ndarray:
    """For each point of ``layout`` (``coco17``, ``coco17_feet``, ``body25``, ``smpl24``), its index in the
    ``human_data`` convention ([J] int64)."""
    lay = get_layout(layout)
    if lay.name == "body25":
        return np.arange(_BODY25_AT, _BODY25_AT + 25)
    if lay.name == "smpl24":
        return np.array(_SMPL24_AT)
    table = {**_COCO17_AT, **_FEET_AT}
    if lay.name in ("coco17", "coco17_feet"):
        return np.array([table[n] for n in lay.names])
    raise ValueError(f"no human_data mapping for layout {lay.name!r}")


def to_human_data(keypoints: Any, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N, J, 3] in a fitlib layout as ``human_data`` keypoints [N, 190, 3] and the mask [190] uint8.

    Points the layout lacks are (0, 0, 0) with mask 0; a point with confidence 0 is written (0, 0, 0). Layouts
    other than ``coco17``, ``coco17_feet``, ``body25``, ``smpl24`` are converted to ``coco17`` by point name.
    """
    lay = get_layout(layout)
    kps = np.asarray(keypoints, np.float64)
    if lay.name not in ("coco17", "coco17_feet", "body25", "smpl24"):
        kps, lay = convert_keypoints(kps, lay, "coco17"), get_layout("coco17")
    idx = human_data_index(lay.name)
    out = np.zeros((len(kps), HUMAN_DATA_POINTS, 3))
    conf = kps[..., 2]
    out[:, idx] = np.where((conf > 0)[..., None], kps, 0.0)
    mask = np.zeros(HUMAN_DATA_POINTS, np.uint8)
    mask[idx] = 1
    return out, mask


def write_humandata(path: str | os.PathLike, *, image_path: Sequence[str], pose: Any, betas: Any,
                    keypoints: Any, layout: str, transl: Any = None, boxes: Any = None, box_scores: Any = None,
                    has_smpl: Any = None, config: str = "fitlib", meta: dict | None = None) -> Path:
    """Write N samples as a HumanData ``.npz``, atomically (see the module doc for every entry).

    Args:
        path: the ``.npz`` to write (its folder must exist).
        image_path: [N] image paths relative to the dataset's image root.
        pose: [N, 72] axis-angle (radians), joint 0 the global orientation (camera frame).
        betas: [N, 10] shape coefficients.
        keypoints: [N, J, 3] x px, y px, confidence in ``layout``.
        layout: a fitlib keypoint layout name.
        transl: [N, 3] SMPL translation (metres, camera frame), or None (not written).
        boxes: [N, 4] person boxes x1, y1, x2, y2 (pixels); default: the keypoints' extent (confidence > 0).
        box_scores: [N] person scores in [0, 1] (``bbox_xywh``'s fifth column); default 1.
        has_smpl: [N] booleans; default: every row whose pose and betas are finite. Rows without are written
            as zeros.
        config: HumanData's ``config`` text (a dataset tag).
        meta: HumanData's ``meta`` dict (e.g. ``{"body_model": "open"}``), JSON-like values only.
    Returns:
        The path written.
    Raises:
        ValueError naming the argument: wrong shapes or lengths, non-finite parameters in rows with
        ``has_smpl``, non-finite x, y of points with confidence > 0, confidences outside [0, 1], bad boxes.
    """
    names = text_list("image_path", image_path)
    n = len(names)
    J = len(get_layout(layout))
    pose_a, betas_a, has = smpl_rows(pose, betas, has_smpl, n)
    transl_a = None if transl is None else as_array("transl", transl, (n, 3), allow_nan_rows=~has)
    kps = checked_keypoints(keypoints, n, J)
    box = keypoint_boxes(kps) if boxes is None else boxes_xyxy("boxes", boxes, n)
    scores = np.ones(n) if box_scores is None else as_array("box_scores", box_scores, (n,))
    if np.any((scores < 0) | (scores > 1)):
        raise ValueError("box_scores must lie in [0, 1]")
    if not isinstance(config, str):
        raise ValueError(f"config must be text, got {type(config).__name__}")
    kp190, mask = to_human_data(kps, layout)
    zero = lambda a: np.where(has[:, None], a, 0.0)  # noqa: E731
    smpl = {"global_orient": zero(pose_a[:, :3]), "body_pose": zero(pose_a[:, 3:]).reshape(n, 23, 3),
            "betas": zero(betas_a)}
    if transl_a is not None:
        smpl["transl"] = zero(transl_a)
    arrays: dict[str, Any] = {
        "image_path": np.array(names, dtype=str).reshape(n),
        "bbox_xywh": np.concatenate([box[:, :2], box[:, 2:] - box[:, :2], scores[:, None]], axis=1),
        "keypoints2d": kp190, "keypoints2d_mask": mask, "keypoints2d_convention": np.array("human_data"),
        "smpl": _object(smpl), "has_smpl": has.astype(np.int64), "config": np.array(config),
        "__key_strict__": np.array(False), "__data_len__": np.array(n), "__keypoints_compressed__": np.array(False),
    }
    if meta is not None:
        if not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
        arrays["meta"] = _object(dict(meta))
    return write_npz(path, arrays)


def _object(value: dict) -> np.ndarray:
    """A 0-d object array holding ``value``, as ``np.savez`` stores a dict (pickled)."""
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def read_humandata(path: str | os.PathLike, *, max_bytes: int = MAX_HUMANDATA_BYTES) -> dict[str, Any]:
    """Read a HumanData ``.npz`` without running code from it.

    Numeric and text entries are read as numpy reads them (0-d entries as Python values, like HumanData.load);
    dict entries (``smpl``, ``meta``, ...) through fitlib's allow-list unpickler (:func:`fitlib.io.safe_load.load_pickle`:
    numpy arrays and plain Python values, nothing else). Keypoints are returned as stored (a compressed file's
    ``keypoints2d`` holds only the masked points).

    Returns:
        ``{entry: value}``, HumanData's attributes (``__data_len__`` ...) included.
    Raises:
        FileNotFoundError, or ValueError naming the file and the entry (not an npz, an entry that is too
        large, damaged, or a pickle naming anything beyond numpy arrays).
    """
    raw = read_regular_file(path, max_bytes=max_bytes, what="HumanData file")
    out = load_npz(raw, f"HumanData file {path}", max_bytes=max_bytes, objects=True)
    return {k: v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v for k, v in out.items()}
