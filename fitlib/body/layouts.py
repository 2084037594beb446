"""Keypoint layouts: named point sets (COCO-17, COCO-17 + feet, BODY_25, OpenPose-18, MediaPipe-33, SMPL-24,
SPIN's 24 ground-truth points, the 19 BlazePose world landmarks fitlib reads in 3D).

A layout is data: point names in order, the edges drawn between them, and the
left/right pairs used for flipping.  Points with the same name in two layouts
are the same anatomical point, which is what :func:`convert_keypoints` uses;
``neck`` and ``mid_hip`` are derived as midpoints where a layout lacks them.
How a body model produces each named point lives with the body model
(:mod:`fitlib.body.model`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fitlib.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

COCO17_NAMES = _COCO17 = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
           "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
           "left_knee", "right_knee", "left_ankle", "right_ankle")
FEET_NAMES = _FEET = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
_BODY25 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
           "left_wrist", "mid_hip", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
           "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear") + _FEET
_OPENPOSE18 = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
               "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
               "right_eye", "left_eye", "right_ear", "left_ear")
"""OpenPose's 18-point COCO model (3DPW's ``poses2d``)."""
_MEDIAPIPE33 = ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
                "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
                "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
                "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
                "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
                "right_heel", "left_foot_index", "right_foot_index")
_SMPL24 = tuple("smpl_" + n for n in SMPL_JOINT_NAMES)
SPIN_PART_NAMES = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                   "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "lsp_neck",
                   "lsp_head_top", "mpii_pelvis", "mpii_thorax", "h36m_spine", "h36m_jaw", "h36m_head", "nose",
                   "left_eye", "right_eye", "left_ear", "right_ear")
"""SPIN's 24 ground-truth points (the ``part`` array of its npz files, ``constants.JOINT_NAMES[25:]``) in order,
named as fitlib names points; the dataset-specific ones are prefixed with their dataset (LSP, MPII, H36M) and are
not the same points as fitlib's own (e.g. ``lsp_neck`` is not BODY_25's ``neck``). Layout ``spin24``; its
``flip_index`` is SPIN's ``J24_FLIP_PERM``."""

_LIMBS = [("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
          ("right_elbow", "right_wrist"), ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
          ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("left_shoulder", "right_shoulder"),
          ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
          ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
          ("left_ankle", "left_heel"), ("left_ankle", "left_big_toe"), ("left_big_toe", "left_small_toe"),
          ("right_ankle", "right_heel"), ("right_ankle", "right_big_toe"), ("right_big_toe", "right_small_toe"),
          ("neck", "nose"), ("neck", "left_shoulder"), ("neck", "right_shoulder"), ("neck", "mid_hip"),
          ("mid_hip", "left_hip"), ("mid_hip", "right_hip"), ("left_wrist", "left_pinky"),
          ("left_wrist", "left_index"), ("left_wrist", "left_thumb"), ("right_wrist", "right_pinky"),
          ("right_wrist", "right_index"), ("right_wrist", "right_thumb"), ("left_ankle", "left_foot_index"),
          ("right_ankle", "right_foot_index"), ("left_heel", "left_foot_index"),
          ("right_heel", "right_foot_index"), ("mouth_left", "mouth_right"),
          ("left_eye_inner", "left_eye"), ("left_eye", "left_eye_outer"), ("left_eye_outer", "left_ear"),
          ("right_eye_inner", "right_eye"), ("right_eye", "right_eye_outer"), ("right_eye_outer", "right_ear"),
          ("nose", "left_eye_inner"), ("nose", "right_eye_inner"), ("nose", "mouth_left"), ("nose", "mouth_right"),
          # SPIN's dataset-specific points (only spin24 has them)
          ("mpii_thorax", "left_shoulder"), ("mpii_thorax", "right_shoulder"), ("mpii_thorax", "lsp_neck"),
          ("lsp_neck", "lsp_head_top"), ("mpii_thorax", "h36m_spine"), ("h36m_spine", "mpii_pelvis"),
          ("mpii_pelvis", "left_hip"), ("mpii_pelvis", "right_hip"), ("lsp_neck", "h36m_jaw"),
          ("h36m_jaw", "h36m_head"), ("h36m_jaw", "nose")]

DERIVED_POINTS: dict[str, tuple[str, ...]] = {
    "neck": ("left_shoulder", "right_shoulder"),
    "mid_hip": ("left_hip", "right_hip"),
}
"""Points defined as the mean of others, when a source lacks them."""


WORLD_POINTS: tuple[str, ...] = (
    "nose", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
    "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index")
"""The ``world19`` layout: the BlazePose world landmarks (``mediapipe33`` names) fitlib reads in 3D (the regressor's
world-landmark branch, the refine's 3D term): the body's points, without the face and hand details a body model
does not define the same way."""
WORLD_HIPS: tuple[int, int] = (WORLD_POINTS.index("left_hip"), WORLD_POINTS.index("right_hip"))
"""The hips' rows in ``world19``: world landmarks are relative to their midpoint."""


def mirror_name(name: str) -> str:
    """The name of a point's mirror image (``"left_knee"`` <-> ``"right_knee"``; a central point keeps its name)."""
    for a, b in (("left", "right"), ("right", "left")):
        if a in name:
            return name.replace(a, b)
    return name


@dataclass(frozen=True)
class KeypointLayout:
    """A named keypoint layout.

    Attributes:
        name: layout name, e.g. ``"coco17"``.
        names: point names in order (length J).
        edges: pairs of point indices to draw as a skeleton.
        flip_index: for each point, the index of its mirror image (itself for central points).
    """

    name: str
    names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    flip_index: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, point: str) -> int:
        """Index of a point by name (ValueError naming the layout if absent)."""
        try:
            return self.names.index(point)
        except ValueError:
            raise ValueError(f"layout {self.name!r} has no point {point!r}") from None

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        """Left/right index pairs (each pair once)."""
        return [(i, j) for i, j in enumerate(self.flip_index) if i < j]


