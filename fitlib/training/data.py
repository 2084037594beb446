"""Training samples for the regressor, generated on the fly: real mocap and random plausible poses,
posed with the body model, seen by random cameras, with detector-like 2D keypoints.

No dataset file: batch ``step`` of a generator is a pure function of ``(seed, step)``
(:meth:`SampleGenerator.batch`), so a resumed run sees exactly the batches an uninterrupted one would.

What varies (settings in :class:`DataConfig`, ``data:`` in a training YAML):

* pose: a mocap frame of the training clips (``load_mocap("train")`` minus the validation clips: the
  held-out ``EVAL_CLIPS`` are never read here), or the limbs and spine of several frames mixed (each
  group a real frame's, so within the joints' ranges; or, for ``p_anatomical_limbs`` of the arms and legs, a
  limb drawn within its joints' anatomical ranges of motion on a real body), or a random plausible pose
  (:func:`fitlib.body.open_model.sample_plausible_poses`, or within the joints' anatomical ranges of motion,
  :func:`fitlib.body.range_of_motion.sample_anatomical_poses`); mirrored left/right half the time
  (:func:`fitlib.datasets.mocap.mirror_pose`); the joints mocap does not measure (wrists, hands, head,
  collars, feet) get small random rotations;
* orientation: any heading, the body's own pitch/roll plus a random tilt, a camera looking up or down
  and rolled a little;
* shape: betas from N(0, 1) (the open model's betas are standardised over anny's adults, so this is
  anny's shape distribution) or N(0, 1.5²);
* camera: image sizes of phones, cameras and webcams in portrait and landscape, focal lengths of phone
  wide lenses to short teles, 3DPW's (0.89 x the diagonal) and CLIFF's default (the diagonal);
* placement: 2-12 m away (log-uniform), anywhere in the image, partly outside it at times;
* 3D (networks with ``world_landmarks``): BlazePose-like world landmarks for ``p_world`` of the samples
  (:func:`fitlib.datasets.synthetic.simulate_world_landmarks`: the model's own ``mediapipe33`` points with
  per-point noise, scale and depth errors and inverted limbs);
* 2D: the benchmark's detector-like corruption (:func:`fitlib.datasets.synthetic.corrupt_keypoints`:
  jitter scaled by the person's size, missed points, left/right limb swaps, low-confidence points with
  larger errors, points outside the image dropped), with its rates drawn per image size group; for a network
  that reads foot points (``coco17_feet``), in BODY_25 with the feet present for ``p_feet`` of the samples.
"""
from __future__ import annotations


import numpy as np
import roma
import torch
from pydantic import BaseModel, ConfigDict, Field

from fitlib.body.layouts import FEET_NAMES, WORLD_POINTS, convert_keypoints, get_layout
from fitlib.body.model import BodyModel
from fitlib.body.open_model import sample_plausible_poses
from fitlib.body.range_of_motion import sample_anatomical_poses
from fitlib.body.skeleton import SMPL_JOINT_NAMES
from fitlib.camera import project
from fitlib.datasets.batch import Batch
from fitlib.datasets.mocap import EVAL_CLIPS, OBSERVED_JOINTS, TRAIN_CLIPS, load_mocap, mirror_pose
from fitlib.datasets.synthetic import Corruption, WorldNoise, corrupt_keypoints, simulate_world_landmarks

def Prob(default: float):
    return Field(default, ge=0, le=1)

IMAGE_SIZES = ((1920, 1080), (1080, 1920), (1280, 720), (720, 1280), (4032, 3024), (3024, 4032), (480, 640),
               (640, 480), (1024, 1024))
"""(height, width) of the simulated images."""

_GROUPS = {
    "left_arm": ("left_collar", "left_shoulder", "left_elbow", "left_wrist", "left_hand"),
    "right_arm": ("right_collar", "right_shoulder", "right_elbow", "right_wrist", "right_hand"),
    "left_leg": ("left_hip", "left_knee", "left_ankle", "left_foot"),
    "right_leg": ("right_hip", "right_knee", "right_ankle", "right_foot"),
    "spine": ("spine1", "spine2", "spine3", "neck", "head"),
}
"""Joint groups that limb mixing takes from different frames (the pelvis goes with the spine)."""


