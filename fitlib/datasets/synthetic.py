"""A synthetic test set in 3DPW's format, from the open body model driven by held-out real mocap.

3DPW and the SMPL files it needs are licensed downloads; this set is the stand-in that
``benchmarks/threedpw.py`` runs on here (``benchmarks/make_synthetic.py`` writes it).  Each sequence file is a latin-1 readable pickle
``<out>/sequenceFiles/<split>/<name>.pkl`` holding a dict with 3DPW's fields:

* ``sequence`` (str), ``genders`` (list of ``'m'``/``'f'``; the open model has one shape space,
  so gender only matters when the set is evaluated with real SMPL files),
* ``betas`` / ``betas_clothed``: list per person of [10] (drawn from N(0, 0.8^2)),
* ``poses`` / ``trans``: list per person of [T, 72] axis-angle (world frame, y up) and [T, 3]
  (SMPL's ``transl`` argument, metres) at the image frames; ``poses_60Hz`` / ``trans_60Hz`` hold
  the mocap at its source rate and ``img_frame_ids`` [T] index them,
* ``jointPositions``: list per person of [T, 72], the 24 posed SMPL joints in the world (metres),
* ``v_template_clothed``: list per person of [V, 3] shaped rest vertices,
* ``cam_poses`` [T, 4, 4] world -> camera (OpenCV camera: x right, y down, z forward),
  ``cam_intrinsics`` [3, 3], ``campose_valid``: list per person of [T] bool,
* ``poses2d``: list per person of [T, 3, 18] (rows x px, y px, confidence) in 3DPW's OpenPose-18
  order (:data:`OPENPOSE18`), an undetected point being (0, 0, 0),
* ``synthetic``: how the sequence was made (clip, frames, seed, corruption settings), an extra key.

Motion: only the clips that the priors are NOT trained on (:data:`fitlib.datasets.mocap.EVAL_CLIPS`).
Camera: 3DPW-like phone in portrait (1080 x 1920 px, focal ~1962 px), hand-held: it drifts
sideways, bobs, rolls slightly and pans to follow the person with a lag.
2D keypoints: the open model's own keypoints projected, then corrupted like a detector:
per-keypoint Gaussian noise proportional to the person's 2D size (relative spreads from COCO's
per-keypoint OKS constants), occasional left/right limb swaps, dropped points, low-confidence
points with larger errors, and truncation at the image border.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from fitlib.body.layouts import get_layout, mirror_name
from fitlib.body.model import BodyModel, load_body_model
from fitlib.camera import project
from fitlib.datasets.mocap import EVAL_CLIPS, load_mocap
from fitlib.io.atomic import atomic_write

OPENPOSE18: tuple[str, ...] = get_layout("openpose18").names
"""3DPW's ``poses2d`` joint order (OpenPose's 18-point COCO model; ``neck`` = shoulder midpoint)."""

# Relative localisation spread per point (COCO's OKS per-keypoint constants; neck like shoulders).
_SPREAD = {"nose": 0.026, "eye": 0.025, "ear": 0.035, "neck": 0.079, "shoulder": 0.079, "elbow": 0.072,
           "wrist": 0.062, "hip": 0.107, "knee": 0.087, "ankle": 0.089,
           "toe": 0.089, "heel": 0.089}  # feet: like the ankle (COCO-WholeBody's foot constants are smaller)
_SPREAD_MEAN = float(np.mean([_SPREAD[n.split("_")[-1]] for n in OPENPOSE18]))
"""The spreads are relative to OpenPose-18's mean, whatever the layout (a point's noise does not depend on which
others are simulated with it)."""
_FOOT = ("big_toe", "small_toe", "heel")
_SWAP_LIMBS = ((("right_elbow", "right_wrist"), ("left_elbow", "left_wrist")),
               (("right_knee", "right_ankle", *(f"right_{f}" for f in _FOOT)),
                ("left_knee", "left_ankle", *(f"left_{f}" for f in _FOOT))),
               (("right_shoulder", "right_elbow", "right_wrist"), ("left_shoulder", "left_elbow", "left_wrist")),
               (("right_hip", "right_knee", "right_ankle", *(f"right_{f}" for f in _FOOT)),
                ("left_hip", "left_knee", "left_ankle", *(f"left_{f}" for f in _FOOT))))
"""Limb swaps (right with left) of the corruption; a swapped leg takes its foot points with it where the layout
has them."""
IMAGE_SIZE = (1920, 1080)
"""(height, width) of the synthetic images: a portrait phone video like most of 3DPW."""


@dataclass
class Corruption:
    """Detector-like corruption of the projected keypoints."""

    noise: float = 0.006        # std of the 2D noise of an average point, as a fraction of the person's box diagonal
    swap: float = 0.03          # probability per person and frame of swapping a left/right limb
    drop: float = 0.03          # probability per point of a missed detection (0, 0, 0)
    low_conf: float = 0.06      # probability per point of a poor detection: confidence U(0.05, 0.35), 4x noise
    conf_range: tuple[float, float] = (0.55, 0.95)  # confidence of a normal detection (uniform)


def _look_at(eye: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """World->camera [4, 4] (OpenCV camera) for a camera at ``eye`` looking at ``target`` in a y-up world."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ eye
    return T


