"""Train fitlib's pose prior (priors/pose_prior.npz) from real motion capture (``fitlib train-prior``).

    fitlib train-prior --out priors/pose_prior.npz         # the shipped prior, from the mocap training clips
    fitlib train-prior --amass a.npz b.npz --gmm-joints all --out my_prior.npz

Model (see fitlib.body.priors.PosePrior, which evaluates it): a fixed invertible linear change of
variables ``f = A @ body_pose`` splits the 69 body-pose numbers into

* the mixture features: the axis-angle of every modelled joint, except that spine1..3 enter as
  their sum (the whole torso bend: the sources measure only the total), modelled by a K-component
  Gaussian mixture with shrinkage covariances (MAP EM with an inverse-Wishart prior pulling each
  component's covariance towards the pooled diagonal covariance, plus a variance floor);
* the remaining features: the two spine differences and every joint the data does not measure
  (collars, head, wrists, hands, toes for the shipped data), each an independent zero-mean
  Gaussian whose width comes from the joint's anatomical range (so those joints are not punished
  for moving by a mixture fitted to constant zeros).

The data is augmented with its left-right mirror image; both sources get equal total weight.
Everything is deterministic (fixed seed, float64 EM): re-running reproduces the shipped file.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fitlib.datasets import mocap
from fitlib.body.skeleton import SMPL_JOINT_NAMES

BODY_JOINTS = SMPL_JOINT_NAMES[1:]
SPINE = ("spine1", "spine2", "spine3")
SEED = 0
N_COMPONENTS = 12
TAU = 20.0
"""Inverse-Wishart prior strength (pseudo-frames) pulling a component covariance to the pooled diagonal."""
VAR_FLOOR = 0.05 ** 2
"""Variance floor (rad^2) added to every mixture covariance: measurement noise of the sources."""
SPINE_DIFF_STD = 0.1
"""Std (rad) of the differences between consecutive spine joint rotations."""
RANGE_MARGIN = 0.15
"""Margin (rad) added around the observed range of a modelled joint to form its joint range."""

# Anatomical ranges (radians, SMPL local axes, left side; the right side is the mirror image) of the
# joints the shipped data does not measure. Hand-set from textbook ranges of motion.
ANATOMICAL_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "left_foot": ((-1.0, 0.7), (-0.3, 0.3), (-0.3, 0.3)),      # toes: extension is -x
    "left_collar": ((-0.3, 0.3), (-0.4, 0.4), (-0.2, 0.5)),    # shrug is +z
    "head": ((-0.7, 0.7), (-1.0, 1.0), (-0.6, 0.6)),           # nod x, turn y, tilt z
    "left_wrist": ((-1.2, 1.2), (-0.4, 0.6), (-1.4, 1.2)),     # twist x, deviation y, flexion -z
    "left_hand": ((-0.3, 0.3), (-0.3, 0.3), (-1.0, 0.3)),      # finger flexion -z
}


def _anatomical_range(joint: str) -> np.ndarray:
    """[3, 2] (lower, upper) range of an unmeasured joint."""
    if joint in ANATOMICAL_RANGES:
        return np.array(ANATOMICAL_RANGES[joint], dtype=np.float64)
    if joint.startswith("right_"):
        left = _anatomical_range("left_" + joint[len("right_"):])
        right = left.copy()
        right[1:] = -left[1:, ::-1]  # y and z flip sign under the mirror
        return right
    raise ValueError(f"no anatomical range for joint {joint!r}")


def load_training_poses(amass_files: list[str] | None = None, step: int = 1) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Body poses to train on, their weights and a record of the data.

    Args:
        amass_files: AMASS-style ``.npz`` files with ``poses`` [T, 72] (SMPL) or [T, 156] (SMPL-H:
            the 21 body joints are used, the SMPL hand joints are set to rest). Default: the shipped
            mocap training clips (``fitlib.datasets.mocap.TRAIN_CLIPS``).
        step: keep every ``step``-th frame.

    Returns:
        body poses [N, 69] float64 (incl. mirror images), weights [N] summing to the number of
        distinct frames (each source weighted equally), and one record line per clip.
    """
    groups: dict[str, list[np.ndarray]] = {}
    record = []
    if amass_files:
        for f in amass_files:
            poses = np.load(f)["poses"][::step].astype(np.float64)
            if poses.ndim != 2 or poses.shape[1] not in (72, 156, 165):
                raise ValueError(f"{f}: poses must have shape [T, 72] (SMPL), [T, 156] (SMPL-H) or [T, 165] (SMPL-X), got {poses.shape}")
            body = poses[:, 3:72] if poses.shape[1] == 72 else np.concatenate([poses[:, 3:66], np.zeros((len(poses), 6))], 1)
            groups.setdefault("amass", []).append(body)
            record.append(f"{Path(f).name}: {len(body)} frames")
    else:
        for name, clip in mocap.load_mocap("train").items():
            groups.setdefault(clip.source, []).append(clip.body_pose[::step].astype(np.float64))
            record.append(f"{clip.source}/{name}: {len(clip.body_pose[::step])} frames")
    poses, weights = [], []
    n_total = sum(sum(len(p) for p in g) for g in groups.values())
    for g in groups.values():
        x = np.concatenate(g)
        x = np.concatenate([x, mocap.mirror_pose(x)])
        poses.append(x)
        weights.append(np.full(len(x), n_total / len(groups) / len(x)))
    return np.concatenate(poses), np.concatenate(weights), record