class DataConfig(BaseModel):
    """How samples vary (see the module doc)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    val_clips: list[str] = Field(default_factory=lambda: ["punch", "jump", "climb_seq_3"])
    """Training clips held out for validation (never trained on; EVAL_CLIPS are never read at all)."""
    clips: list[str] | None = None
    """Training clips whose frames are trained on (None: every training clip but ``val_clips``); e.g. to
    hold some clips out as 2D-only data for training in the loop."""
    clip_balance: float = Prob(0.8)
    """Fraction of mocap frames drawn clip first (every clip equally likely), the rest uniformly over frames
    (validation: always clip first, so each validation clip counts equally)."""
    p_mocap: float = Prob(0.45)
    p_mixed: float = Prob(0.35)
    """The rest (1 - p_mocap - p_mixed) are random plausible poses."""
    random_pose_scale: tuple[float, float] = (0.3, 1.0)
    """Random poses: sample_plausible_poses scaled by U(lo, hi)."""
    p_anatomical: float = Prob(0.0)
    """Of the random poses, this fraction are drawn within the joints' anatomical ranges of motion
    (:func:`fitlib.body.range_of_motion.sample_anatomical_poses`: lopsided like real joints, so a thigh swings
    far forwards but little backwards) instead of about random axes (sample_plausible_poses, ``wide_scale``)."""
    p_anatomical_limbs: float = Prob(0.0)
    """Of the mixed frames' arms and legs, this fraction are drawn within the joints' anatomical ranges of motion
    instead of from another frame (the rest of the body stays a real frame's: an unusual limb on a real body)."""
    p_prior: float = Prob(0.15)
    """Of the random poses, this fraction are samples of the shipped pose prior's mixture (new combinations
    near the training motion) instead (of either sampler's poses)."""
    wide_scale: tuple[float, float, float, float] | None = (1.8, 2.5, 1.4, 1.3)
    """Random poses: the upper bound of U(lo, this) per group, legs (hips, ankles), shoulders, knees, elbows,
    so that hips reach ~90° (kicks), shoulders ~150° (arms overhead), knees ~140°, elbows ~145° (half the
    random poses, per group); None: one scale for all joints."""
    mocap_jitter: float = Field(0.12, ge=0)
    """Std (rad) of random rotations added to the measured joints of mocap and mixed frames."""
    p_mirror: float = Prob(0.5)
    unobserved_scale: float = Field(0.4, ge=0)
    """Random rotation of the joints mocap does not measure: sample_plausible_poses x U(0, this)."""
    tilt_deg: float = Field(10.0, ge=0)
    """Extra body pitch/roll (std, degrees) on top of the pose's own."""
    camera_pitch_deg: tuple[float, float] = (-15.0, 35.0)
    """Camera looking down (positive) or up, uniform (degrees)."""
    camera_roll_deg: float = Field(4.0, ge=0)
    betas_wide: float = Prob(0.5)
    """Fraction of samples with betas from N(0, 1.5²) (the others N(0, 1))."""
    distance: tuple[float, float] = (2.0, 12.0)
    """Pelvis depth (m), log-uniform."""
    p_partial: float = Prob(0.2)
    """Fraction placed anywhere, even mostly outside the image (the others inside its central part)."""
    focal_cliff: float = Prob(0.3)
    focal_3dpw: float = Prob(0.25)
    focal_range: tuple[float, float] = (0.55, 1.5)
    """Other focal lengths: log-uniform in this range x the image diagonal."""
    noise: tuple[float, float] = (0.0, 0.015)
    swap: tuple[float, float] = (0.0, 0.08)
    drop: tuple[float, float] = (0.0, 0.08)
    low_conf: tuple[float, float] = (0.0, 0.12)
    """Corruption rates, uniform per image-size group and batch (the benchmark uses 0.006, 0.03, 0.03, 0.06)."""
    p_feet: float = Prob(0.5)
    """For a network whose layout has foot points (``coco17_feet``): fraction of samples whose detector gave them
    (the others have none, as from a COCO-17 detector); validation samples too. Unused for other layouts."""
    p_world: float = Prob(0.0)
    """Fraction of samples with simulated BlazePose world landmarks (for a network with ``world_landmarks``; the
    others have none, as when another detector gave the 2D); validation samples too."""
    world_sigma: tuple[float, float] = (0.01, 0.06)
    """Std (m) of the landmarks' per-point error, uniform per sample
    (:class:`fitlib.datasets.synthetic.WorldNoise`, whose other errors are at their defaults)."""
    augment: bool = True
    """False: mocap frames only, no mirroring/mixing/tilt/unobserved-joint noise, betas N(0,1), one focal
    (the diagonal), benchmark-like distances and the benchmark's corruption rates (the ablation)."""


def _rot(axis: int, angle: torch.Tensor) -> torch.Tensor:
    v = torch.zeros(*angle.shape, 3, dtype=angle.dtype)
    v[..., axis] = angle
    return roma.rotvec_to_rotmat(v)


class SampleGenerator:
    """Seeded on-the-fly samples from the mocap clips of ``split`` (``"train"``: the training clips minus
    ``config.val_clips``; ``"val"``: those clips only) and random poses (training only), for ``model``.

    ``extra_poses`` [M, 24, 3] (axis-angle, camera frame, e.g. the pseudo-labels of training in the loop) join
    the training poses as one more clip: they are seen from random viewpoints and cameras, mirrored and mixed
    like mocap frames."""

    def __init__(self, model: BodyModel, config: DataConfig | None = None, split: str = "train",
                 layout: str = "coco17", seed: int = 0, extra_poses: torch.Tensor | None = None) -> None:
        self.model, self.config, self.layout, self.seed = model, config or DataConfig(), layout, seed
        # the layout the 2D corruption is simulated in: 3DPW's OpenPose-18, or BODY_25 for a network reading feet
        self.detector_layout = get_layout("body25" if any(n in FEET_NAMES for n in get_layout(layout).names)
                                          else "openpose18")
        cfg = self.config
        bad = [c for c in cfg.val_clips if c not in TRAIN_CLIPS]
        if bad:
            raise ValueError(f"val_clips must be training clips {list(TRAIN_CLIPS)}, got {bad}"
                             + (" (held-out evaluation clips are never used in training)" if
                                any(c in EVAL_CLIPS for c in bad) else ""))
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        self.split = split
        clips = load_mocap("train")
        if cfg.clips is not None:
            bad = [c for c in cfg.clips if c not in TRAIN_CLIPS or c in cfg.val_clips]
            if bad:
                raise ValueError(f"data.clips must be training clips that are not validation clips, got {bad}")
        names = [n for n in clips if (n in cfg.val_clips) == (split == "val")
                 and (split == "val" or cfg.clips is None or n in cfg.clips)]
        if not names:
            raise ValueError(f"no mocap clips for split {split!r}")
        self.clips = names
        parts = [torch.as_tensor(clips[n].poses, dtype=torch.float32).view(-1, 24, 3) for n in names]
        if extra_poses is not None and len(extra_poses) and split == "train":
            # camera-frame poses (y down, e.g. pseudo-labels): the root back to a y-up frame, one more "clip"
            extra = torch.as_tensor(extra_poses, dtype=torch.float32).reshape(-1, 24, 3).clone()
            extra[:, 0] = roma.rotmat_to_rotvec(_rot(0, torch.tensor(np.pi)) @ roma.rotvec_to_rotmat(extra[:, 0]))
            parts.append(extra)
            self.clips = names + ["extra_poses"]
        self.poses = torch.cat(parts)
        lengths = torch.tensor([len(p) for p in parts])
        self.clip_start, self.clip_length = torch.cumsum(lengths, 0) - lengths, lengths
        observed = {SMPL_JOINT_NAMES.index(n) for n in OBSERVED_JOINTS}
        self.unobserved = torch.tensor([j for j in range(1, 24) if j not in observed])
        self.groups = [torch.tensor([SMPL_JOINT_NAMES.index(n) for n in g]) for g in _GROUPS.values()]
        self.spine_group = list(_GROUPS).index("spine")
        self.observed = torch.tensor(sorted(observed))
        J = SMPL_JOINT_NAMES.index
        self.wide_groups = [torch.tensor([J(f"{s}_{n}") for s in ("left", "right")]) for n in ("hip", "shoulder", "knee", "elbow")]
        self.wide_groups[0] = torch.cat([self.wide_groups[0], torch.tensor([J("left_ankle"), J("right_ankle")])])
        self._prior = None

    def _prior_samples(self, n: int, g: torch.Generator) -> torch.Tensor:
        """[n, 69] body poses drawn from the shipped pose prior (mixture over its features, wide Gaussians for
        the rest), clipped to its joint ranges."""
        if self._prior is None:
            from fitlib.body.priors import load_pose_prior

            p = load_pose_prior()
            L = p.gmm_prec_chol  # precision = L L^T
            d = L.shape[-1]
            log_w = p.gmm_log_norm - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1) + 0.5 * d * np.log(2 * np.pi)
            self._prior = (p, torch.softmax(log_w, 0), torch.linalg.inv(L).transpose(-1, -2))
        p, w, cov_chol_t = self._prior
        d = p.gmm_means.shape[1]
        k = torch.multinomial(w, n, replacement=True, generator=g)
        z = torch.randn(n, d, generator=g)
        f_mix = p.gmm_means[k] + (cov_chol_t[k] @ z[..., None])[..., 0]  # x = mu + L^-T z has covariance (L L^T)^-1
        f_rest = torch.randn(n, 69 - d, generator=g) * p.rest_std
        pose = torch.linalg.solve(p.transform, torch.cat([f_mix, f_rest], -1).T).T
        lo, hi = p.joint_ranges.unbind(-1)
        return torch.maximum(torch.minimum(pose, hi), lo)

    # ------------------------------------------------------------------ poses
    def _frames(self, B: int, g: torch.Generator) -> torch.Tensor:
        """[B] frame indices: a clip chosen uniformly (``clip_balance``) or by its length, then a frame of it.
        The climbing clips hold most frames; by length, training and validation would be mostly climbing."""
        balance = 1.0 if self.split == "val" else self.config.clip_balance
        if balance == 0:
            return torch.randint(len(self.poses), (B,), generator=g)
        clip = torch.randint(len(self.clip_length), (B,), generator=g)
        frame = self.clip_start[clip] + (torch.rand(B, generator=g) * self.clip_length[clip]).long()
        if balance == 1:
            return frame
        by_clip = torch.rand(B, generator=g) < balance
        return torch.where(by_clip, frame, torch.randint(len(self.poses), (B,), generator=g))

    def _poses(self, B: int, g: torch.Generator, rng: np.random.Generator) -> torch.Tensor:
        """[B, 24, 3] body-frame poses (root: the mocap's world orientation, y up)."""
        cfg = self.config
        aug = cfg.augment and self.split == "train"
        pick = lambda: self.poses[self._frames(B, g)]  # noqa: E731
        pose = pick().clone()
        if not aug:
            return pose
        u = torch.rand(B, generator=g)
        mixed = (u >= cfg.p_mocap) & (u < cfg.p_mocap + cfg.p_mixed)
        rand = u >= cfg.p_mocap + cfg.p_mixed
        for gi, idx in enumerate(self.groups):  # limb/spine mixing: each group from its own frame
            src = pick()
            if torch.rand((), generator=g) < 0.5:
                src = mirror_pose(src.reshape(B, 72)).reshape(B, 24, 3)
            take = mixed & (torch.rand(B, generator=g) < 0.8)
            rows = torch.nonzero(take).flatten()
            pose[rows[:, None], idx[None]] = src[rows[:, None], idx[None]]
            if gi == self.spine_group:
                pose[rows, 0] = src[rows, 0]
            elif cfg.p_anatomical_limbs > 0:  # a limb within its joints' ranges of motion instead
                anat = torch.nonzero(mixed & (torch.rand(B, generator=g) < cfg.p_anatomical_limbs)).flatten()
                if len(anat):
                    ga = torch.Generator().manual_seed(int(rng.integers(2**31)))
                    limb = sample_anatomical_poses(len(anat), ga, dtype=pose.dtype)
                    pose[anat[:, None], idx[None]] = limb[:, idx]
        if cfg.mocap_jitter > 0:
            jit = torch.randn(B, len(self.observed), 3, generator=g) * cfg.mocap_jitter
            pose[:, self.observed] = roma.rotvec_composition([pose[:, self.observed], jit])
        n_rand = int(rand.sum())
        if n_rand:
            rp = sample_plausible_poses(n_rand, int(rng.integers(2**31)), dtype=torch.float32)
            lo, hi = cfg.random_pose_scale
            scale = lo + (hi - lo) * torch.rand(n_rand, 1, 1, generator=g)
            if cfg.wide_scale is None:
                rp = rp * scale
            else:
                for idx, top in zip(self.wide_groups, cfg.wide_scale):  # wider ranges per group, anatomical bounds
                    wide = torch.rand(n_rand, 1, 1, generator=g) < 0.5
                    s_g = lo + (top - lo) * torch.rand(n_rand, 1, 1, generator=g)
                    rp[:, idx] = rp[:, idx] * torch.where(wide, s_g, scale)
                others = torch.tensor([j for j in range(24) if all(j not in w for w in self.wide_groups)])
                rp[:, others] = rp[:, others] * scale
            if cfg.p_anatomical > 0:
                anat = torch.rand(n_rand, generator=g) < cfg.p_anatomical
                n_anat = int(anat.sum())
                if n_anat:
                    ga = torch.Generator().manual_seed(int(rng.integers(2**31)))
                    rp[anat] = sample_anatomical_poses(n_anat, ga, dtype=rp.dtype)
            if cfg.p_prior > 0:
                prior = torch.rand(n_rand, generator=g) < cfg.p_prior
                n_prior = int(prior.sum())
                if n_prior:
                    rp[prior, 1:] = self._prior_samples(n_prior, g).view(n_prior, 23, 3)
            root = self.poses[self._frames(n_rand, g), 0]  # upright-ish roots from real frames
            root_keep = torch.rand(n_rand, 1, generator=g) < 0.5
            rp[:, 0] = torch.where(root_keep, root, torch.zeros_like(root))
            pose[rand] = rp
        mirror = torch.rand(B, generator=g) < cfg.p_mirror
        pose[mirror] = mirror_pose(pose[mirror].reshape(-1, 72)).reshape(-1, 24, 3)
        if cfg.unobserved_scale > 0:
            noise = sample_plausible_poses(B, int(rng.integers(2**31)), dtype=torch.float32)
            scale = cfg.unobserved_scale * torch.rand(B, 1, 1, generator=g)
            add = torch.where(rand[:, None, None], torch.zeros_like(noise), noise * scale)
            pose[:, self.unobserved] = pose[:, self.unobserved] + add[:, self.unobserved]
        return pose

    # ------------------------------------------------------------------ batch
    def batch(self, step: int, batch_size: int) -> Batch:
        """Batch number ``step`` (a pure function of ``(seed, step, batch_size)``)."""
        cfg = self.config
        aug = cfg.augment and self.split == "train"
        stream = 0 if self.split == "train" else 1
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, stream, step]).generate_state(1)[0]))
        rng = np.random.default_rng([self.seed, stream, step])
        B = batch_size
        pose = self._poses(B, g, rng)
        # orientation: random heading about the world vertical, body tilt, then the camera's pitch and roll
        R_body = roma.rotvec_to_rotmat(pose[:, 0])
        yaw = _rot(1, (torch.rand(B, generator=g) * 2 - 1) * np.pi)
        tilt_std = np.radians(cfg.tilt_deg) if aug else 0.0
        tilt = _rot(0, torch.randn(B, generator=g) * tilt_std) @ _rot(2, torch.randn(B, generator=g) * tilt_std)
        lo, hi = np.radians(cfg.camera_pitch_deg)
        pitch = _rot(0, -(lo + (hi - lo) * torch.rand(B, generator=g)))
        roll = _rot(2, torch.randn(B, generator=g) * np.radians(cfg.camera_roll_deg))
        flip = _rot(0, torch.full((B,), np.pi))  # y up -> OpenCV y down, facing the camera
        R_cam = roll @ pitch @ flip
        pose = pose.clone()
        pose[:, 0] = roma.rotmat_to_rotvec(R_cam @ tilt @ yaw @ R_body)
        # shape
        wide = (torch.rand(B, 1, generator=g) < cfg.betas_wide) & torch.tensor(aug)
        betas = torch.randn(B, 10, generator=g) * torch.where(wide, 1.5, 1.0)
        # camera
        size_id = rng.integers(len(IMAGE_SIZES), size=B)
        hw = torch.tensor([IMAGE_SIZES[i] for i in size_id], dtype=torch.float32)
        diag = hw.norm(dim=-1)
        u = torch.rand(B, generator=g)
        flo, fhi = np.log(cfg.focal_range)
        other = torch.exp(flo + (fhi - flo) * torch.rand(B, generator=g))
        factor = torch.where(u < cfg.focal_cliff, 1.0, torch.where(u < cfg.focal_cliff + cfg.focal_3dpw, 0.89, other))
        if not aug:
            factor = torch.ones(B)
        f = diag * factor
        K = torch.zeros(B, 3, 3)
        K[:, 0, 0] = K[:, 1, 1] = f
        K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = hw[:, 1] / 2, hw[:, 0] / 2, 1.0
        # placement: pelvis depth and where it projects
        dlo, dhi = np.log(cfg.distance if aug else (2.8, 6.0))
        depth = torch.exp(dlo + (dhi - dlo) * torch.rand(B, generator=g))
        partial = (torch.rand(B, generator=g) < cfg.p_partial) & torch.tensor(aug)
        uv = torch.where(partial[:, None], -0.15 + 1.3 * torch.rand(B, 2, generator=g),
                         0.25 + 0.5 * torch.rand(B, 2, generator=g)) * hw.flip(-1)
        pelvis = torch.cat([(uv - K[:, :2, 2]) / f[:, None] * depth[:, None], depth[:, None]], -1)
        transl = pelvis - self.model.rest_joints(betas)[:, 0]
        # detector-like 2D, through the benchmark's corruption in the detector layout, then to the network's layout
        det = self.detector_layout
        with torch.no_grad():
            out = self.model(pose, betas, transl, layout=det.name)
        xy = project(out.keypoints, K)
        kp_det = np.zeros((B, len(det), 3))
        for i in np.unique(size_id):
            rows = np.nonzero(size_id == i)[0]
            if aug:
                c = Corruption(noise=rng.uniform(*cfg.noise), swap=rng.uniform(*cfg.swap), drop=rng.uniform(*cfg.drop),
                               low_conf=rng.uniform(*cfg.low_conf))
            else:
                c = Corruption()
            kp_det[rows] = corrupt_keypoints(xy[rows].double().numpy(), rng, c, IMAGE_SIZES[i], det.names)
        behind = out.keypoints[..., 2].numpy() < 0.1
        kp_det[behind] = 0.0
        if det.name == "body25":  # a COCO-17 detector for the others: no foot points
            feet = [det.index(n) for n in FEET_NAMES]
            kp_det[np.ix_(np.nonzero(rng.random(B) >= cfg.p_feet)[0], feet)] = 0.0
        kp = convert_keypoints(kp_det, det.name, self.layout)
        gt_det = np.concatenate([xy.double().numpy(), np.where(behind, 0.0, 1.0)[..., None]], -1)
        gt2d = convert_keypoints(gt_det, det.name, self.layout)
        t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        ones = torch.ones(B, dtype=torch.bool)
        world = self._world(pose, betas, transl, rng) if cfg.p_world > 0 else None
        return Batch(t(kp), t(gt2d), K, hw, pose, betas, transl, out.joints, ones, ones, ones, ones, world=world)

    def _world(self, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """[B, W, 3] simulated world landmarks (NaN rows for the 1 - ``p_world`` samples without)."""
        cfg, B = self.config, len(pose)
        with torch.no_grad():
            pts = self.model(pose, betas, transl, layout="world19").keypoints.double().numpy()
        sigma = rng.uniform(*cfg.world_sigma, size=B)[:, None, None]
        w = simulate_world_landmarks(pts, WORLD_POINTS, rng, WorldNoise(sigma=sigma))
        w[rng.random(B) >= cfg.p_world] = np.nan
        return torch.as_tensor(w, dtype=torch.float32)
