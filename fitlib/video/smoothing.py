"""Temporal smoothing of per-frame SMPL parameter sequences.

Rotations are smoothed as unit quaternions made sign-continuous along time (``q`` and ``-q`` are one
rotation: each frame's is flipped to the hemisphere of the previous one), filtered per component and
normalised back; translations directly. Two filters:

* ``"savgol"``: Savitzky-Golay (a local polynomial fit, ``scipy.signal.savgol_filter``), zero-phase,
  for offline video (the default);
* ``"one_euro"``: the One-Euro filter (Casiez et al. 2012), a causal low-pass whose cut-off rises with
  the speed, for streaming; ``"one_euro2"`` runs it forwards and backwards (zero lag, offline).

Shapes: ``poses`` [T, 72] axis-angle (radians, joint 0 the global orientation), ``transl`` [T, 3]
metres, ``times`` [T] seconds.
"""
from __future__ import annotations

import math

import numpy as np
import roma
import torch

METHODS = ("savgol", "one_euro", "one_euro2", "none")


def continuous_quaternions(rotvec: np.ndarray) -> np.ndarray:
    """[T, K, 4] unit quaternions (x, y, z, w; roma's order) of axis-angle rotations [T, K, 3], each frame's
    sign chosen so that it is within 90 degrees (4D) of the previous frame's."""
    q = roma.rotvec_to_unitquat(torch.as_tensor(np.asarray(rotvec, np.float64))).numpy().copy()
    for t in range(1, len(q)):
        flip = (q[t] * q[t - 1]).sum(-1) < 0
        q[t, flip] *= -1
    return q


def quaternions_to_rotvec(q: np.ndarray) -> np.ndarray:
    """[..., 3] axis-angle of (not necessarily unit) quaternions [..., 4] (normalised first)."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    return roma.unitquat_to_rotvec(torch.as_tensor(q)).numpy()


def savgol(x: np.ndarray, window: int = 9, order: int = 2) -> np.ndarray:
    """Savitzky-Golay filter along axis 0 of ``x`` [T, ...]; the window shrinks (to an odd length > order)
    for short sequences, and sequences too short for any window come back unchanged."""
    from scipy.signal import savgol_filter  # imported on use: scipy.signal takes ~2 s to import

    x = np.asarray(x, np.float64)
    T = len(x)
    w = min(int(window), T if T % 2 else T - 1)
    if w <= order or w < 3:
        return x.copy()
    return savgol_filter(x, w, order, axis=0, mode="interp")


def one_euro(x: np.ndarray, times: np.ndarray, min_cutoff: float = 1.0, beta: float = 0.0,
             d_cutoff: float = 1.0) -> np.ndarray:
    """One-Euro filter along axis 0 of ``x`` [T, ...] sampled at ``times`` [T] (seconds, increasing).

    ``min_cutoff`` (Hz): cut-off at rest; ``beta``: how fast the cut-off rises with the speed (per unit of
    ``x`` per second); ``d_cutoff`` (Hz): cut-off of the speed estimate. Causal (each output uses only the
    past)."""
    x = np.asarray(x, np.float64)
    times = np.asarray(times, np.float64)
    out = np.empty_like(x)
    if not len(x):
        return out

    def alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    out[0] = x[0]
    dx = np.zeros_like(x[0])
    for t in range(1, len(x)):
        dt = max(float(times[t] - times[t - 1]), 1e-6)
        raw_dx = (x[t] - out[t - 1]) / dt
        a_d = alpha(d_cutoff, dt)
        dx = a_d * raw_dx + (1 - a_d) * dx
        cutoff = min_cutoff + beta * np.abs(dx)
        a = 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))
        out[t] = a * x[t] + (1 - a) * out[t - 1]
    return out


def smooth_signal(x: np.ndarray, times: np.ndarray, method: str = "savgol", **settings) -> np.ndarray:
    """``x`` [T, ...] filtered along time by ``method`` (:data:`METHODS`; ``settings`` go to the filter)."""
    if method == "none":
        return np.asarray(x, np.float64).copy()
    if method == "savgol":
        return savgol(x, **settings)
    if method == "one_euro":
        return one_euro(x, times, **settings)
    if method == "one_euro2":
        fwd = one_euro(x, times, **settings)
        t = np.asarray(times, np.float64)
        return one_euro(fwd[::-1], t[-1] - t[::-1], **settings)[::-1].copy()
    raise ValueError(f"unknown smoothing method {method!r}; choose one of {METHODS}")


def smooth_params(poses: np.ndarray, transl: np.ndarray, times: np.ndarray, method: str = "savgol",
                  rotation_settings: dict | None = None, translation_settings: dict | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth one track's SMPL parameter sequence.

    Args:
        poses: [T, 72] axis-angle (radians), 24 joints.
        transl: [T, 3] metres.
        times: [T] seconds, increasing.
        method: one of :data:`METHODS`.
        rotation_settings / translation_settings: the filter's settings for the quaternion components and
            for the translation (e.g. ``{"window": 9, "order": 2}`` for ``savgol``, ``{"min_cutoff": 1.0,
            "beta": 0.5}`` for ``one_euro``).
    Returns:
        (poses [T, 72], transl [T, 3]) smoothed.
    Raises:
        ValueError: shapes that do not match, times not increasing, an unknown method.
    """
    poses = np.asarray(poses, np.float64)
    transl = np.asarray(transl, np.float64)
    times = np.asarray(times, np.float64).reshape(-1)
    T = len(times)
    if poses.shape != (T, 72) or transl.shape != (T, 3):
        raise ValueError(f"smooth_params takes poses [T, 72], transl [T, 3] and times [T]; got {poses.shape}, "
                         f"{transl.shape} and {times.shape}")
    if T > 1 and not (np.diff(times) > 0).all():
        raise ValueError("smooth_params: times must be increasing (seconds)")
    if method not in METHODS:
        raise ValueError(f"unknown smoothing method {method!r}; choose one of {METHODS}")
    if T < 3 or method == "none":
        return poses.copy(), transl.copy()
    q = continuous_quaternions(poses.reshape(T, 24, 3))
    qs = smooth_signal(q.reshape(T, 96), times, method, **(rotation_settings or {})).reshape(T, 24, 4)
    out_pose = quaternions_to_rotvec(qs).reshape(T, 72)
    out_transl = smooth_signal(transl, times, method, **(translation_settings or {}))
    return out_pose, out_transl