def _smooth_noise(rng: np.random.Generator, n: int, scale: float, width: float = 8.0) -> np.ndarray:
    """Smooth random signal [n] (Gaussian-filtered white noise, std about ``scale``)."""
    k = np.arange(-3 * int(width), 3 * int(width) + 1)
    kern = np.exp(-0.5 * (k / width) ** 2)
    x = np.convolve(rng.standard_normal(n + len(k) - 1), kern / np.sqrt((kern ** 2).sum()), mode="valid")
    return scale * x


def corrupt_keypoints(xy: np.ndarray, rng: np.random.Generator, corruption: Corruption,
                      image_size: tuple[int, int] = IMAGE_SIZE, names: tuple[str, ...] = OPENPOSE18) -> np.ndarray:
    """Detector-like 2D keypoints from exact projections.

    Args:
        xy: [T, J, 2] projected points (pixels) named ``names`` (default: OpenPose-18, 3DPW's ``poses2d``; any
            layout of body and foot points, e.g. ``body25``'s).
        rng: random generator.
        corruption: the settings.
        image_size: (height, width); points outside the image are not detected.
        names: the points' names.
    Returns:
        [T, J, 3] (x px, y px, confidence); undetected points are (0, 0, 0).
    """
    T, J, _ = xy.shape
    if J != len(names):
        raise ValueError(f"xy has {J} points per frame, names {len(names)}")
    c = corruption
    h, w = image_size
    spread = np.array([_SPREAD[n.split("_")[-1]] for n in names]) / _SPREAD_MEAN
    diag = np.linalg.norm(xy.max(1) - xy.min(1), axis=-1)  # [T]
    sigma = c.noise * diag[:, None] * spread[None]  # [T, J] px
    conf = rng.uniform(*c.conf_range, size=(T, J))
    low = rng.random((T, J)) < c.low_conf
    conf[low] = rng.uniform(0.05, 0.35, size=int(low.sum()))
    sigma = np.where(low, 4.0 * sigma, sigma)
    out = xy + rng.standard_normal((T, J, 2)) * sigma[..., None]
    idx = {n: i for i, n in enumerate(names)}
    for t in np.nonzero(rng.random(T) < c.swap)[0]:
        right, left = _SWAP_LIMBS[rng.integers(len(_SWAP_LIMBS))]
        r = [idx[n] for n in right if n in idx and mirror_name(n) in idx]
        l_ = [idx[mirror_name(names[i])] for i in r]
        out[t, r + l_] = out[t, l_ + r]
    inside = (out[..., 0] >= 0) & (out[..., 0] < w) & (out[..., 1] >= 0) & (out[..., 1] < h)
    keep = inside & (rng.random((T, J)) >= c.drop)
    res = np.concatenate([out, conf[..., None]], -1)
    res[~keep] = 0.0
    return res


