"""Build fitlib's free default body model ("open") from the ``anny`` package.

anny (Apache-2.0 code, CC0 MakeHuman assets) is a rigged, phenotype-driven body
model with 104 bones and 13,718 vertices.  This module converts it into exactly
the layout of an SMPL model file (``v_template``, ``shapedirs``, ``posedirs``,
``J_regressor``, ``weights``, ``kintree_table``, ``f``) with SMPL's semantics
(see :mod:`fitlib.body.skeleton`), so that ``smplx.SMPL`` loads it unchanged:

1. anny's frame (z up, -y forward) is rotated into SMPL's (y up, z forward).
2. Each anny bone belongs to one SMPL joint (:data:`BONE_TO_JOINT`); skinning
   weights are summed per joint; joint centres are bone heads.
3. Every sampled body is put into SMPL's T-pose (arms horizontal, palms down)
   through anny's own forward pass.
4. Shape: PCA of T-posed adults sampled from anny's calibrated distribution,
   scaled so that the 10 betas are N(0, 1).
5. Joint regressor: a signed ridge regression over the vertices near each
   joint, rows summing to one (anny's joints are not convex combinations of
   skin vertices).
6. Pose blend shapes: least squares on the residual between anny's posed
   meshes and 24-joint skinning, each vertex restricted to the joints that
   skin it.
7. anny's COCO keypoint regressor (17 + 6 foot points) is carried over,
   compacted to a few vertices per keypoint so that fitting touches few
   vertices.

The build is deterministic for a given seed and takes a few minutes on two
CPU cores; :func:`fitlib.body.model.load_body_model` runs it on first use and
caches the result (see :func:`open_model_path`) with a SHA-256 record that is verified
before every load (:func:`cache_problem`); a damaged cache is rebuilt, saying why.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fitlib.io.atomic import atomic_write
from fitlib.io.cache import cache_dir
from fitlib.io.safe_load import file_sha256
from fitlib.body.skeleton import NUM_BETAS, SMPL_JOINT_NAMES, SMPL_PARENTS, global_rotations

_log = logging.getLogger(__name__)

BUILD_VERSION = 1
"""Bumped whenever the recipe changes, so that stale caches are rebuilt."""

ANNY_TO_SMPL_FRAME = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""``p_smpl = C @ p_anny``: anny is z up, -y forward; SMPL is y up, z forward."""

_SIDE_BONES = {
    "pelvis": "pelvis", "upperleg01": "hip", "upperleg02": "hip", "lowerleg01": "knee",
    "lowerleg02": "knee", "foot": "ankle", "toe": "foot", "clavicle": "collar",
    "shoulder01": "collar", "upperarm01": "shoulder", "upperarm02": "shoulder",
    "lowerarm01": "elbow", "lowerarm02": "elbow", "wrist": "wrist", "metacarpal": "wrist",
    "finger1": "wrist", "finger": "hand", "eye": "head",
}
_CENTRAL_BONES = {
    "root": "pelvis", "spine05": "pelvis", "spine04": "pelvis", "spine03": "spine1",
    "spine02": "spine2", "spine01": "spine3", "neck01": "neck", "neck02": "neck",
    "neck03": "neck", "head": "head",
}


def bone_to_joint(label: str) -> int:
    """Index of the SMPL joint that an anny bone (e.g. ``"lowerarm02.L"``) moves with.

    The thumb (``finger1-*``) and the metacarpals belong to the wrist, the other
    fingers to the hand joint, all toes to the foot joint, the eyes to the head.
    """
    if label in _CENTRAL_BONES:
        return SMPL_JOINT_NAMES.index(_CENTRAL_BONES[label])
    stem, _, side = label.partition(".")
    prefix = {"L": "left_", "R": "right_"}.get(side)
    part = _SIDE_BONES.get(stem) or _SIDE_BONES.get(stem.split("-")[0]) \
        or _SIDE_BONES.get(stem.rstrip("0123456789-").rstrip("0123456789"))
    if prefix is None or part is None:
        raise ValueError(f"anny bone {label!r} has no SMPL joint")
    if part in ("pelvis", "head"):
        return SMPL_JOINT_NAMES.index(part)
    return SMPL_JOINT_NAMES.index(prefix + part)


