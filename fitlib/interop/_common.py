"""Helpers shared by the readers and writers of :mod:`fitlib.interop` (not public API)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fitlib.io.atomic import atomic_write
from fitlib.io.safe_load import read_regular_file


def _refuse_constant(text: str) -> float:
    raise ValueError(f"it holds {text!r}, which is not a JSON number")


def parse_json(raw: bytes, source: str) -> Any:
    """Strict JSON from bytes: UTF-8, no NaN / Infinity literals; ValueError naming ``source`` otherwise."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source} is not UTF-8 text ({exc})") from None
    except RecursionError:
        raise ValueError(f"{source} is not readable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError is a ValueError, and so is _refuse_constant's
        raise ValueError(f"{source} is not readable JSON ({exc})") from None


def read_json(path: str | os.PathLike, *, max_bytes: int, what: str) -> Any:
    """Parsed strict JSON of a regular file of at most ``max_bytes`` (FileNotFoundError, or ValueError
    naming the file: not a regular file, too large, not UTF-8, not JSON)."""
    raw = read_regular_file(path, max_bytes=max_bytes, what=what)
    return parse_json(raw, f"{what} {path}")


def is_number(x: Any) -> bool:
    """A JSON number (int or float, not a boolean)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_whole(x: Any) -> bool:
    """A JSON whole number (int, or a float with no fraction), not a boolean."""
    return (isinstance(x, int) and not isinstance(x, bool)) or (isinstance(x, float) and x.is_integer())


def number_list(value: Any, where: str, length: int | None = None) -> np.ndarray:
    """A flat JSON list of finite numbers as float64; ValueError naming ``where`` (file and field) otherwise."""
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of numbers, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ValueError(f"{where} must hold {length} numbers, got {len(value)}")
    if not all(is_number(x) for x in value):
        bad = next(x for x in value if not is_number(x))
        raise ValueError(f"{where} must hold numbers only, found {type(bad).__name__} {bad!r:.40}")
    arr = np.array(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where} holds a non-finite number")
    return arr


def frame_number(name: str) -> int | None:
    """The last run of digits in a file name's stem (``clip_000000000012_keypoints`` -> 12), or None."""
    runs = re.findall(r"\d+", name)
    return int(runs[-1]) if runs else None


# ----------------------------------------------------------------------------------------- writers
def as_array(name: str, value: Any, shape: tuple[int | None, ...], *, allow_nan_rows: np.ndarray | None = None) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (None: any size, which must agree with the other arrays:
    checked by the caller); ValueError naming ``name``. Non-finite values are refused except in the rows
    where ``allow_nan_rows`` [N] is True (people without a fit, written as zeros by the caller)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from None
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(arr.shape)}")
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(1) if arr.ndim else ~np.isfinite(arr)
    if allow_nan_rows is not None:
        bad = bad & ~allow_nan_rows
    if np.any(bad):
        raise ValueError(f"{name} holds NaN or infinite values (row {int(np.flatnonzero(bad)[0])})")
    return arr


def check_count(n: int, **arrays: Any) -> None:
    """Every given array (not None) has ``n`` rows (ValueError naming the first that does not)."""
    for name, a in arrays.items():
        if a is not None and len(a) != n:
            raise ValueError(f"{name} has {len(a)} rows for {n} samples")


def text_list(name: str, value: Sequence[Any]) -> list[str]:
    """A sequence of text (``str`` or paths) as a list of ``str``; ValueError naming ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{name} must be a list of text (one per sample), got {type(value).__name__}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if not isinstance(v, str):
            raise ValueError(f"{name}[{i}] must be text, got {type(v).__name__}")
        out.append(v)
    return out


def bool_vector(name: str, value: Any, n: int, default: np.ndarray) -> np.ndarray:
    """[n] booleans (0/1 or True/False), or ``default`` when ``value`` is None."""
    if value is None:
        return np.asarray(default, dtype=bool).copy()
    arr = np.asarray(value)
    if arr.shape != (n,) or not (arr.dtype == bool or (arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all())):
        raise ValueError(f"{name} must be {n} booleans (0/1), got {arr.dtype} of shape {list(arr.shape)}")
    return arr.astype(bool)


def boxes_xyxy(name: str, value: Any, n: int) -> np.ndarray:
    """[n, 4] finite boxes (x1, y1, x2, y2 px) with x2 >= x1, y2 >= y1."""
    boxes = as_array(name, value, (n, 4))
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError(f"{name} must be x1, y1, x2, y2 pixels with x2 >= x1 and y2 >= y1")
    return boxes

def checked_keypoints(keypoints: Any, n: int, J: int) -> np.ndarray:
    """Keypoints [n, J, 3] checked (confidences in [0, 1], finite x, y where the confidence is above 0), with
    x, y set to 0 where the confidence is 0."""
    kps = as_array("keypoints", keypoints, (n, J, 3), allow_nan_rows=np.ones(n, bool))
    conf = kps[..., 2]
    if not np.all(np.isfinite(conf)) or np.any((conf < 0) | (conf > 1)):
        raise ValueError("keypoints confidences (third column) must be finite and in [0, 1]")
    if not np.all(np.isfinite(kps[..., :2])[conf > 0]):
        raise ValueError("keypoints x, y must be finite where the confidence is above 0")
    return np.where((conf > 0)[..., None], kps, np.concatenate([np.zeros_like(kps[..., :2]), conf[..., None]], -1))


def write_npz(path: str | os.PathLike, arrays: dict[str, Any], *, compressed: bool = True) -> Path:
    """Write ``arrays`` as an ``.npz`` atomically (:func:`fitlib.io.atomic_write`); the parent folder must exist."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"the output must be an .npz file, got {path.name!r}")
    with atomic_write(path) as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON data (no NaN) atomically."""
    path = Path(path)
    text = json.dumps(data, allow_nan=False)
    with atomic_write(path) as fh:
        fh.write(text.encode())
    return path


def smpl_rows(pose: Any, betas: Any, has_smpl: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pose`` [n, 72], ``betas`` [n, 10] as float arrays (NaN rows allowed) and ``has_smpl`` [n] bool (default:
    the rows whose pose and betas are finite). ValueError for a row marked ``has_smpl`` that is not finite."""
    pose_a = as_array("pose", pose, (n, 72), allow_nan_rows=np.ones(n, bool))
    betas_a = as_array("betas", betas, (n, 10), allow_nan_rows=np.ones(n, bool))
    finite = np.isfinite(pose_a).all(1) & np.isfinite(betas_a).all(1)
    has = bool_vector("has_smpl", has_smpl, n, finite)
    if np.any(has & ~finite):
        raise ValueError(f"pose / betas of row {int(np.flatnonzero(has & ~finite)[0])} are not finite but has_smpl is set")
    return pose_a, betas_a, has