@dataclass
class WorldNoise:
    """BlazePose-like errors of simulated 3D world landmarks (metres).

    BlazePose regresses its world landmarks from one crop: a per-point error, a wrong metric size (it sees no
    scale), depths squeezed or stretched (depth is its weakest axis) and, at times, a limb whose depth order is
    inverted (front/back of an arm or leg is ambiguous in a photo as in 2D keypoints)."""

    sigma: float | np.ndarray = 0.03  # std (m) of each coordinate of each point (or [B, 1, 1] per person)
    scale: float = 0.06         # std of the person's metric scale (1 + N(0, scale^2))
    depth_scale: float = 0.15   # std of the extra scale of the depths (z) about the hips
    limb_flip: float = 0.05     # probability, per arm and leg, that its depth relative to its root is mirrored


def look_at_person(points: np.ndarray, hips: np.ndarray) -> np.ndarray:
    """Points [..., N, 3] (camera frame, m) re-centred on ``hips`` [..., 3] and expressed in the camera frame
    turned to look along the ray through the hips (:func:`fitlib.camera.ray_rotation`): the frame of a crop
    centred on the person, in which a landmark network like BlazePose sees the body."""
    from fitlib.camera import ray_rotation

    R = ray_rotation(torch.as_tensor(np.asarray(hips, np.float64))).numpy()
    return (np.asarray(points, np.float64) - hips[..., None, :]) @ R  # R^T applied to row vectors


def simulate_world_landmarks(points: np.ndarray, names: tuple[str, ...], rng: np.random.Generator,
                             noise: WorldNoise | None = None) -> np.ndarray:
    """BlazePose-like world landmarks [B, N, 3] (m, hip-centred, :func:`look_at_person`'s frame) from a body
    model's exact points ``points`` [B, N, 3] (camera frame, m) named ``names`` (``mediapipe33`` names, the
    hips among them), with the errors of ``noise`` (default :class:`WorldNoise`)."""
    noise = noise or WorldNoise()
    pts = np.asarray(points, np.float64)
    B = len(pts)
    ix = {n: i for i, n in enumerate(names)}
    hips = 0.5 * (pts[:, ix["left_hip"]] + pts[:, ix["right_hip"]])
    w = look_at_person(pts, hips)
    for side in ("left", "right"):  # an arm or leg's depth order inverted about its root
        for root, parts in (("shoulder", ("elbow", "wrist", "pinky", "index", "thumb")),
                            ("hip", ("knee", "ankle", "heel", "foot_index"))):
            if f"{side}_{root}" not in ix:
                continue
            rows = np.nonzero(rng.random(B) < noise.limb_flip)[0]
            cols = [ix[f"{side}_{p}"] for p in parts if f"{side}_{p}" in ix]
            r0 = w[rows, ix[f"{side}_{root}"], 2][:, None]
            w[rows[:, None], cols, 2] = 2 * r0 - w[rows[:, None], cols, 2]
    w[..., 2] *= (1.0 + noise.depth_scale * rng.standard_normal(B))[:, None]
    w *= (1.0 + noise.scale * rng.standard_normal(B))[:, None, None]
    return w + noise.sigma * rng.standard_normal(w.shape)


def _openpose18(model: BodyModel, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor):
    """World joints [T, 24, 3] and OpenPose-18 points [T, 18, 3] of the model (float64 numpy)."""
    with torch.no_grad():
        out = model(pose, betas, transl, layout="openpose18")
    return out.joints.double().numpy(), out.keypoints.double().numpy()


