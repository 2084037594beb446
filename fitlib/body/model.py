"""One body-model interface for the open model and real SMPL files.

:func:`load_body_model` returns a :class:`BodyModel` whatever the source
(``"open"``, an official SMPL pickle, an ``.npz``); nothing downstream asks
which one it has.  :meth:`BodyModel.forward` has two paths that agree to
1e-5 m:

* ``vertices=True``: the full mesh through ``smplx.SMPL``;
* ``vertices=False`` (for fitting): joints and the requested keypoints only.
  Shape-dependent rest joints are precomputed as linear in betas, forward
  kinematics runs level by level over the tree, and a keypoint defined on
  vertices is skinned as an exact blend over its few (keypoint, joint) pairs
  (skinning is linear in the joint transforms), not vertex by vertex.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import roma
import smplx
import torch
from smplx.utils import Struct

from fitlib.body.layouts import DERIVED_POINTS, KeypointLayout, get_layout
from fitlib.body.model_file import read_model_file
from fitlib.body.skeleton import NUM_BETAS, SMPL_JOINT_NAMES, SMPL_PARENTS

SMPL_VERTEX_POINTS: dict[str, int] = {
    "nose": 332, "left_eye": 2800, "right_eye": 6260, "left_ear": 583, "right_ear": 4071,
    "left_big_toe": 3216, "left_small_toe": 3226, "left_heel": 3387,
    "right_big_toe": 6617, "right_small_toe": 6624, "right_heel": 6787,
    "left_thumb": 2746, "left_index": 2319, "left_pinky": 2673,
    "right_thumb": 6191, "right_index": 5782, "right_pinky": 6133,
}
"""Vertex ids of named surface points on SMPL's 6890-vertex mesh (the ones SMPLify-X and OpenPose fits use)."""

SMPL_JOINT_POINTS: dict[str, str] = {
    f"{side}_{part}": f"{side}_{joint}"
    for side in ("left", "right")
    for part, joint in (("shoulder", "shoulder"), ("elbow", "elbow"), ("wrist", "wrist"), ("hip", "hip"),
                        ("knee", "knee"), ("ankle", "ankle"))
}
"""Named points taken from SMPL joints when a model has no better definition."""

POINT_ALIASES: dict[str, str] = {
    "left_eye_inner": "left_eye", "left_eye_outer": "left_eye", "right_eye_inner": "right_eye",
    "right_eye_outer": "right_eye", "left_foot_index": "left_big_toe", "right_foot_index": "right_big_toe",
    "left_pinky": "smpl_left_hand", "left_index": "smpl_left_hand", "left_thumb": "smpl_left_hand",
    "right_pinky": "smpl_right_hand", "right_index": "smpl_right_hand", "right_thumb": "smpl_right_hand",
}
"""Approximations used when a model does not define a point itself."""


@dataclass
class BodyOutput:
    """Output of :meth:`BodyModel.forward`, in metres (camera or world frame as the inputs).

    Attributes:
        joints: [..., 24, 3] SMPL joints.
        keypoints: [..., K, 3] points of the requested layout (zeros where
            ``keypoint_mask`` is False), or None.
        keypoint_mask: [K] bool, which layout points this model can produce.
        vertices: [..., V, 3] mesh vertices, or None on the fast path.
    """

    joints: torch.Tensor
    keypoints: torch.Tensor | None = None
    keypoint_mask: torch.Tensor | None = None
    vertices: torch.Tensor | None = None


@dataclass
class _KeypointMap:
    """How a layout's points come from a model.

    A point is ``joint_weights @ joints`` plus a fixed combination ``vertex_weights`` of
    posed vertices.  Skinning is linear in the joint transforms, so the vertex part is
    also ``sum_j R_j a_kj + c_kj t_j`` over (keypoint k, joint j) pairs, where ``a_kj``
    blends the pair's template, shape and pose-corrective offsets: the fast path never
    skins single vertices.
    """

    joint_weights: torch.Tensor  # [K, 24]
    vertex_ids: torch.Tensor  # [U] vertices the points use
    vertex_weights: torch.Tensor  # [K, U]
    mask: torch.Tensor  # [K] bool, points the model can produce
    mask_float: torch.Tensor  # [K, 1] the same as 0/1 in the model's dtype
    pair_point: torch.Tensor  # [Q] keypoint of each (keypoint, joint) pair
    pair_joint: torch.Tensor  # [Q] joint of each pair (SMPL order)
    pair_joint_lo: torch.Tensor  # [Q] the same in the body model's level order
    pair_weight: torch.Tensor  # [Q] c_kj = sum_u w_ku W_uj
    pair_template: torch.Tensor  # [Q, 3] sum_u w_ku W_uj v_template_u
    pair_shapedirs: torch.Tensor  # [Q, 3, 10]
    pair_posedirs_lo: torch.Tensor  # [207, Q * 3], rows in level order (joints 1-23 as the fast path orders them)
    pair_ancestry: torch.Tensor | None = None  # [K, Q, 24], built on first use by keypoint_jacobian


