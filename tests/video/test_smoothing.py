"""Smoothing: on real motion (the shipped held-out mocap) with detector-like noise, both filters lower the
joints' acceleration error and the position error; quaternion sign continuity."""
import numpy as np
import pytest
import roma
import torch

from fitlib.datasets.mocap import forward_kinematics, load_mocap
from fitlib.video.smoothing import continuous_quaternions, quaternions_to_rotvec, smooth_params


def _joints(poses: np.ndarray, transl: np.ndarray) -> np.ndarray:
    return forward_kinematics(torch.as_tensor(poses, dtype=torch.float64)).numpy() + transl[:, None]


def _accel_error(pred: np.ndarray, gt: np.ndarray) -> float:
    acc = lambda x: x[2:] - 2 * x[1:-1] + x[:-2]  # noqa: E731
    return float(np.linalg.norm(acc(pred) - acc(gt), axis=-1).mean())


@pytest.fixture(scope="module")
def noisy_motion():
    clip = next(iter(load_mocap("eval").values()))
    step = max(1, int(round(clip.fps / 30)))  # about 30 fps, like a video
    poses = clip.poses[::step][:90].astype(np.float64)
    transl = clip.transl[::step][:90].astype(np.float64)
    times = np.arange(len(poses)) / (clip.fps / step)
    rng = np.random.default_rng(0)
    noisy_p = poses + rng.normal(0, 0.05, poses.shape)  # ~3 degrees per joint axis, frame-independent
    noisy_t = transl + rng.normal(0, 0.02, transl.shape)  # 2 cm
    return poses, transl, noisy_p, noisy_t, times


@pytest.mark.parametrize("method,settings", [("savgol", {"window": 9, "order": 2}),
                                             ("one_euro", {"min_cutoff": 3.0, "beta": 0.5}),
                                             ("one_euro2", {"min_cutoff": 3.0, "beta": 0.5})])
def test_smoothing_lowers_acceleration_error_on_real_motion(noisy_motion, method, settings):
    poses, transl, noisy_p, noisy_t, times = noisy_motion
    gt = _joints(poses, transl)
    noisy = _joints(noisy_p, noisy_t)
    sp, st = smooth_params(noisy_p, noisy_t, times, method, settings, settings)
    smooth = _joints(sp, st)
    before, after = _accel_error(noisy, gt), _accel_error(smooth, gt)
    assert after < 0.5 * before, (method, before, after)
    if method != "one_euro":  # the causal filter lags: less jitter, not always less position error
        assert np.linalg.norm(smooth - gt, axis=-1).mean() < np.linalg.norm(noisy - gt, axis=-1).mean()


def test_quaternion_sign_continuity_and_round_trip():
    rng = np.random.default_rng(1)
    rotvec = rng.normal(0, 1, (50, 24, 3))
    q = continuous_quaternions(rotvec)
    assert ((q[1:] * q[:-1]).sum(-1) >= 0).all()
    back = quaternions_to_rotvec(q)
    R1 = roma.rotvec_to_rotmat(torch.as_tensor(rotvec))
    R2 = roma.rotvec_to_rotmat(torch.as_tensor(back))
    assert torch.allclose(R1, R2, atol=1e-9)


def test_rotation_near_pi_is_not_averaged_through_zero():
    """A body turning steadily through 180 degrees: axis-angle jumps from +pi to -pi; the smoothed rotation
    must stay on the path (a component-wise filter of axis-angle would pass near the identity)."""
    T = 21
    angles = np.linspace(np.pi - 0.3, np.pi + 0.3, T)
    poses = np.zeros((T, 72))
    wrapped = (angles + np.pi) % (2 * np.pi) - np.pi
    poses[:, 1] = wrapped  # about y
    sp, _ = smooth_params(poses, np.zeros((T, 3)), np.arange(T) / 30, "savgol", {"window": 9, "order": 2})
    R = roma.rotvec_to_rotmat(torch.as_tensor(sp[:, :3]))
    truth = roma.rotvec_to_rotmat(torch.as_tensor(poses[:, :3]))
    err = roma.rotmat_geodesic_distance(R, truth)
    assert float(err.max()) < 1e-3  # a linear motion is kept exactly by a quadratic local fit


def test_bad_input():
    with pytest.raises(ValueError, match="poses"):
        smooth_params(np.zeros((5, 70)), np.zeros((5, 3)), np.arange(5.0))
    with pytest.raises(ValueError, match="increasing"):
        smooth_params(np.zeros((5, 72)), np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match="method"):
        smooth_params(np.zeros((5, 72)), np.zeros((5, 3)), np.arange(5.0), "kalman")

