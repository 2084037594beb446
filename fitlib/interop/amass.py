"""AMASS-style motion files: one person's SMPL parameter sequence as an ``.npz``.

AMASS (Mahmood et al. 2019) stores a sequence as ``poses`` [T, 72] (SMPL) or [T, 156] (SMPL+H) axis-angle
radians, ``trans`` [T, 3] metres, ``betas`` (one shape for the sequence), ``mocap_framerate`` (frames per
second), ``gender``; newer releases add ``surface_model_type``. fitlib writes those keys with SMPL's 72
pose values and adds ``frame_indices`` / ``timestamps`` (the video frames the rows come from, seconds),
``coordinate_frame`` (fitlib's fits are in the OpenCV camera frame: x right, y down, z forward, not
AMASS's z-up world) and ``body_model`` (``"open"``: the open model's betas are not SMPL's).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fitlib.io.atomic import atomic_write

CAMERA_FRAME = "opencv_camera"
"""``coordinate_frame`` of fits in the camera frame (x right, y down, z forward, metres)."""


def write_amass_npz(path: str | os.PathLike, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray, fps: float,
                    *, gender: str = "neutral", frame_indices: np.ndarray | None = None,
                    timestamps: np.ndarray | None = None, body_model: str = "open",
                    coordinate_frame: str = CAMERA_FRAME, **extra: np.ndarray) -> Path:
    """Write one person's motion as an AMASS-style ``.npz``, atomically (:func:`fitlib.io.atomic_write`).

    Args:
        path: the file (``.npz``).
        poses: [T, 72] axis-angle (radians), joint 0 the global orientation.
        trans: [T, 3] translation (metres, SMPL's ``transl``).
        betas: [10] (or [B]) one shape for the sequence.
        fps: frames per second of the rows (``mocap_framerate``; with ``timestamps`` of irregular rows, their
            nominal rate).
        gender: ``"neutral"``, ``"male"`` or ``"female"``.
        frame_indices: [T] int, the source video's frame of each row (default 0..T-1).
        timestamps: [T] seconds (default ``frame_indices / fps``).
        body_model: what the parameters belong to (``"open"`` or an SMPL file's name).
        coordinate_frame: the frame ``poses[:, :3]`` and ``trans`` are in.
        extra: more arrays to store (e.g. ``track_id``).
    Returns:
        the path written.
    Raises:
        ValueError: shapes that do not fit together, non-finite values, a bad fps or gender.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"an AMASS-style file is .npz, not {path.suffix!r}: {path}")
    poses = np.asarray(poses, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    betas = np.asarray(betas, dtype=np.float64).reshape(-1)
    if poses.ndim != 2 or poses.shape[1] != 72:
        raise ValueError(f"poses must be [T, 72] axis-angle (radians), got shape {poses.shape}")
    T = len(poses)
    if trans.shape != (T, 3):
        raise ValueError(f"trans must be [T, 3] metres for T={T} poses, got shape {trans.shape}")
    if betas.size == 0:
        raise ValueError("betas must hold the sequence's shape coefficients, got none")
    for name, arr in (("poses", poses), ("trans", trans), ("betas", betas)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number (frames per second), got {fps!r}")
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"gender must be 'neutral', 'male' or 'female', got {gender!r}")
    frame_indices = np.arange(T) if frame_indices is None else np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    timestamps = frame_indices / float(fps) if timestamps is None else np.asarray(timestamps, np.float64).reshape(-1)
    if len(frame_indices) != T or len(timestamps) != T:
        raise ValueError(f"frame_indices and timestamps need one entry per pose ({T}), got {len(frame_indices)} "
                         f"and {len(timestamps)}")
    arrays = {"poses": poses, "trans": trans, "betas": betas, "mocap_framerate": np.array(float(fps)),
              "gender": np.array(gender), "surface_model_type": np.array("smpl"),
              "frame_indices": frame_indices, "timestamps": timestamps,
              "coordinate_frame": np.array(coordinate_frame), "body_model": np.array(str(body_model))}
    for k, v in extra.items():
        if k in arrays:
            raise ValueError(f"extra array {k!r} would overwrite a standard entry")
        arrays[k] = np.asarray(v)
    with atomic_write(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def read_amass_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an AMASS-style ``.npz`` (no pickles are loaded), checked for ``poses`` [T, 72 or 156],
    ``trans`` [T, 3], ``betas`` and ``mocap_framerate``. Raises ValueError naming what is missing."""
    from fitlib.io.safe_load import load_npz, read_regular_file

    path = Path(path)
    data = dict(load_npz(read_regular_file(path, max_bytes=1 << 30, what="AMASS file"), str(path), max_bytes=1 << 31))
    missing = [k for k in ("poses", "trans", "betas", "mocap_framerate") if k not in data]
    if missing:
        raise ValueError(f"{path}: not an AMASS-style file, missing {missing}")
    poses, trans = np.asarray(data["poses"]), np.asarray(data["trans"])
    if poses.ndim != 2 or poses.shape[1] not in (72, 156) or trans.shape != (len(poses), 3):
        raise ValueError(f"{path}: poses {poses.shape} / trans {trans.shape} are not [T, 72 or 156] / [T, 3]")
    return data