class _SMPL(smplx.SMPL):
    """``smplx.SMPL`` reading only the 10 shape directions fitlib uses: with its own 300 it prints a
    warning for every 10-beta model (silencing that by redirecting ``sys.stdout`` would be process-wide
    and not thread-safe)."""

    SHAPE_SPACE_DIM = NUM_BETAS


def _kinematic_levels(parents: tuple[int, ...]) -> list[list[int]]:
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    return [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]


class BodyModel(torch.nn.Module):
    """An SMPL-layout body model (24 joints, 10 betas), differentiable, any device.

    Build it with :func:`load_body_model`.  Attributes: ``name``,
    ``num_vertices``, ``faces`` ([F, 3] int64 numpy), ``parents``.
    """

    def __init__(self, data: dict, name: str, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.name = name
        data = dict(data)
        self.smpl = _SMPL(model_path="", data_struct=Struct(**data), num_betas=NUM_BETAS, dtype=dtype,
                          create_betas=False, create_global_orient=False, create_body_pose=False,
                          create_transl=False)
        if self.smpl.num_betas < NUM_BETAS:
            raise ValueError(f"{name}: the model has only {self.smpl.num_betas} shape directions, fitlib needs 10")
        self.faces = np.asarray(data["f"], dtype=np.int64)
        self.num_vertices = int(self.smpl.v_template.shape[0])
        self.parents = SMPL_PARENTS
        jreg, vt, sd = self.smpl.J_regressor, self.smpl.v_template, self.smpl.shapedirs
        self.register_buffer("joint_template", jreg @ vt)  # [24, 3]
        self.register_buffer("joint_shapedirs", torch.einsum("jv,vcb->jcb", jreg, sd))  # [24, 3, 10]
        # Forward kinematics runs level by level over the tree, in "level order" (joints sorted by depth),
        # so that each level is a slice; a level's parents are a view of the previous level (a slice
        # or a broadcast) except where the tree branches unevenly (an index).
        levels = _kinematic_levels(SMPL_PARENTS)
        order = [j for lvl in levels for j in lvl]
        pos = {j: i for i, j in enumerate(order)}
        self._level_slices, self._level_parents = [], []
        start = 0
        for d, lvl in enumerate(levels):
            self._level_slices.append((start, start + len(lvl)))
            start += len(lvl)
            if d == 0:
                self._level_parents.append(None)
                continue
            prev0 = self._level_slices[d - 1][0]
            par = [pos[SMPL_PARENTS[j]] - prev0 for j in lvl]
            if len(set(par)) == 1:
                self._level_parents.append(("expand", par[0], len(lvl)))
            elif par == list(range(par[0], par[0] + len(par))):
                self._level_parents.append(("slice", par[0], par[0] + len(par)))
            else:
                self.register_buffer(f"_level_parents_{d}", torch.tensor(par), persistent=False)
                self._level_parents.append(("index", f"_level_parents_{d}"))
        self.register_buffer("_order", torch.tensor(order), persistent=False)
        self._parent_lo = [-1] + [pos[SMPL_PARENTS[j]] for j in order[1:]]  # parent of each level-order joint
        self.register_buffer("_parent_lo_t", torch.tensor(self._parent_lo[1:]), persistent=False)
        ancestors = torch.eye(24, dtype=torch.bool)  # (j, i): i is j or one of its ancestors (level order)
        for i in range(1, 24):
            ancestors[i] |= ancestors[self._parent_lo[i]]
        self.register_buffer("_ancestors", ancestors, persistent=False)
        self.register_buffer("_unorder", torch.argsort(torch.tensor(order)), persistent=False)
        # Rest joints and parent offsets in level order are linear in betas: one affine map [B, 10] -> [B, 48 * 3].
        to_offset = torch.eye(24, dtype=jreg.dtype)
        for i, j in enumerate(order[1:], 1):
            to_offset[i, pos[SMPL_PARENTS[j]]] = -1.0
        rest_and_offset = torch.cat([torch.eye(24, dtype=jreg.dtype), to_offset])[:, order]  # [48, 24]
        self.register_buffer("_lo_bias", (rest_and_offset @ self.joint_template).reshape(-1), persistent=False)
        self.register_buffer("_lo_dirs", torch.einsum("ij,jcb->bic", rest_and_offset, self.joint_shapedirs)
                             .reshape(NUM_BETAS, -1), persistent=False)
        self.register_buffer("_rest_shapedirs_lo", self.joint_shapedirs.index_select(0, torch.tensor(order)),
                             persistent=False)  # [24, 3, 10] rest joints' shape directions, level order
        self.register_buffer("_eye3", torch.eye(3, dtype=dtype), persistent=False)
        self.register_buffer("_bottom_row", torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=dtype), persistent=False)
        self._level_sizes = [e - s for s, e in self._level_slices]
        self._points = self._point_definitions(data)
        self._maps: dict[tuple, _KeypointMap] = {}

    # ----------------------------------------------------------------- points
    def _point_definitions(self, data: dict) -> dict[str, dict[int, float]]:
        """Named points as {source: weight}; source j < 24 is a joint, 24 + v is vertex v."""
        points: dict[str, dict[int, float]] = {f"smpl_{n}": {j: 1.0} for j, n in enumerate(SMPL_JOINT_NAMES)}
        for name, joint in SMPL_JOINT_POINTS.items():
            points[name] = {SMPL_JOINT_NAMES.index(joint): 1.0}
        regressor = data.get("keypoint_regressor")  # checked by fitlib.body.model_file.check_model_dict
        if regressor is not None:
            ids, weights = np.asarray(regressor["vertex_ids"]), np.asarray(regressor["weights"])
            for k, name in enumerate(regressor["names"]):
                points[str(name)] = {24 + int(v): float(w) for v, w in zip(ids[k], weights[k])}
        elif self.num_vertices == 6890:
            for name, v in SMPL_VERTEX_POINTS.items():
                points[name] = {24 + v: 1.0}
        return points

    def _resolve(self, name: str) -> dict[int, float] | None:
        if name in self._points:
            return self._points[name]
        if name in POINT_ALIASES:
            return self._resolve(POINT_ALIASES[name])
        if name in DERIVED_POINTS:
            parts = [self._resolve(p) for p in DERIVED_POINTS[name]]
            if all(p is not None for p in parts):
                out: dict[int, float] = {}
                for p in parts:
                    for s, w in p.items():
                        out[s] = out.get(s, 0.0) + w / len(parts)
                return out
        return None

    def keypoint_map(self, layout: str | KeypointLayout) -> _KeypointMap:
        """How this model produces ``layout``: joint weights, the vertices used, and a mask of producible points."""
        layout = get_layout(layout)
        key = (layout.name, layout.names)
        if key not in self._maps:
            defs = [self._resolve(n) for n in layout.names]
            vids = sorted({s - 24 for d in defs if d for s in d if s >= 24})
            col = {v: i for i, v in enumerate(vids)}
            jw = torch.zeros(len(layout), 24, dtype=self.joint_template.dtype)
            vw = torch.zeros(len(layout), len(vids), dtype=self.joint_template.dtype)
            for k, d in enumerate(defs):
                for s, w in (d or {}).items():
                    if s < 24:
                        jw[k, s] += w
                    else:
                        vw[k, col[s - 24]] += w
            mask = torch.tensor([d is not None for d in defs])
            dev = self.joint_template.device
            ids = torch.tensor(vids, dtype=torch.long, device=dev)
            vw = vw.to(dev)
            W = self.smpl.lbs_weights[ids]  # [U, 24]
            c = vw @ W  # [K, 24]
            # a pair exists where any vertex contributes (signed weights may sum to zero on a joint)
            k_idx, j_idx = torch.nonzero(vw.abs() @ W > 0, as_tuple=True)
            pw = vw[k_idx] * W[:, j_idx].T  # [Q, U] per-pair vertex weights
            posedirs = self.smpl.posedirs.view(207, -1, 3)[:, ids]  # [207, U, 3]
            # posedirs' rows are 9 per joint 1-23 in SMPL order; the fast path feeds them in level order
            rows = (9 * (self._order[1:, None] - 1) + torch.arange(9, device=dev)).flatten()
            self._maps[key] = _KeypointMap(
                jw.to(dev), ids, vw, mask.to(dev), mask.to(dev, vw.dtype)[:, None], k_idx, j_idx,
                self._unorder[j_idx], c[k_idx, j_idx], pw @ self.smpl.v_template[ids],
                torch.einsum("qu,ucb->qcb", pw, self.smpl.shapedirs[ids]),
                torch.einsum("qu,puc->pqc", pw, posedirs).reshape(207, -1)[rows])
        return self._maps[key]

    def _apply(self, fn, recurse=True):
        self._maps = {}
        return super()._apply(fn, recurse)

    # ---------------------------------------------------------------- forward
    def forward(self, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor | None = None, *,
                layout: str | KeypointLayout | None = None, vertices: bool = False,
                validate: bool = True) -> BodyOutput:
        """Pose the model.

        Args:
            pose: [..., 24, 3] or [..., 72] axis-angle (radians); joint 0 is the global orientation.
            betas: [..., 10] shape coefficients (broadcast against the pose's batch dims).
            transl: [..., 3] translation in metres, or None.
            layout: a keypoint layout to produce, or None.
            vertices: compute the full mesh (through ``smplx.SMPL``); otherwise the fast
                joints-and-keypoints path.
            validate: check shapes and finiteness (ValueError naming the problem). An
                optimiser that checked its inputs once passes False: pose [B, 24, 3],
                betas [B, 10], transl [B, 3] or None, in the model's dtype.
        Returns:
            :class:`BodyOutput` with the same leading batch dims.
        """
        if validate:
            pose, betas, transl, batch = self._check_inputs(pose, betas, transl)
        else:
            batch = pose.shape[:1]
        kmap = self.keypoint_map(layout) if layout is not None else None
        if pose.shape[0] == 0:  # nobody: empty outputs (smplx cannot reshape an empty batch)
            empty = lambda *shape: pose.new_zeros(*batch, *shape)  # noqa: E731
            return BodyOutput(empty(24, 3), empty(len(kmap.mask), 3) if kmap else None, kmap.mask if kmap else None,
                              empty(self.num_vertices, 3) if vertices else None)
        if vertices:
            out = self.smpl(global_orient=pose[:, 0], body_pose=pose[:, 1:].reshape(-1, 69), betas=betas)
            joints, verts = out.joints[:, :24], out.vertices
            surface = None
            if kmap is not None and kmap.vertex_ids.numel():
                surface = torch.einsum("ku,buc->bkc", kmap.vertex_weights, verts[:, kmap.vertex_ids])
        else:
            joints, surface = self._fast(pose, betas, kmap)
            verts = None
        keypoints = None
        if kmap is not None:
            keypoints = torch.einsum("kj,bjc->bkc", kmap.joint_weights, joints)
            if surface is not None:
                keypoints = keypoints + surface
        if transl is not None:
            t = transl[:, None]
            joints = joints + t
            keypoints = keypoints + t * kmap.mask_float if keypoints is not None else None
            verts = verts + t if verts is not None else None
        shape = lambda x: None if x is None else x.reshape(*batch, *x.shape[1:])  # noqa: E731
        return BodyOutput(shape(joints), shape(keypoints), kmap.mask if kmap else None, shape(verts))

    def _check_inputs(self, pose, betas, transl):
        if not isinstance(pose, torch.Tensor) or not isinstance(betas, torch.Tensor):
            raise TypeError("pose and betas must be torch tensors")
        if pose.shape[-1] == 72:
            pose = pose.reshape(*pose.shape[:-1], 24, 3)
        if pose.ndim < 2 or pose.shape[-2:] != (24, 3):
            raise ValueError(f"pose must have shape [..., 24, 3] or [..., 72], got {tuple(pose.shape)}")
        if betas.ndim < 1 or betas.shape[-1] != NUM_BETAS:
            raise ValueError(f"betas must have shape [..., {NUM_BETAS}], got {tuple(betas.shape)}")
        if transl is not None and (transl.ndim < 1 or transl.shape[-1] != 3):
            raise ValueError(f"transl must have shape [..., 3], got {tuple(transl.shape)}")
        shapes = (pose.shape[:-2], betas.shape[:-1], transl.shape[:-1] if transl is not None else ())
        try:
            batch = torch.broadcast_shapes(*shapes)
        except RuntimeError:
            raise ValueError(f"batch dims of pose {tuple(shapes[0])}, betas {tuple(shapes[1])} and transl "
                             f"{tuple(shapes[2])} do not broadcast") from None
        for name, value in (("pose", pose), ("betas", betas), ("transl", transl)):
            if value is not None and not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or infinite values")
        dtype = self.joint_template.dtype
        pose = pose.to(dtype).expand(*batch, 24, 3).reshape(-1, 24, 3)
        betas = betas.to(dtype).expand(*batch, NUM_BETAS).reshape(-1, NUM_BETAS)
        if transl is not None:
            transl = transl.to(dtype).expand(*batch, 3).reshape(-1, 3)
        return pose, betas, transl, batch

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """Rest-pose (T-pose) joints [..., 24, 3] in metres for betas [..., 10]."""
        return self.joint_template + torch.einsum("jcb,...b->...jc", self.joint_shapedirs, betas)

    def _kinematics(self, pose: torch.Tensor, betas: torch.Tensor):
        """Local rotations ``rot_lo`` [B, 24, 3, 3], rest joints ``rest_lo`` [B, 24, 3] and world transforms
        ``world_lo`` [B, 24, 3, 4] (rotation | joint position, no translation), all in level order.

        Gathers use ``index_select`` (on CPU many times faster than advanced indexing, forward and backward)."""
        B = pose.shape[0]
        rot_lo = roma.rotvec_to_rotmat(pose.index_select(1, self._order))  # [B, 24, 3, 3]
        lin = torch.addmm(self._lo_bias, betas, self._lo_dirs).view(B, 48, 3)
        rest_lo, offsets = lin[:, :24], lin[:, 24:]
        # local transforms as 4x4 (rotation | offset, then 0 0 0 1): a level's world transforms [B, n, 3, 4]
        # are its parents' [B, n, 3, 4] times its local ones, one batched product per level
        local = torch.cat([torch.cat([rot_lo, offsets[..., None]], -1), self._bottom_row.expand(B, 24, 1, 4)], -2)
        levels = torch.split(local, self._level_sizes, dim=1)
        world = [levels[0][:, :, :3]]
        for loc, par in zip(levels[1:], self._level_parents[1:]):
            pw = world[-1]
            if par[0] == "expand":
                pw = pw[:, par[1]:par[1] + 1].expand(-1, par[2], -1, -1)
            elif par[0] == "slice":
                pw = pw if (par[1], par[2]) == (0, pw.shape[1]) else pw[:, par[1]:par[2]]
            else:
                pw = pw.index_select(1, getattr(self, par[1]))
            world.append(pw @ loc)
        return rot_lo, rest_lo, torch.cat(world, 1)

    def _pair_points(self, rot_lo, rest_lo, world_lo, betas, kmap: _KeypointMap):
        """Each (keypoint, joint) pair's skinned point [B, Q, 3] and its offset ``a - c rest_j`` [B, Q, 3]."""
        B = rot_lo.shape[0]
        feats = (rot_lo[:, 1:] - self._eye3).reshape(B, 207)
        a = kmap.pair_template + torch.einsum("qcb,nb->nqc", kmap.pair_shapedirs, betas) \
            + (feats @ kmap.pair_posedirs_lo).view(B, -1, 3)  # [B, Q, 3] blended rest offsets
        # skinning a point blended over joint j: R_j (a - c rest_j) + c J_j = [R_j | J_j] (a - c rest_j, c)
        q = kmap.pair_joint_lo
        c = kmap.pair_weight[:, None]
        offset = a - c * rest_lo.index_select(1, q)
        h = torch.cat([offset, c.expand(B, -1, 1)], -1)  # [B, Q, 4]
        return (world_lo.index_select(1, q) @ h[..., None])[..., 0], offset

    def _fast(self, pose: torch.Tensor, betas: torch.Tensor, kmap: _KeypointMap | None):
        """Joints [B, 24, 3] and the keypoints' surface part [B, K, 3] (or None), without the mesh.

        Works in level order throughout (:meth:`_kinematics`)."""
        B = pose.shape[0]
        rot_lo, rest_lo, world_lo = self._kinematics(pose, betas)
        joints = world_lo[..., 3].index_select(1, self._unorder)
        if kmap is None or kmap.pair_joint.numel() == 0:
            return joints, None
        x, _ = self._pair_points(rot_lo, rest_lo, world_lo, betas, kmap)
        return joints, x.new_zeros(B, kmap.mask.shape[0], 3).index_add(1, kmap.pair_point, x)

    def _pair_ancestry(self, kmap: _KeypointMap) -> torch.Tensor:
        """[K, Q, 24]: 1 where pair q belongs to keypoint k and level-order joint i is its joint or an ancestor."""
        if kmap.pair_ancestry is None:
            onehot = torch.zeros(kmap.mask.shape[0], kmap.pair_point.numel(), dtype=kmap.pair_weight.dtype,
                                 device=kmap.pair_weight.device)
            onehot[kmap.pair_point, torch.arange(kmap.pair_point.numel(), device=onehot.device)] = 1.0
            kmap.pair_ancestry = onehot[:, :, None] * self._ancestors.to(onehot).index_select(0, kmap.pair_joint_lo)[None]
        return kmap.pair_ancestry

    def keypoint_jacobian(self, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor,
                          layout: str | KeypointLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoints and their exact Jacobian with respect to all 85 parameters, in closed form.

        Args:
            pose: [B, 24, 3] axis-angle (radians); betas: [B, 10]; transl: [B, 3] (metres).
            layout: the keypoints to produce.
        Returns:
            ``keypoints`` [B, K, 3] (as :meth:`forward` gives them) and ``jacobian`` [B, K, 3, 85], the
            columns being the pose's 72 numbers (SMPL joint order, 3 per joint), the 10 betas, then the
            translation. Rotations: perturbing joint i's axis-angle by d turns its subtree by
            ``w = R_world_i Jr(theta_i) d`` (``Jr`` the right Jacobian of SO(3)), which moves a point x
            by ``w x (x - J_i)``; pose blend shapes add ``R_world_j d(a)/d(theta)`` for every joint;
            the rest is linear in betas and translation. Matches autograd (tested); about 10x cheaper
            than a batched backward per keypoint coordinate.
        """
        kmap = self.keypoint_map(layout)
        B, dtype, dev = pose.shape[0], pose.dtype, pose.device
        K = kmap.mask.shape[0]
        rot_lo, rest_lo, world_lo = self._kinematics(pose, betas)
        Rw, Jw = world_lo[..., :3], world_lo[..., 3]  # [B, 24, 3, 3], [B, 24, 3] in level order
        W = Rw @ _so3_right_jacobian(pose.index_select(1, self._order))  # world turn per unit d: [B, 24, 3, 3]
        anc = self._ancestors.to(dtype)  # [24, 24] (j, i): i is j or an ancestor of j, level order
        # d J_j / d betas: J_j is the sum over its chain of R_world(parent(i)) offset_i (offset_root = J_root)
        doff = self._lo_dirs.view(NUM_BETAS, 48, 3)[:, 24:].permute(1, 2, 0)  # [24, 3, 10]
        parent_rot = torch.cat([self._eye3.expand(B, 1, 3, 3), Rw.index_select(1, self._parent_lo_t)], 1)
        dJ = torch.einsum("ji,bicn->bjcn", anc, parent_rot @ doff)  # [B, 24, 3, 10]
        jac_rot = torch.zeros(B, K, 3, 24, 3, dtype=dtype, device=dev)
        jac_beta = torch.zeros(B, K, 3, NUM_BETAS, dtype=dtype, device=dev)
        points = torch.zeros(B, K, 3, dtype=dtype, device=dev)
        if kmap.pair_joint.numel():
            q, c = kmap.pair_joint_lo, kmap.pair_weight
            x, offset = self._pair_points(rot_lo, rest_lo, world_lo, betas, kmap)  # [B, Q, 3]
            points = points.index_add(1, kmap.pair_point, x)
            # rigid motion of the subtrees above each pair's joint i: w_i x (x_q - c_q J_i), summed over the
            # keypoint's pairs: w_i x (X_ki - C_ki J_i), X_ki = sum_q anc(j_q, i) x_q, C_ki = sum_q anc(j_q, i) c_q
            sel = self._pair_ancestry(kmap)  # [K, Q, 24]
            X = torch.einsum("kqi,bqc->bkic", sel, x) - torch.einsum("kqi,q->ki", sel, c)[None, :, :, None] * Jw[:, None]
            jac_rot = jac_rot + _turn(W, X).permute(0, 1, 4, 2, 3)  # [B, K, 3 (xyz), 24, 3]
            # pose blend shapes: d a_q / d theta_i through vec(R_i), for the 23 non-root joints
            # d R_i / d d_k = R_i [Jr(theta_i) e_k]x
            jr = _so3_right_jacobian(pose.index_select(1, self._order[1:]))  # [B, 23, 3, 3]
            dR = rot_lo[:, 1:, None] @ _skew(jr.transpose(-1, -2))  # [B, 23, 3 (d), 3, 3]
            P = kmap.pair_posedirs_lo.view(23, 9, -1, 3)  # [23, 9, Q, 3]
            blend = torch.einsum("bqxc,ifqc->bqxif", Rw.index_select(1, q), P)  # [B, Q, 3, 23, 9]
            blend = blend.new_zeros(B, K, 3, 23, 9).index_add(1, kmap.pair_point, blend)
            jac_rot[:, :, :, 1:] += torch.einsum("bkxif,bidf->bkxid", blend, dR.flatten(-2))
            dshape = kmap.pair_shapedirs - c[:, None, None] * self._rest_shapedirs_lo.index_select(0, q)
            jb = Rw.index_select(1, q) @ dshape + c[None, :, None, None] * dJ.index_select(1, q)
            jac_beta = jac_beta.index_add(1, kmap.pair_point, jb)
        if kmap.joint_weights.abs().sum() > 0:  # points on joints: J_j moves with its strict ancestors
            jw = kmap.joint_weights.index_select(1, self._order)  # [K, 24] level order
            points = points + torch.einsum("kj,bjc->bkc", jw, Jw)
            strict = anc - torch.eye(24, dtype=dtype, device=dev)  # J_j does not move with its own rotation
            Xj = torch.einsum("kj,ji->ki", jw, strict)[None, :, :, None] * Jw[:, None]  # [B, K, 24 (i), 3]
            Xj = torch.einsum("kj,ji,bjc->bkic", jw, strict, Jw) - Xj
            jac_rot = jac_rot + _turn(W, Xj).permute(0, 1, 4, 2, 3)
            jac_beta = jac_beta + torch.einsum("kj,bjcn->bkcn", jw, dJ)
        jac_rot = jac_rot.index_select(3, self._unorder).reshape(B, K, 3, 72)
        mask = kmap.mask_float  # [K, 1]
        eye = torch.eye(3, dtype=dtype, device=dev).expand(B, K, 3, 3) * mask[None, :, :, None]
        keypoints = points + transl[:, None] * mask
        return keypoints, torch.cat([jac_rot, jac_beta, eye], -1)


def _turn(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """[B, K, 24, 3 (d), 3 (xyz)]: ``W[:, i, :, d] x X[:, k, i]``, the motion of points ``X`` [B, K, 24, 3]
    (relative to joint i) when joint i turns by the world rotations ``W`` [B, 24, 3, 3] per unit d."""
    a = W.transpose(-1, -2)[:, None]  # [B, 1, 24, 3 (d), 3]
    b = X[:, :, :, None]  # [B, K, 24, 1, 3]
    ax, ay, az = a.unbind(-1)
    bx, by, bz = b.unbind(-1)
    return torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], -1)


def _skew(v: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] cross-product matrices of vectors [..., 3]."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*v.shape, 3)


def _so3_right_jacobian(rotvec: torch.Tensor) -> torch.Tensor:
    """Right Jacobians [..., 3, 3] of SO(3)'s exponential at axis-angles [..., 3]:
    ``Exp(t + d) = Exp(t) Exp(Jr(t) d)`` to first order."""
    angle2 = rotvec.pow(2).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = angle2 < 1e-8
    angle = angle2.clamp(min=1e-16).sqrt()
    a = torch.where(small, 0.5 - angle2 / 24, (1 - torch.cos(angle)) / angle2.clamp(min=1e-16))
    b = torch.where(small, 1.0 / 6 - angle2 / 120, (angle - torch.sin(angle)) / (angle2 * angle).clamp(min=1e-24))
    K = _skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye - a * K + b * (K @ K)


def _model_path(model: str | Path, gender: str) -> tuple[Path, str]:
    if str(model) == "open":
        from fitlib.body.open_model import ensure_open_model

        return ensure_open_model(), "open"
    path = Path(model)
    if path.is_dir():
        g = gender.upper()
        short = {"NEUTRAL": "neutral", "MALE": "m", "FEMALE": "f"}.get(g, g.lower())
        candidates = [path / f"SMPL_{g}.pkl", path / f"SMPL_{g}.npz", path / "smpl" / f"SMPL_{g}.pkl",
                      path / f"basicModel_{short}_lbs_10_207_0_v1.0.0.pkl",
                      path / f"basicmodel_{short}_lbs_10_207_0_v1.1.0.pkl"]
        for c in candidates:
            if c.is_file():
                return c, f"smpl_{gender.lower()}"
        raise FileNotFoundError(f"no SMPL {gender} model in {path} (looked for {[c.name for c in candidates]})")
    if not path.is_file():
        raise FileNotFoundError(f"body model {str(model)!r} is neither 'open' nor an existing file or folder")
    return path, path.stem


MIN_VERTICES = 6890
"""Fewest vertices a model file may have: smplx's SMPL takes face and foot points from SMPL's vertex ids."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` (None: CPU) as a :class:`torch.device`; ValueError for a name torch does not know or a
    device this machine does not have (e.g. ``"tpu"``, or ``"cuda"`` without CUDA)."""
    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown torch device {device!r} (use e.g. 'cpu', 'cuda', 'cuda:1', 'mps')") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__})")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    return dev


def load_body_model(model: str | Path = "open", gender: str = "neutral", device: str | torch.device | None = None,
                    dtype: torch.dtype = torch.float32) -> BodyModel:
    """Load a body model.

    Args:
        model: ``"open"`` (the free model built from anny on first use and cached, verified against
            its recorded SHA-256 on load), a path to an SMPL ``.pkl`` (chumpy not needed) or ``.npz``,
            or a folder holding ``SMPL_{NEUTRAL,MALE,FEMALE}.pkl``. Files are read with fitlib's
            allow-list unpickler: they cannot run code (``docs/SECURITY.md``).
        gender: which file to pick from a folder (``neutral``, ``male``, ``female``).
        device, dtype: where the model lives.
    Raises:
        FileNotFoundError for a missing file; ValueError for a corrupt one, an unknown device, or an
        open-model cache folder that cannot be written.
    """
    if not isinstance(gender, str) or gender.lower() not in ("neutral", "male", "female"):
        raise ValueError(f"gender must be 'neutral', 'male' or 'female', got {gender!r}")
    dev = resolve_device(device)
    path, name = _model_path(model, gender.lower())
    try:
        data = _read_cached(str(path), *_stamp(path))
    except Exception as exc:  # noqa: BLE001 - for the open model any failure means: build it again
        if name != "open":
            raise
        # the cached open model verified but does not load (a recipe change, a fault after the check): ours to rebuild
        from fitlib.body.open_model import _log, ensure_open_model

        _log.warning("fitlib: the cached open body model %s does not load (%s: %s): building it again", path,
                     type(exc).__name__, exc)
        path = ensure_open_model(rebuild=True)
        data = _read_cached(str(path), *_stamp(path))
    if len(data["v_template"]) < MIN_VERTICES:
        raise ValueError(f"{path} has {len(data['v_template'])} vertices: an SMPL-layout model needs at least "
                         f"{MIN_VERTICES} (smplx reads SMPL's face and foot vertices from it)")
    return BodyModel(data, name=name, dtype=dtype).to(dev)


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def model_key(model: str | Path = "open") -> tuple:
    """A hashable identity of a model argument: ``("open",)``, or the resolved path and, for a file,
    its modification time (a replaced file is a new model)."""
    if str(model) == "open":
        return ("open",)
    path = Path(model).resolve()
    return (str(path), path.stat().st_mtime_ns if path.is_file() else None)


def model_identity(model: str | Path = "open", gender: str = "neutral") -> dict:
    """What identifies a body model in a result's provenance (JSON-ready).

    ``{"model": "open", "build_key": <recipe key>, "sha256": <cached file's recorded SHA-256 or None>}``
    for the open model (nothing is built); ``{"model": <name>, "file": <file name>, "sha256": <content
    SHA-256>}`` for an SMPL file or folder (the file picked for ``gender``).

    Raises:
        FileNotFoundError: the file or folder does not exist.
    """
    if str(model) == "open":
        from fitlib.body.open_model import BuildConfig, cached_model_sha256, open_model_path

        config = BuildConfig()
        return {"model": "open", "build_key": config.key(), "sha256": cached_model_sha256(open_model_path(config))}
    path, name = _model_path(model, gender.lower())
    return {"model": name, "file": path.name, "sha256": _file_digest(str(path.resolve()), *_stamp(path))}


@lru_cache(maxsize=16)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    from fitlib.io.safe_load import file_sha256

    return file_sha256(path)


def shared_body_model(model: str | Path = "open", device: str | torch.device | None = None) -> BodyModel:
    """The process's :class:`BodyModel` for ``model`` on ``device`` (float32), loaded on first use and
    shared after: by :func:`fitlib.fit`, :class:`fitlib.FitResult`'s meshes and overlays. Treat it as
    read-only (``.to()`` on it would move it for everyone); :func:`load_body_model` gives a model of one's own.
    Loading is serialised by a lock, so threads asking at once share one model."""
    key, dev = model_key(model), str(resolve_device(device))
    with _shared_lock:
        return _shared(key, dev)


_shared_lock = threading.Lock()


@lru_cache(maxsize=8)
def _shared(key: tuple, device: str) -> BodyModel:
    return load_body_model(key[0], device=device)


@lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int) -> dict:
    """Parsed model files, shared (read-only) between the BodyModels built from them."""
    return read_model_file(path)