def _joint_bones(labels: list[str]) -> list[list[int]]:
    """For each SMPL joint, the anny bones whose mean head is its centre."""
    side_rule = {"hand": [f"finger{i}-1" for i in (2, 3, 4, 5)],
                 "foot": [f"toe{i}-1" for i in (1, 2, 3, 4, 5)],
                 "hip": ["upperleg01"], "knee": ["lowerleg01"], "ankle": ["foot"],
                 "collar": ["clavicle"], "shoulder": ["upperarm01"], "elbow": ["lowerarm01"],
                 "wrist": ["wrist"]}
    central = {"pelvis": "root", "spine1": "spine03", "spine2": "spine02", "spine3": "spine01",
               "neck": "neck01", "head": "head"}
    out = []
    for name in SMPL_JOINT_NAMES:
        if name in central:
            out.append([labels.index(central[name])])
        else:
            side, _, part = name.partition("_")
            suffix = ".L" if side == "left" else ".R"
            out.append([labels.index(stem + suffix) for stem in side_rule[part]])
    return out


@dataclass
class BuildConfig:
    """Settings of the open-model build; all of them enter the cache key."""

    seed: int = 0
    num_shapes: int = 2000
    """Adults sampled for the shape PCA and the joint regressor."""
    num_pose_samples: int = 1500
    """(shape, pose) pairs used to learn the pose blend shapes."""
    min_age: float = 18.0
    max_age: float = 80.0
    """Range of anny's morphological age (years) of the sampled adults."""
    regressor_vertices: int = 1000
    """Vertices nearest each joint used by its regressor row."""
    regressor_ridge: float = 1e-6
    posedirs_ridge: float = 1e-3
    keypoint_vertices: int = 32
    """Vertices kept per keypoint when compacting anny's COCO regressor."""
    batch_size: int = 100

    def key(self) -> str:
        text = repr((BUILD_VERSION, sorted(self.__dict__.items())))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class BuildReport:
    """Quality figures measured while building (lengths in metres)."""

    seconds: float = 0.0
    variance_explained: float = 0.0
    regressor_error_mean: float = 0.0
    regressor_error_max: float = 0.0
    keypoint_compaction_error_mean: float = 0.0
    extra: dict = field(default_factory=dict)


def open_model_path(config: BuildConfig | None = None) -> Path:
    """Path of the cached open model file for ``config`` (it may not exist yet)."""
    config = config or BuildConfig()
    return cache_dir() / f"open_smpl_{config.key()}.pkl"


def _anny_model(dtype: torch.dtype = torch.float64):
    try:
        import anny
    except ImportError as exc:  # pragma: no cover - anny is a hard dependency
        raise ImportError("building the open body model needs the 'anny' package") from exc
    model = anny.Anny(pose_parameterization="world-orient", skinning_method="lbs")
    return model.to(dtype=dtype)