def make_sequence(model: BodyModel, clips: list, index: int, frames: int, rng: np.random.Generator,
                  corruption: Corruption, people: int, fps: float) -> dict:
    """One 3DPW-format sequence dict (see the module docstring)."""
    T_img = frames
    people_data = []
    anchor = rng.uniform(-0.5, 0.5, size=3) * np.array([1.0, 0.0, 1.0])
    heading = rng.uniform(-np.pi, np.pi)
    K = np.array([[1961.8 + rng.normal(0, 4), 0.0, 540.0], [0.0, 1969.2 + rng.normal(0, 4), 960.0], [0, 0, 1.0]])
    for p in range(people):
        name, clip = clips[(index + p) % len(clips)]
        stride = max(1, int(round(clip.fps / fps)))
        n_src = len(clip.poses)
        span = (T_img - 1) * stride + 1
        start = int(rng.integers(0, max(1, n_src - span + 1)))
        src = np.arange(start, min(n_src, start + span))
        img_ids = src[::stride][:T_img] - start
        poses60 = clip.poses[src].astype(np.float64)
        pelvis60 = clip.transl[src].astype(np.float64)
        # place the clip: start over the anchor (people side by side), turned by a random heading
        yaw = heading + rng.normal(0, 0.4)
        Ry = roma.rotvec_to_rotmat(torch.tensor([0.0, yaw, 0.0], dtype=torch.float64))
        R0 = roma.rotvec_to_rotmat(torch.from_numpy(poses60[:, :3]))
        poses60[:, :3] = roma.rotmat_to_rotvec(Ry @ R0).numpy()
        offset = pelvis60[0] * np.array([1.0, 0.0, 1.0])
        pelvis60 = (pelvis60 - offset) @ Ry.numpy().T + anchor + np.array([1.1 * p, 0.0, 0.3 * p])
        betas = rng.normal(0.0, 0.8, size=10)
        bt = torch.from_numpy(betas).float()
        j0 = model.rest_joints(bt)[0].double().numpy()
        trans60 = pelvis60 - j0  # SMPL's transl: offsets the mesh origin, so the pelvis lands on the track
        people_data.append(dict(clip=name, start=start, stride=stride, poses60=poses60, trans60=trans60,
                                img_ids=img_ids, betas=betas, gender="m" if rng.random() < 0.5 else "f"))
    T_img = min(len(d["img_ids"]) for d in people_data)
    for d in people_data:
        d["img_ids"] = d["img_ids"][:T_img]
        d["poses"] = d["poses60"][d["img_ids"]]
        d["trans"] = d["trans60"][d["img_ids"]]

    # hand-held camera following the (first) person
    track = people_data[0]["trans"] + model.rest_joints(torch.from_numpy(people_data[0]["betas"]).float())[0].double().numpy()
    if people > 1:
        track = np.mean([d["trans"] for d in people_data], 0) + track - people_data[0]["trans"]
    dist = rng.uniform(2.8, 5.5) + 0.5 * (people - 1)
    view = heading + rng.normal(0, 0.5)  # camera roughly in front of the people
    forward = np.array([np.sin(view), 0.0, np.cos(view)])
    side = np.cross([0.0, 1.0, 0.0], forward)
    base = track[0] * np.array([1, 0, 1]) + dist * forward + np.array([0.0, rng.uniform(1.1, 1.6), 0.0])
    drift = np.linspace(0, 1, T_img)[:, None] * side * rng.uniform(-1.0, 1.0)
    shake = np.stack([_smooth_noise(rng, T_img, 0.05), _smooth_noise(rng, T_img, 0.03),
                      _smooth_noise(rng, T_img, 0.05)], -1)
    lag = np.copy(track)
    for t in range(1, T_img):  # the operator pans with a lag
        lag[t] = lag[t - 1] + 0.5 * (track[t] - lag[t - 1])
    roll = _smooth_noise(rng, T_img, np.radians(2.0))
    cam_poses = np.stack([_look_at(base + drift[t] + shake[t], lag[t] + np.array([0.0, -0.1, 0.0]), roll[t])
                          for t in range(T_img)])

    poses2d, joints_world, campose_valid, vt = [], [], [], []
    for d in people_data:
        pose = torch.from_numpy(d["poses"]).float()
        bt = torch.from_numpy(d["betas"]).float()
        joints, kp = _openpose18(model, pose, bt, torch.from_numpy(d["trans"]).float())
        R, t = cam_poses[:, :3, :3], cam_poses[:, :3, 3]
        kp_cam = np.einsum("tij,tkj->tki", R, kp) + t[:, None]
        xy = project(torch.from_numpy(kp_cam), torch.from_numpy(K)).numpy()
        kp2d = corrupt_keypoints(xy, rng, corruption)
        behind = kp_cam[..., 2] < 0.1
        kp2d[behind] = 0.0
        poses2d.append(kp2d.transpose(0, 2, 1).copy())  # [T, 3, 18] like 3DPW
        joints_world.append(joints.reshape(T_img, 72))
        campose_valid.append(rng.random(T_img) >= 0.03)
        with torch.no_grad():
            vt.append((model.smpl.v_template + torch.einsum("vcb,b->vc", model.smpl.shapedirs, bt)).numpy())

    frame_ids = people_data[0]["img_ids"]
    return {
        "sequence": f"synthetic_{index:02d}_" + "+".join(d["clip"] for d in people_data),
        "genders": [d["gender"] for d in people_data],
        "betas": [d["betas"] for d in people_data],
        "betas_clothed": [d["betas"].copy() for d in people_data],
        "v_template_clothed": vt,
        "poses": [d["poses"] for d in people_data],
        "trans": [d["trans"] for d in people_data],
        "poses_60Hz": [d["poses60"] for d in people_data],
        "trans_60Hz": [d["trans60"] for d in people_data],
        "img_frame_ids": frame_ids,
        "jointPositions": joints_world,
        "cam_poses": cam_poses,
        "cam_intrinsics": K,
        "campose_valid": campose_valid,
        "poses2d": poses2d,
        "synthetic": {"clips": [d["clip"] for d in people_data], "start": [d["start"] for d in people_data],
                      "stride": [d["stride"] for d in people_data], "corruption": asdict(corruption),
                      "body_model": model.name},
    }


