"""SPIN's training / evaluation ``.npz`` (``datasets/base_dataset.py`` of SPIN reads it; the preprocessed
dataset files of SPIN-derived projects use the same keys).

Entries (N samples = people), all plain arrays (no pickles):

* ``imgname`` [N] text, the image path relative to the dataset folder;
* ``center`` [N, 2] the person box's centre (pixels) and ``scale`` [N] its size / 200 (SPIN's crop is a
  square of side ``200 * scale`` px around ``center``); from a box, ``scale = expand * max(w, h) / 200`` with
  ``expand`` = 1.2 by default, the factor SPIN's own COCO / MPII preprocessing applies to annotated boxes;
* ``pose`` [N, 72] axis-angle (radians, joint 0 the global orientation: here the camera frame), ``shape``
  [N, 10] betas, ``has_smpl`` [N] 1.0 / 0.0 (rows without a fit hold zeros);
* ``part`` [N, 24, 3]: x px, y px, confidence in SPIN's 24-point order (``constants.JOINT_NAMES[25:]``:
  right ankle, right knee, right hip, left hip, left knee, left ankle, right wrist, right elbow, right
  shoulder, left shoulder, left elbow, left wrist, neck (LSP), head top (LSP), pelvis (MPII), thorax (MPII),
  spine (H36M), jaw (H36M), head (H36M), nose, left eye, right eye, left ear, right ear);
* ``openpose`` [N, 25, 3]: the same in OpenPose BODY_25's order (``JOINT_NAMES[:25]``).

Points are filled only where fitlib's layout has the same anatomical point (by name): COCO-17's 17 points go to
``part``'s 12 limb points and 5 face points and to ``openpose``'s body, face and (with ``coco17_feet``) feet
points; BODY_25 fills ``openpose`` as it is. The others (LSP neck and head top, MPII pelvis and thorax, the
H36M points; OpenPose's neck and mid-hip from COCO, which are not the shoulders' or hips' midpoints) stay
(0, 0, 0): "not annotated", as SPIN stores missing points. Coordinates are pixels as given (SPIN's COCO
preprocessing stores COCO's pixel coordinates unchanged).

Checked against SPIN's ``constants.py`` (JOINT_NAMES), ``datasets/preprocess/coco.py`` (keys, the 1.2
expansion, ``scale = max(w, h) / 200``) and ``datasets/base_dataset.py`` (the keys it reads), nkolot/SPIN
master. 4D-Humans' own training data is a webdataset, not this npz.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fitlib.body.layouts import SPIN_PART_NAMES, get_layout
from fitlib.detection.keypoints import keypoint_boxes
from fitlib.interop._common import (as_array, boxes_xyxy, check_count, checked_keypoints,
                                     smpl_rows, text_list, write_npz)

BOX_EXPAND = 1.2
"""SPIN's box expansion for annotated boxes (``scaleFactor`` in its COCO / MPII preprocessing)."""


def spin_keypoints(keypoints: Any, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [N, J, 3] of a fitlib layout as SPIN's ``part`` [N, 24, 3] and ``openpose`` [N, 25, 3]: points
    of the same name copied, the others (0, 0, 0); a point with confidence 0 is written (0, 0, 0)."""
    src = get_layout(layout)
    kps = np.asarray(keypoints, np.float64)
    pos = {n: i for i, n in enumerate(src.names)}
    out = []
    for names in (SPIN_PART_NAMES, get_layout("body25").names):
        dst = np.zeros((len(kps), len(names), 3))
        for j, name in enumerate(names):
            if name in pos:
                dst[:, j] = kps[:, pos[name]]
        dst[dst[..., 2] <= 0] = 0.0
        out.append(dst)
    return out[0], out[1]


def write_spin_npz(path: str | os.PathLike, *, imgname: Sequence[str], pose: Any, betas: Any, keypoints: Any,
                   layout: str, boxes: Any = None, center: Any = None, scale: Any = None, has_smpl: Any = None,
                   expand: float = BOX_EXPAND) -> Path:
    """Write N samples as a SPIN ``.npz``, atomically (see the module doc for every entry).

    Args:
        path: the ``.npz`` to write (its folder must exist).
        imgname: [N] image paths relative to the dataset folder.
        pose: [N, 72] axis-angle (radians); betas: [N, 10].
        keypoints: [N, J, 3] x px, y px, confidence in ``layout`` (a fitlib layout name).
        boxes: [N, 4] person boxes x1, y1, x2, y2 (pixels), made into ``center`` and ``scale`` with ``expand``;
            or give ``center`` [N, 2] px and ``scale`` [N] (box size / 200) directly; default: the keypoints'
            extent (confidence > 0) as the box.
        has_smpl: [N] booleans; default: the rows whose pose and betas are finite (the others are written as
            zeros with has_smpl 0).
        expand: box expansion factor (> 0) applied to ``boxes``.
    Returns:
        The path written.
    Raises:
        ValueError naming the argument (shapes, lengths, non-finite values where they are used, both ``boxes``
        and ``center`` / ``scale``, a non-positive scale).
    """
    names = text_list("imgname", imgname)
    n = len(names)
    J = len(get_layout(layout))
    pose_a, betas_a, has = smpl_rows(pose, betas, has_smpl, n)
    kps = checked_keypoints(keypoints, n, J)
    if boxes is not None and (center is not None or scale is not None):
        raise ValueError("give boxes or center and scale, not both")
    if (center is None) != (scale is None):
        raise ValueError("center and scale go together")
    if center is not None:
        center_a = as_array("center", center, (n, 2))
        scale_a = as_array("scale", scale, (n,))
    else:
        if not (isinstance(expand, (int, float)) and np.isfinite(expand) and expand > 0):
            raise ValueError(f"expand must be a positive number, got {expand!r}")
        box = keypoint_boxes(kps) if boxes is None else boxes_xyxy("boxes", boxes, n)
        center_a = (box[:, :2] + box[:, 2:]) / 2
        scale_a = float(expand) * np.max(box[:, 2:] - box[:, :2], axis=1) / 200.0
    if np.any(scale_a[has | (kps[..., 2] > 0).any(1)] <= 0) if n else False:
        raise ValueError("scale must be positive for every person with keypoints or parameters (a box of size 0?)")
    part, openpose = spin_keypoints(kps, layout)
    check_count(n, center=center_a, scale=scale_a)
    arrays = {"imgname": np.array(names, dtype=str).reshape(n), "center": center_a, "scale": scale_a,
              "pose": np.where(has[:, None], pose_a, 0.0), "shape": np.where(has[:, None], betas_a, 0.0),
              "has_smpl": has.astype(np.float64), "part": part, "openpose": openpose}
    return write_npz(path, arrays)