def _frame_from(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Orthonormal frames [..., 3, 3] whose columns are (primary, secondary⊥, cross)."""
    a = torch.nn.functional.normalize(primary, dim=-1)
    b = secondary - (secondary * a).sum(-1, keepdim=True) * a
    b = torch.nn.functional.normalize(b, dim=-1)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


def _align(p: torch.Tensor, q: torch.Tensor, p_target: torch.Tensor, q_target: torch.Tensor) -> torch.Tensor:
    """Rotation [..., 3, 3] taking direction ``p`` to ``p_target`` and ``q`` (orthogonalised) towards ``q_target``."""
    return _frame_from(p_target.expand_as(p), q_target.expand_as(q)) @ _frame_from(p, q).transpose(-1, -2)


class _AnnyPoser:
    """Poses anny's 104 bones from SMPL joint rotations, in SMPL's T-pose convention."""

    def __init__(self, model) -> None:
        self.model = model
        self.labels = list(model.bone_labels)
        self.dtype = model.dtype
        self.segment = torch.tensor([bone_to_joint(b) for b in self.labels])
        self.joint_bones = _joint_bones(self.labels)
        self.C = torch.tensor(ANNY_TO_SMPL_FRAME, dtype=self.dtype)

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def rest(self, phenotypes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """anny's rest (A-pose) bones for a batch of phenotypes."""
        return self.model(phenotype_kwargs=phenotypes)

    def tpose_rotations(self, rest_heads: torch.Tensor) -> torch.Tensor:
        """World rotations [B, 104, 3, 3] (anny frame) taking anny's A-pose to SMPL's T-pose.

        The upper arm, forearm and hand of each side are turned to lie along the
        body's left/right axis, palms down (index knuckle forward), elbow
        flexion axis vertical.  All other bones keep their rest orientation.
        """
        B = rest_heads.shape[0]
        delta = torch.eye(3, dtype=self.dtype).repeat(B, len(self.labels), 1, 1)
        head = lambda name: rest_heads[:, self.index(name)]  # noqa: E731
        forward = torch.tensor([0.0, -1.0, 0.0], dtype=self.dtype)
        for side, sign in (("L", 1.0), ("R", -1.0)):
            out = torch.tensor([sign, 0.0, 0.0], dtype=self.dtype)
            shoulder, elbow, wrist = head(f"upperarm01.{side}"), head(f"lowerarm01.{side}"), head(f"wrist.{side}")
            knuckles = torch.stack([head(f"finger{i}-1.{side}") for i in (2, 3, 4, 5)], 1).mean(1)
            side_vec = head(f"finger2-1.{side}") - head(f"finger5-1.{side}")  # pinky -> index knuckle
            upper, fore, hand = elbow - shoulder, wrist - elbow, knuckles - wrist
            elbow_axis = torch.cross(upper, fore, dim=-1)
            r_upper = _align(upper, elbow_axis, out, torch.cross(out, forward, dim=-1))
            r_fore = _align(fore, side_vec, out, forward)
            r_hand = _align(hand, side_vec, out, forward)
            for i, label in enumerate(self.labels):
                stem, _, s = label.partition(".")
                if s != side:
                    continue
                if stem.startswith("upperarm"):
                    delta[:, i] = r_upper
                elif stem.startswith("lowerarm"):
                    delta[:, i] = r_fore
                elif stem.startswith(("wrist", "finger", "metacarpal")):
                    delta[:, i] = r_hand
        return delta

    def pose(self, phenotypes: dict[str, torch.Tensor], rest_poses: torch.Tensor, tpose_delta: torch.Tensor,
             joint_rotations: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Pose anny; returns vertices [B, V, 3] and joints [B, 24, 3] in SMPL's frame.

        Args:
            rest_poses: anny's rest bone poses [B, 104, 4, 4].
            tpose_delta: from :meth:`tpose_rotations`, [B, 104, 3, 3].
            joint_rotations: global rotations of SMPL's 24 joints in SMPL's frame
                [B, 24, 3, 3] (from forward kinematics of an SMPL pose), or None
                for the T-pose.
        """
        world = rest_poses.clone()
        rot = tpose_delta @ rest_poses[..., :3, :3]
        if joint_rotations is not None:
            g = self.C.T @ joint_rotations @ self.C
            rot = g[:, self.segment] @ rot
        world[..., :3, :3] = rot
        out = self.model(pose_parameters=world, phenotype_kwargs=phenotypes)
        heads = out["bone_poses"][..., :3, 3]
        joints = torch.stack([heads[:, idx].mean(1) for idx in self.joint_bones], 1)
        return {"vertices": out["vertices"] @ self.C.T, "joints": joints @ self.C.T}


def _sample_phenotypes(model, n: int, config: BuildConfig, generator_seed: int) -> dict[str, torch.Tensor]:
    from anny.shape_distribution import SimpleShapeDistribution

    ages = torch.distributions.Uniform(torch.tensor(config.min_age, dtype=model.dtype),
                                       torch.tensor(config.max_age, dtype=model.dtype))
    with torch.random.fork_rng():
        torch.manual_seed(generator_seed)
        _, phen = SimpleShapeDistribution(model, morphological_age_distribution=ages).sample(n)
    return phen


def _batches(phen: dict[str, torch.Tensor], size: int):
    n = next(iter(phen.values())).shape[0]
    for start in range(0, n, size):
        yield start, {k: v[start:start + size] for k, v in phen.items()}


def sample_plausible_poses(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random anatomically plausible SMPL poses [n, 24, 3] (axis-angle, radians, pelvis at zero).

    Each joint rotates by a uniformly random angle up to a joint-specific
    bound about a random axis; knees and elbows only flex, about their hinge
    axes.  Used to learn and to check pose blend shapes, not as a prior.
    """
    g = torch.Generator().manual_seed(seed)
    limits = {"hip": 50, "knee": 100, "spine": 15, "ankle": 25, "foot": 10, "neck": 25, "collar": 10,
              "head": 25, "shoulder": 60, "elbow": 110, "wrist": 35, "hand": 15}
    pose = torch.zeros(n, 24, 3, dtype=dtype)
    for j, name in enumerate(SMPL_JOINT_NAMES[1:], start=1):
        part = name.split("_")[-1].rstrip("123")
        angle = torch.rand(n, generator=g, dtype=dtype) * np.deg2rad(limits[part])
        if part == "knee":
            axis = torch.tensor([1.0, 0.0, 0.0], dtype=dtype).expand(n, 3)
        elif part == "elbow":
            axis = torch.tensor([0.0, -1.0 if name.startswith("left") else 1.0, 0.0], dtype=dtype).expand(n, 3)
        else:
            axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=dtype), dim=-1)
        pose[:, j] = axis * angle[:, None]
    return pose