def change_of_variables(gmm_joints: tuple[str, ...]) -> tuple[np.ndarray, int]:
    """The linear map A [69, 69] (features = A @ body_pose) and the number D of mixture features.

    Mixture features come first: each modelled joint's 3 numbers (spine1..3 as their sum if all
    three are modelled), then the spine differences, then the unmodelled joints.
    """
    rows_gmm, rows_rest = [], []

    def row(joint: str, axis: int, coef: float = 1.0) -> np.ndarray:
        r = np.zeros(69)
        r[3 * BODY_JOINTS.index(joint) + axis] = coef
        return r

    spine_sum = all(s in gmm_joints for s in SPINE)
    for j in BODY_JOINTS:
        if spine_sum and j in SPINE:
            if j == "spine1":
                rows_gmm += [sum(row(s, a) for s in SPINE) for a in range(3)]
            continue
        (rows_gmm if j in gmm_joints else rows_rest).extend(row(j, a) for a in range(3))
    if spine_sum:
        rows_rest = [row("spine1", a) - row("spine2", a) for a in range(3)] + \
                    [row("spine2", a) - row("spine3", a) for a in range(3)] + rows_rest
    return np.stack(rows_gmm + rows_rest), len(rows_gmm)


def _kmeans_pp(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.choice(len(x), p=w / w.sum())]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None] - np.array(centres)[None]) ** 2).sum(-1), axis=1) * w
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
    return np.array(centres)


