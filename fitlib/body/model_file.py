"""Read SMPL-layout model files (official pickles without chumpy, ``.npz``) and check them.

The official ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` files are Python-2 pickles holding ``chumpy``
arrays and a ``scipy.sparse`` joint regressor. chumpy does not install on current Python/numpy, so
:func:`read_model_file` unpickles with stand-ins for chumpy's classes and keeps only their numeric
value. Model files are untrusted input: pickles go through fitlib's allow-list unpickler
(:func:`fitlib.io.safe_load.load_pickle`: numpy arrays, scipy sparse matrices and chumpy arrays
only; nothing a file names can run), ``.npz`` files are read without unpickling, and the content is
checked against SMPL's layout (:func:`check_model_dict`) before anything uses it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fitlib.body.skeleton import SMPL_PARENTS
from fitlib.io.safe_load import ChumpyStandIn, SparseStandIn, load_npz, load_pickle, read_regular_file

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")

MAX_MODEL_BYTES = 1 << 30
"""Largest model file (and largest unpacked ``.npz``) fitlib reads: 1 GiB (SMPL's are 40-250 MB)."""

MAX_COORDINATE = 10.0
"""Largest magnitude (metres) of a template coordinate, a shape or a pose blend-shape offset: beyond it
the file is not a body in metres (a damaged exponent, a model in millimetres)."""


def _to_plain(key: str, value: Any) -> Any:
    if isinstance(value, ChumpyStandIn):
        return value.to_array(key)
    if isinstance(value, SparseStandIn):
        return np.asarray(value.to_scipy(key).toarray())
    if isinstance(value, dict):
        return {k: _to_plain(f"{key}.{k}", v) for k, v in value.items()}
    return value


def _nest(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """``{"keypoint_regressor/names": a, ...}`` (how an ``.npz`` stores a nested dict) -> nested dicts."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition("/")
        if tail:
            sub = out.setdefault(head, {})
            if not isinstance(sub, dict):
                raise ValueError(f"entry {head!r} is both an array and a group")
            sub[tail] = value
        else:
            if isinstance(out.get(head), dict):
                raise ValueError(f"entry {head!r} is both an array and a group")
            out[head] = value
    return out


def read_model_file(path: str | Path) -> dict:
    """Read an SMPL-layout model file into a dict of numpy arrays.

    Accepts SMPL pickles (with or without chumpy objects; Python 2 or 3) and ``.npz`` files (a
    nested dict such as ``keypoint_regressor`` stored as entries ``keypoint_regressor/names`` ...).

    Raises:
        FileNotFoundError: a missing file (or a folder).
        ValueError: naming the file and the problem: not a regular file, too large, a class outside
            the allow-list, damaged data, or content that breaks SMPL's layout.
    """
    path = Path(path)
    if path.is_dir() or not path.exists():
        raise FileNotFoundError(f"body model file not found: {path}")
    raw = read_regular_file(path, max_bytes=MAX_MODEL_BYTES, what="body model file")
    try:
        if raw[:4] == b"PK\x03\x04" or raw[:4] == b"PK\x05\x06":
            data = _nest(load_npz(raw, str(path), max_bytes=MAX_MODEL_BYTES))
        else:
            data = load_pickle(raw, str(path))
        if not isinstance(data, dict):
            raise ValueError(f"it holds a {type(data).__name__}, not a dict")
        data = {str(k): _to_plain(str(k), v) for k, v in data.items()}
        check_model_dict(data, source=str(path))
    except ValueError as exc:
        message = str(exc)
        for prefix in (f"{path}: ", f"{path} "):  # the readers name the file too: say it once
            if message.startswith(prefix):
                message = message[len(prefix):]
        raise ValueError(f"{path} is not a readable SMPL model file: {message}") from None
    return data


def _array(data: dict, key: str, source: str) -> np.ndarray:
    value = data[key]
    if not isinstance(value, np.ndarray) or value.dtype.hasobject or value.dtype.kind not in "biuf":
        raise ValueError(f"{source}: {key} is not a numeric array (got {type(value).__name__}"
                         f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''})")
    return value


def check_model_dict(data: dict, source: str = "model") -> None:
    """Raise ValueError naming the first entry that breaks SMPL's layout or cannot be a body in metres.

    Checked: the required keys are numeric arrays of SMPL's shapes (V vertices, 24 joints, >= 10 shape
    directions, 207 pose directions); the kinematic tree is SMPL's; float entries are finite and at most
    :data:`MAX_COORDINATE` m; skinning weights are >= 0 and rows of weights and of the joint regressor
    sum to one (translating the mesh translates its joints); faces and the optional keypoint regressor
    index existing vertices.
    """
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{source} lacks SMPL model entries {missing}")
    arrays = {k: _array(data, k, source) for k in REQUIRED_KEYS}
    v = arrays["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] == 0:
        raise ValueError(f"{source}: v_template must be [V, 3], got {v.shape}")
    V = v.shape[0]
    expect = {
        "shapedirs": lambda s: len(s) == 3 and s[:2] == (V, 3) and s[2] >= 10,
        "posedirs": lambda s: (len(s) == 3 and s == (V, 3, 207)) or s == (V * 3, 207),
        "J_regressor": lambda s: s == (24, V),
        "weights": lambda s: s == (V, 24),
        "kintree_table": lambda s: s == (2, 24),
        "f": lambda s: len(s) == 2 and s[1] == 3,
    }
    for key, ok in expect.items():
        shape = tuple(arrays[key].shape)
        if not ok(shape):
            raise ValueError(f"{source}: {key} has shape {shape}, which does not fit an SMPL model "
                             f"with {V} vertices and 24 joints")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        values = arrays[key]
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{source}: {key} contains NaN or infinite values")
        if key in ("v_template", "shapedirs", "posedirs") and values.size and np.abs(values).max() > MAX_COORDINATE:
            raise ValueError(f"{source}: {key} has values beyond {MAX_COORDINATE:g} m "
                             f"({float(np.abs(values).max()):.3g}): not a body in metres")
    kintree = arrays["kintree_table"].astype(np.int64)
    if not (np.array_equal(kintree[1], np.arange(24)) and np.array_equal(kintree[0, 1:], SMPL_PARENTS[1:])):
        raise ValueError(f"{source}: kintree_table is not SMPL's kinematic tree")
    weights = arrays["weights"]
    if weights.min() < -1e-6 or np.abs(weights.sum(1) - 1).max() > 1e-3:
        raise ValueError(f"{source}: weights are not skinning weights (each row >= 0, summing to 1)")
    if np.abs(arrays["J_regressor"].sum(1) - 1).max() > 1e-3:
        raise ValueError(f"{source}: J_regressor rows do not sum to 1 (a joint must move with its mesh)")
    faces = arrays["f"]
    if faces.dtype.kind not in "iu" or (faces.size and (faces.min() < 0 or faces.max() >= V)):
        raise ValueError(f"{source}: faces index vertices outside 0..{V - 1}")
    if data.get("keypoint_regressor") is not None:
        _check_keypoint_regressor(data["keypoint_regressor"], V, source)


def _check_keypoint_regressor(reg: Any, V: int, source: str) -> None:
    """fitlib's own entry: named surface points as weighted vertex sets (``names`` [K], ``vertex_ids`` and
    ``weights`` [K, k])."""
    if not isinstance(reg, dict) or not {"names", "vertex_ids", "weights"} <= set(reg):
        raise ValueError(f"{source}: keypoint_regressor must be a dict of names, vertex_ids and weights")
    names = [n for n in np.asarray(reg["names"]).reshape(-1).tolist()] if isinstance(reg["names"], np.ndarray) \
        else reg["names"]
    ids, weights = reg["vertex_ids"], reg["weights"]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: keypoint_regressor names must be strings")
    if not (isinstance(ids, np.ndarray) and isinstance(weights, np.ndarray) and ids.dtype.kind in "iu"
            and weights.dtype.kind == "f" and ids.ndim == 2 and ids.shape == weights.shape
            and ids.shape[0] == len(names)):
        raise ValueError(f"{source}: keypoint_regressor vertex_ids / weights must be [K, k] integer / float arrays "
                         f"for its {len(names)} names")
    if ids.size and (ids.min() < 0 or ids.max() >= V):
        raise ValueError(f"{source}: keypoint_regressor indexes vertices outside 0..{V - 1}")
    if not np.all(np.isfinite(weights)) or (weights.size and np.abs(weights.sum(1) - 1).max() > 1e-3):
        raise ValueError(f"{source}: keypoint_regressor weights must be finite, each row summing to 1")