def _fit_joint_regressor(verts: torch.Tensor, joints: torch.Tensor, k: int, ridge: float) -> torch.Tensor:
    """Signed local regressor [24, V], rows summing to one, from T-posed bodies.

    Args:
        verts: [N, V, 3] vertices, joints: [N, 24, 3] joint centres, metres.
    """
    n, V, _ = verts.shape
    mean_v, mean_j = verts.mean(0), joints.mean(0)
    reg = torch.zeros(24, V, dtype=verts.dtype)
    for j in range(24):
        idx = torch.cdist(mean_j[j:j + 1], mean_v)[0].topk(k, largest=False).indices
        A = verts[:, idx].permute(0, 2, 1).reshape(n * 3, k) - mean_j[j].repeat(n)[:, None]
        b = (joints[:, j] - mean_j[j]).reshape(-1)
        M = A.T @ A
        M = M + ridge * M.diagonal().mean() * torch.eye(k, dtype=M.dtype)
        Minv_Atb = torch.linalg.solve(M, A.T @ b)
        Minv_1 = torch.linalg.solve(M, torch.ones(k, dtype=M.dtype))
        mu = (1 - Minv_Atb.sum()) / Minv_1.sum()
        reg[j, idx] = Minv_Atb + mu * Minv_1
    return reg


