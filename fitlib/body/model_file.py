"""Read SMPL-layout model files (official pickles without chumpy, ``.npz``) and check them.

The official ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` files are Python-2 pickles
holding ``chumpy`` arrays and a ``scipy.sparse`` joint regressor.  chumpy does
not install on current Python/numpy, so :func:`read_model_file` unpickles with
stand-ins for chumpy's classes and keeps only their numeric value.
"""
from __future__ import annotations

import io
import pickle
import tokenize
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling; keeps the pickled state."""

    def __init__(self, *args, **kwargs) -> None:
        self.state: dict = {}

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {"state": state}

    def to_array(self, key: str) -> np.ndarray:
        value = self.state.get("x")
        if value is None:
            raise ValueError(f"model entry {key!r} is a chumpy expression without a stored value "
                             "(only plain chumpy arrays can be read without chumpy)")
        return np.asarray(value)


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "chumpy":
            return _ChumpyStandIn
        if module.startswith("scipy.sparse") and hasattr(scipy.sparse, name):
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _to_plain(key: str, value):
    if isinstance(value, _ChumpyStandIn):
        return value.to_array(key)
    if scipy.sparse.issparse(value):
        value.check_format(full_check=True)  # out-of-range indices would make toarray() crash the process
        return np.asarray(value.toarray())
    return value


def read_model_file(path: str | Path) -> dict:
    """Read an SMPL-layout model file into a dict of numpy arrays.

    Accepts SMPL pickles (with or without chumpy objects) and ``.npz`` files.
    Raises FileNotFoundError for a missing file and ValueError naming the
    problem for a corrupt or incomplete one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"body model file not found: {path}")
    raw = path.read_bytes()
    try:
        if zipfile.is_zipfile(io.BytesIO(raw)):
            with np.load(io.BytesIO(raw), allow_pickle=True) as npz:
                data = {k: npz[k] for k in npz.files}
        else:
            data = _ModelUnpickler(io.BytesIO(raw), encoding="latin1").load()
        if not isinstance(data, dict):
            raise ValueError(f"it holds a {type(data).__name__}, not a dict")
        data = {k: _to_plain(k, v) for k, v in data.items()}
    except (pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, AttributeError, ImportError,
            IndexError, TypeError, SyntaxError, tokenize.TokenError) as exc:  # the last two: a damaged npz header
        raise ValueError(f"{path} is not a readable SMPL model file ({type(exc).__name__}: {exc})") from exc
    check_model_dict(data, source=str(path))
    return data


def check_model_dict(data: dict, source: str = "model") -> None:
    """Raise ValueError naming the first key whose shape breaks SMPL's layout."""
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"{source} lacks SMPL model entries {missing}")
    v = np.asarray(data["v_template"])
    if v.ndim != 2 or v.shape[1] != 3:
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
        shape = tuple(np.shape(data[key]))
        if not ok(shape):
            raise ValueError(f"{source}: {key} has shape {shape}, which does not fit an SMPL model "
                             f"with {V} vertices and 24 joints")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        if not np.all(np.isfinite(np.asarray(data[key], dtype=np.float64))):
            raise ValueError(f"{source}: {key} contains NaN or infinite values")
    faces = np.asarray(data["f"])
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise ValueError(f"{source}: faces index vertices outside 0..{V - 1}")