def fit_gmm(x: np.ndarray, w: np.ndarray, k: int = N_COMPONENTS, tau: float = TAU, var_floor: float = VAR_FLOOR,
            seed: int = SEED, iters: int = 300, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted MAP-EM for a Gaussian mixture with shrinkage covariances.

    Args:
        x: [N, D] samples; w: [N] sample weights (their sum is the effective number of samples).

    Returns:
        mixture weights [K], means [K, D], covariances [K, D, D].
    """
    rng = np.random.default_rng(seed)
    n, d = x.shape
    mean_all = np.average(x, axis=0, weights=w)
    pooled = np.diag(np.average((x - mean_all) ** 2, axis=0, weights=w))
    # hard k-means initialisation
    means = _kmeans_pp(x, w, k, rng)
    for _ in range(20):
        lab = np.argmin(((x[:, None] - means[None]) ** 2).sum(-1), axis=1)
        means = np.array([np.average(x[lab == c], axis=0, weights=w[lab == c]) if np.any(lab == c) else means[c]
                          for c in range(k)])
    resp = np.eye(k)[lab]
    prev = -np.inf
    for _ in range(iters):
        # M step
        nk = (resp * w[:, None]).sum(0)
        pis = nk / nk.sum()
        means = (resp * w[:, None]).T @ x / nk[:, None]
        covs = np.empty((k, d, d))
        for c in range(k):
            diff = x - means[c]
            scatter = (diff * (resp[:, c] * w)[:, None]).T @ diff
            covs[c] = (scatter + tau * pooled) / (nk[c] + tau) + var_floor * np.eye(d)
        # E step
        logp = _log_gauss(x, pis, means, covs)
        ll = np.logaddexp.reduce(logp, axis=1)
        resp = np.exp(logp - ll[:, None])
        obj = float((ll * w).sum() / w.sum())
        if obj - prev < tol:
            break
        prev = obj
    return pis, means, covs


def _log_gauss(x: np.ndarray, pis: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """[N, K] log(pi_k N(x; mu_k, Sigma_k))."""
    d = x.shape[1]
    out = np.empty((len(x), len(pis)))
    for c in range(len(pis)):
        chol = np.linalg.cholesky(covs[c])
        z = np.linalg.solve(chol, (x - means[c]).T)
        out[:, c] = np.log(pis[c]) - 0.5 * (z ** 2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi)
    return out


def train(amass_files: list[str] | None = None, gmm_joints: tuple[str, ...] = mocap.OBSERVED_JOINTS,
          k: int = N_COMPONENTS, step: int = 1, seed: int = SEED) -> dict[str, np.ndarray]:
    """Train the prior; returns the arrays of pose_prior.npz (read by fitlib.body.priors.load_pose_prior)."""
    unknown = set(gmm_joints) - set(BODY_JOINTS)
    if unknown:
        raise ValueError(f"unknown joints {sorted(unknown)}")
    poses, weights, record = load_training_poses(amass_files, step)
    a, d = change_of_variables(tuple(gmm_joints))
    feats = poses @ a.T
    pis, means, covs = fit_gmm(feats[:, :d], weights, k=k, seed=seed)

    # joint ranges: the observed range plus a margin, widened to the anatomical range of joints the
    # mixture does not model (some sources leave them at rest)
    ranges = np.stack([poses.min(0) - RANGE_MARGIN, poses.max(0) + RANGE_MARGIN], -1).reshape(23, 3, 2)
    for i, j in enumerate(BODY_JOINTS):
        if j not in gmm_joints:
            anat = _anatomical_range(j)
            ranges[i] = np.stack([np.minimum(ranges[i, :, 0], anat[:, 0]), np.maximum(ranges[i, :, 1], anat[:, 1])], -1)
    ranges = ranges.reshape(69, 2)
    # widths of the independent Gaussian features
    rest_std = []
    for r in a[d:]:
        (idx,) = np.nonzero(r)
        if len(idx) == 2:  # spine difference
            rest_std.append(SPINE_DIFF_STD)
        else:  # an unmodelled joint: its anatomical range spans about +-2 std
            lo, hi = _anatomical_range(BODY_JOINTS[idx[0] // 3])[idx[0] % 3]
            rest_std.append((hi - lo) / 4.0)
    prec_chol = np.linalg.cholesky(np.linalg.inv(covs))  # precision = L L^T
    log_norm = np.log(pis) + np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(-1) - 0.5 * d * np.log(2 * np.pi)
    digest = hashlib.sha256(np.ascontiguousarray(poses, dtype=np.float32).tobytes()).hexdigest()
    return {
        "transform": a.astype(np.float32),
        "gmm_weights": pis.astype(np.float32),
        "gmm_means": means.astype(np.float32),
        "gmm_covs": covs.astype(np.float32),
        "gmm_prec_chol": prec_chol.astype(np.float32),
        "gmm_log_norm": log_norm.astype(np.float32),
        "rest_std": np.array(rest_std, dtype=np.float32),
        "joint_ranges": ranges.astype(np.float32),
        "gmm_joints": np.array(gmm_joints),
        "training_data": np.array(record + [f"sha256 of training poses (float32, incl. mirrors): {digest}",
                                            f"seed {seed}, K {k}, tau {TAU}, var floor {VAR_FLOOR}"]),
    }