def _skin_transforms(joints: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """SMPL's relative joint transforms [B, 24, 4, 4] for rest joints [B, 24, 3] and pose [B, 24, 3]."""
    from smplx.lbs import batch_rigid_transform, batch_rodrigues

    rot = batch_rodrigues(pose.reshape(-1, 3)).reshape(pose.shape[0], 24, 3, 3)
    parents = torch.tensor(SMPL_PARENTS)
    return batch_rigid_transform(rot, joints, parents, dtype=joints.dtype)[1]


def _pose_features(pose: torch.Tensor) -> torch.Tensor:
    """SMPL's pose-corrective features [B, 207]: (R_j - I) of joints 1..23, row-major."""
    from smplx.lbs import batch_rodrigues

    rot = batch_rodrigues(pose[:, 1:].reshape(-1, 3)).reshape(pose.shape[0], 23, 3, 3)
    return (rot - torch.eye(3, dtype=pose.dtype)).reshape(pose.shape[0], 207)


def _fit_posedirs(residual: torch.Tensor, features: torch.Tensor, weights: torch.Tensor, ridge: float) -> torch.Tensor:
    """Pose blend shapes [V, 3, 207] by least squares, each vertex on its skinning joints only.

    Args:
        residual: unposed anny vertices minus the T-posed ones [N, V, 3].
        features: [N, 207] from :func:`_pose_features`.
        weights: skinning weights [V, 24].
    """
    V = residual.shape[1]
    posedirs = torch.zeros(V, 3, 207, dtype=residual.dtype)
    masks = weights[:, 1:] > 1e-6
    groups: dict[bytes, list[int]] = {}
    for v, m in enumerate(masks.numpy()):
        groups.setdefault(m.tobytes(), []).append(v)
    f = features.reshape(-1, 23, 9)
    for key, verts in groups.items():
        joints = np.flatnonzero(np.frombuffer(key, dtype=bool))
        if len(joints) == 0:
            continue
        F = f[:, joints].reshape(f.shape[0], -1)
        G = F.T @ F
        G = G + ridge * G.diagonal().mean() * torch.eye(G.shape[0], dtype=G.dtype)
        idx = torch.tensor(verts)
        rhs = F.T @ residual[:, idx].reshape(F.shape[0], -1)
        sol = torch.linalg.solve(G, rhs).reshape(len(joints), 9, len(verts), 3)
        cols = (torch.tensor(joints)[:, None] * 9 + torch.arange(9)).reshape(-1)
        posedirs[idx[:, None, None], torch.arange(3)[None, :, None], cols[None, None, :]] = \
            sol.reshape(-1, len(verts), 3).permute(1, 2, 0)
    return posedirs


def _compact_regressor(dense: torch.Tensor, posed: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse keypoint regressor (indices, weights), each [K, k], rows summing to one.

    Chooses the ``k`` vertices of largest weight per keypoint and refits their
    weights by least squares so that they reproduce the dense regressor on
    the posed meshes ``posed`` [N, V, 3].
    """
    n = posed.shape[0]
    idx = dense.abs().topk(k, dim=1).indices
    weights = torch.zeros(dense.shape[0], k, dtype=dense.dtype)
    target = torch.einsum("kv,nvc->nkc", dense, posed)
    for i in range(dense.shape[0]):
        centre = target[:, i]
        A = (posed[:, idx[i]] - centre[:, None]).permute(0, 2, 1).reshape(n * 3, k)
        M = A.T @ A
        M = M + 1e-6 * M.diagonal().mean() * torch.eye(k, dtype=M.dtype)
        Minv_1 = torch.linalg.solve(M, torch.ones(k, dtype=M.dtype))
        weights[i] = Minv_1 / Minv_1.sum()  # min ||A w|| s.t. sum(w) = 1
    return idx, weights


def build_open_model(config: BuildConfig | None = None, progress: bool = True) -> tuple[dict, BuildReport]:
    """Convert anny into an SMPL-layout model dict (numpy arrays) and a quality report.

    The dict holds SMPL's keys (``v_template [V,3]``, ``shapedirs [V,3,10]``,
    ``posedirs [V,3,207]``, ``J_regressor [24,V]``, ``weights [V,24]``,
    ``kintree_table [2,24]``, ``f [F,3]``) in metres, plus
    ``keypoint_regressor`` (anny's COCO-17 + 6 foot points: ``names``,
    ``vertex_ids [K,k]``, ``weights [K,k]``) and ``fitlib_meta``.
    """
    import anny

    config = config or BuildConfig()
    start = time.perf_counter()
    log = print if progress else (lambda *a, **k: None)
    torch.manual_seed(config.seed)
    model = _anny_model()
    poser = _AnnyPoser(model)
    report = BuildReport()

    # 1-3: T-posed adults.
    phen = _sample_phenotypes(model, config.num_shapes, config, config.seed)
    verts, joints = [], []
    for s, batch in _batches(phen, config.batch_size):
        rest = poser.rest(batch)
        delta = poser.tpose_rotations(rest["rest_bone_heads"])
        out = poser.pose(batch, rest["rest_bone_poses"], delta)
        verts.append(out["vertices"])
        joints.append(out["joints"])
    verts, joints = torch.cat(verts), torch.cat(joints)
    log(f"[open model] T-posed {len(verts)} adults ({time.perf_counter() - start:.0f} s)")

    # 4: shape space.
    n, V, _ = verts.shape
    v_template = verts.mean(0)
    X = (verts - v_template).reshape(n, -1)
    _, S, Vt = torch.linalg.svd(X, full_matrices=False)
    var = S**2
    report.variance_explained = float(var[:NUM_BETAS].sum() / var.sum())
    scale = S[:NUM_BETAS] / np.sqrt(n - 1)
    shapedirs = (Vt[:NUM_BETAS] * scale[:, None]).T.reshape(V, 3, NUM_BETAS)
    # Fix PCA's sign ambiguity deterministically: the largest y displacement of each direction is positive.
    ys = shapedirs[:, 1, :]
    signs = torch.sign(ys.gather(0, ys.abs().argmax(0, keepdim=True)))[0]
    shapedirs = shapedirs * signs

    # 5: joint regressor.
    J_regressor = _fit_joint_regressor(verts, joints, config.regressor_vertices, config.regressor_ridge)
    err = (torch.einsum("jv,nvc->njc", J_regressor, verts) - joints).norm(dim=-1)
    report.regressor_error_mean, report.regressor_error_max = float(err.mean()), float(err.max())
    log(f"[open model] shape PCA {report.variance_explained:.4%}; joint regressor error "
        f"{report.regressor_error_mean * 1000:.2f} mm mean ({time.perf_counter() - start:.0f} s)")

    # 2: skinning weights summed per SMPL joint.
    weights = torch.zeros(V, 24, dtype=verts.dtype)
    bone_joint = poser.segment[model.vertex_bone_indices.long()]
    weights.index_put_((torch.arange(V)[:, None].expand_as(bone_joint), bone_joint),
                       model.vertex_bone_weights.to(verts.dtype), accumulate=True)
    weights = weights / weights.sum(1, keepdim=True)

    # 6: pose blend shapes, from (shape, pose) pairs.
    g = torch.Generator().manual_seed(config.seed + 1)
    which = torch.randint(0, n, (config.num_pose_samples,), generator=g)
    poses = sample_plausible_poses(config.num_pose_samples, config.seed + 2)
    sub = {k: v[which] for k, v in phen.items()}
    residual, posed_all = [], []
    for s, batch in _batches(sub, config.batch_size):
        b = next(iter(batch.values())).shape[0]
        pose = poses[s:s + b]
        rest = poser.rest(batch)
        delta = poser.tpose_rotations(rest["rest_bone_heads"])
        out = poser.pose(batch, rest["rest_bone_poses"], delta, global_rotations(pose))
        t_verts = verts[which[s:s + b]]
        A = _skin_transforms(torch.einsum("jv,nvc->njc", J_regressor, t_verts), pose)
        T = torch.einsum("vj,njab->nvab", weights, A)
        x = out["vertices"] - T[..., :3, 3]
        unposed = torch.linalg.solve(T[..., :3, :3], x.unsqueeze(-1)).squeeze(-1)
        residual.append(unposed - t_verts)
        posed_all.append(out["vertices"])
    residual = torch.cat(residual)
    posedirs = _fit_posedirs(residual, _pose_features(poses), weights, config.posedirs_ridge)
    fitted = torch.einsum("np,vcp->nvc", _pose_features(poses), posedirs)
    report.extra["posedirs_residual_before_mm"] = float(residual.norm(dim=-1).mean() * 1000)
    report.extra["posedirs_residual_after_mm"] = float((residual - fitted).norm(dim=-1).mean() * 1000)
    log(f"[open model] pose blend shapes: unposed residual {report.extra['posedirs_residual_before_mm']:.2f}"
        f" -> {report.extra['posedirs_residual_after_mm']:.2f} mm ({time.perf_counter() - start:.0f} s)")

    # 7: keypoints.
    kreg = anny.KeypointsRegressor.coco(model)
    dense = kreg.regression_weights.to(verts.dtype)
    posed_all = torch.cat(posed_all)
    kp_idx, kp_w = _compact_regressor(dense, posed_all, config.keypoint_vertices)
    kp_err = (torch.einsum("ks,nksc->nkc", kp_w, posed_all[:, kp_idx])
              - torch.einsum("kv,nvc->nkc", dense, posed_all)).norm(dim=-1)
    report.keypoint_compaction_error_mean = float(kp_err.mean())

    faces = model.get_triangular_faces().cpu().numpy().astype(np.int64)
    report.seconds = time.perf_counter() - start
    data = {
        "v_template": v_template.numpy(),
        "shapedirs": shapedirs.numpy(),
        "posedirs": posedirs.numpy().astype(np.float32),
        "J_regressor": J_regressor.numpy(),
        "weights": weights.numpy(),
        "kintree_table": np.array([[4294967295 if p < 0 else p for p in SMPL_PARENTS], list(range(24))],
                                  dtype=np.int64),
        "f": faces,
        "keypoint_regressor": {"names": list(kreg.labels), "vertex_ids": kp_idx.numpy(),
                               "weights": kp_w.numpy()},
        "fitlib_meta": {"source": f"anny {anny.__version__}", "build_version": BUILD_VERSION,
                        "config": dict(config.__dict__), "shape_std": scale.numpy()},
    }
    log(f"[open model] built in {report.seconds:.0f} s")
    return data, report


CACHE_FREE_BYTES = 300 * 2**20
"""Free space the cache folder needs before a build starts (the model is ~45 MB, written through a
temporary copy; the margin keeps a nearly full disk from failing at the end of a 3-minute build)."""


def checksum_path(path: Path) -> Path:
    """The checksum record written next to a cached model file: ``<name>.sha256`` (JSON: ``sha256``,
    ``size`` in bytes, ``build_key``)."""
    return path.with_name(path.name + ".sha256")


def save_model_file(data: dict, path: Path) -> None:
    """Write a model dict as a plain pickle (no chumpy), atomically (:func:`fitlib.io.atomic_write`), and
    its checksum record (:func:`checksum_path`) after it, so that builders running at once and a killed
    build never leave a partial file (the last rename wins; every builder writes the same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = pickle.dumps(data, protocol=4)
    with atomic_write(path) as fh:
        fh.write(payload)
    _write_checksum(path, hashlib.sha256(payload).hexdigest(), len(payload))


def _write_checksum(path: Path, digest: str, size: int) -> None:
    key = path.stem.rpartition("_")[2]
    record = {"sha256": digest, "size": size, "build_key": key}
    with atomic_write(checksum_path(path)) as fh:
        fh.write(json.dumps(record).encode())


def cached_model_sha256(path: Path) -> str | None:
    """The SHA-256 recorded for a cached model file, or None without a (readable) record."""
    try:
        record = json.loads(checksum_path(path).read_text())
        digest = record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def cache_problem(path: Path) -> str | None:
    """Why the cached model file ``path`` cannot be used as it is, or None if it verifies.

    The file must match the size and SHA-256 of its checksum record. A file without a record (written by a
    fitlib from before records) is adopted if it reads as a valid model (allow-list unpickler, layout
    checks); its record is then written.
    """
    from fitlib.body.model_file import read_model_file

    if not path.is_file():
        return "is missing"
    record_file = checksum_path(path)
    if not record_file.exists():
        try:
            read_model_file(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read is a reason to rebuild
            return f"has no checksum record and does not load ({type(exc).__name__}: {exc})"
        try:
            _write_checksum(path, file_sha256(path), path.stat().st_size)
            _log.warning("fitlib: the cached open body model %s was written without a checksum (an older fitlib); "
                        "it loads and passes the model checks: its checksum is now recorded", path)
        except OSError:
            pass  # a read-only cache: it verified structurally, use it as it is
        return None
    try:
        record = json.loads(record_file.read_text())
        digest, size = record["sha256"], record["size"]
        if not isinstance(digest, str) or not isinstance(size, int):
            raise TypeError("wrong types")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"has an unreadable checksum record {record_file.name} ({type(exc).__name__}: {exc})"
    actual = path.stat().st_size
    if actual != size:
        return f"is {actual} bytes, but {size} bytes were written"
    if file_sha256(path) != digest:
        return "does not match its recorded SHA-256 (the file was damaged or replaced)"
    return None


def check_cache_writable(folder: Path) -> None:
    """Raise ValueError, before a build starts, if the cache folder cannot take the open model (not
    writable, or less than :data:`CACHE_FREE_BYTES` free), saying to set ``FITLIB_CACHE_DIR``."""
    hint = ("the open body model (about 45 MB) is built once (about 3 minutes) and cached there: set "
            "FITLIB_CACHE_DIR to a writable folder with some free space")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".fitlib-write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"fitlib's cache folder {folder} is not writable ({exc.strerror or exc}); {hint}") from None
    free = shutil.disk_usage(folder).free
    if free < CACHE_FREE_BYTES:
        raise ValueError(f"fitlib's cache folder {folder} has only {free / 2**20:.0f} MiB free; {hint}")


def ensure_open_model(config: BuildConfig | None = None, progress: bool = True, rebuild: bool = False) -> Path:
    """Return the path of the cached open model, verified against its checksum (:func:`cache_problem`),
    building it first if it is missing, does not verify, or ``rebuild`` is set (e.g. because the cached
    file turned out unreadable). Why a present file is rebuilt is logged (stderr by default).

    Raises:
        ValueError: the cache folder cannot take the model (checked before the build starts).
    """
    path = open_model_path(config)
    if not rebuild:
        problem = cache_problem(path)
        if problem is None:
            return path
        if path.exists():
            _log.warning("fitlib: the cached open body model %s %s: building it again (about 3 minutes)", path, problem)
    check_cache_writable(path.parent)
    data, _ = build_open_model(config, progress=progress)
    save_model_file(data, path)
    return path