def _make(name: str, names: tuple[str, ...], edges=None, extra_limbs=()) -> KeypointLayout:
    pos = {n: i for i, n in enumerate(names)}
    if edges is None:
        edges = tuple((pos[a], pos[b]) for a, b in (*_LIMBS, *extra_limbs) if a in pos and b in pos)
    flip = tuple(pos.get(mirror_name(n), i) for i, n in enumerate(names))
    return KeypointLayout(name, names, edges, flip)


LAYOUTS: dict[str, KeypointLayout] = {
    layout.name: layout for layout in (
        _make("coco17", _COCO17),
        _make("coco17_feet", _COCO17 + _FEET),
        _make("body25", _BODY25),
        _make("openpose18", _OPENPOSE18),
        _make("mediapipe33", _MEDIAPIPE33),
        _make("world19", WORLD_POINTS, extra_limbs=(("nose", "left_ear"), ("nose", "right_ear"))),  # no eyes
        _make("smpl24", _SMPL24, tuple((p, j) for j, p in enumerate(SMPL_PARENTS) if p >= 0)),
        _make("spin24", SPIN_PART_NAMES),
    )
}
"""Every layout fitlib knows, by name."""
WORLD19_FROM_MEDIAPIPE33: tuple[int, ...] = tuple(_MEDIAPIPE33.index(n) for n in WORLD_POINTS)
"""Rows of BlazePose's 33 landmarks (``mediapipe33``) that make up ``world19``."""


def get_layout(layout: str | KeypointLayout) -> KeypointLayout:
    """Look a layout up by name (a :class:`KeypointLayout` passes through)."""
    if isinstance(layout, KeypointLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown keypoint layout {layout!r}; known: {sorted(LAYOUTS)}") from None


def conversion_matrix(src: str | KeypointLayout, dst: str | KeypointLayout) -> np.ndarray:
    """Linear map [J_dst, J_src] taking ``src`` points to ``dst`` points.

    A row is zero where ``dst`` has a point that ``src`` cannot provide.
    """
    src, dst = get_layout(src), get_layout(dst)
    pos = {n: i for i, n in enumerate(src.names)}
    M = np.zeros((len(dst), len(src)))
    for i, n in enumerate(dst.names):
        if n in pos:
            M[i, pos[n]] = 1.0
        elif n in DERIVED_POINTS and all(p in pos for p in DERIVED_POINTS[n]):
            for p in DERIVED_POINTS[n]:
                M[i, pos[p]] = 1.0 / len(DERIVED_POINTS[n])
    return M


def convert_keypoints(keypoints: np.ndarray, src: str | KeypointLayout, dst: str | KeypointLayout) -> np.ndarray:
    """Convert keypoints [..., J_src, 3] (x px, y px, confidence) to layout ``dst`` [..., J_dst, 3].

    Points ``dst`` has and ``src`` lacks, and points whose sources are missing
    (non-finite x/y or confidence 0), come out as (nan, nan, 0); a derived point
    (e.g. BODY_25's neck) gets the lowest confidence of its sources.
    """
    src_l, dst_l = get_layout(src), get_layout(dst)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim < 2 or keypoints.shape[-2:] != (len(src_l), 3):
        raise ValueError(f"keypoints for layout {src_l.name!r} must have shape [..., {len(src_l)}, 3], "
                         f"got {keypoints.shape}")
    M = conversion_matrix(src_l, dst_l)
    finite = np.isfinite(keypoints).all(-1)
    src_conf = np.where(finite, keypoints[..., 2], 0.0)  # a point without finite x, y is missing
    xy = np.einsum("ds,...sc->...dc", M, np.where(finite[..., None], keypoints[..., :2], 0.0))
    used = M > 0
    conf = np.where(used, src_conf[..., None, :], np.inf).min(-1)
    conf = np.where(used.any(1), conf, 0.0)
    missing = conf <= 0
    xy = np.where(missing[..., None], np.nan, xy)
    conf = np.where(missing, 0.0, conf)
    return np.concatenate([xy, conf[..., None]], axis=-1)