def make_synthetic(out: str | Path, sequences: int = 4, frames: int = 40, seed: int = 0, split: str = "test",
                   max_people: int = 2, fps: float = 30.0, corruption: Corruption | None = None,
                   clips: list[str] | None = None) -> list[Path]:
    """Write ``sequences`` synthetic sequences of ``frames`` image frames to ``<out>/sequenceFiles/<split>``.

    ``clips``: names of *training* clips to draw the motion from instead of the held-out evaluation clips
    (None): 2D-only data for experiments with training in the loop, never a test set.

    Odd-numbered sequences have ``max_people`` people (3DPW has one or two), the others one.
    Image frames are taken every ``round(clip_fps / fps)`` mocap frames. Deterministic under ``seed``.
    Returns the written paths.
    """
    if sequences < 1 or frames < 1:
        raise ValueError(f"need at least one sequence and one frame, got {sequences} x {frames}")
    corruption = corruption or Corruption()
    model = load_body_model("open")
    if clips is None:
        clips = list(load_mocap("eval").items())
        assert all(name in EVAL_CLIPS for name, _ in clips)
    else:
        train = load_mocap("train")
        bad = [c for c in clips if c not in train]
        if bad:
            raise ValueError(f"clips must be training clips {sorted(train)}, got {bad}")
        clips = [(c, train[c]) for c in clips]
    folder = Path(out) / "sequenceFiles" / split
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(sequences):
        rng = np.random.default_rng([seed, i])
        people = max_people if i % 2 == 1 else 1
        seq = make_sequence(model, clips, i, frames, rng, corruption, people, fps)
        path = folder / f"{seq['sequence']}.pkl"
        with atomic_write(path) as f:
            pickle.dump(seq, f, protocol=2)
        paths.append(path)
    return paths
