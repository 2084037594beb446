"""Refinement from an initial estimate: a batched, per-person Levenberg-Marquardt solve of the robust
reprojection + priors + init-pull objective, written as residuals.

Used by :class:`fitlib.fitting.Fitter` whenever the caller gives an initial body pose (a regressor's
output, the previous video frame, a stored pseudo-label). All 85 parameters of a person (orientation 3,
body pose 69, betas 10, translation 3) move jointly; each person keeps its own damping and stops on its
own criterion (:mod:`fitlib.fitting.lm`), and a step is accepted only if it lowers that person's
objective, so the result is never worse than the start under this objective.

The objective per person is ``sum(r ** 2)`` over the residuals

* data: for each keypoint ``j`` with weight ``w_j`` (:func:`fitlib.losses.clean_keypoints`) and
  canonical-pixel error ``e_j`` (:func:`fitlib.losses.canonical_scale`),
  ``r_j = e_j * sigma * sqrt(W_data w_j / (sigma² + |e_j|²))``, whose squares sum to
  ``W_data w_j rho(|e_j|²)`` with ``rho`` the Geman-McClure function of the fitter's data term;
* pose prior: the max-mixture form of the shipped mixture (SMPLify's): the whitened distance to the
  best component ``k``, the independent Gaussian features, and a constant that makes components of
  different weight comparable, so that ``sum r²`` is ``W_pose (min_k NLL_k + const)``;
  ``limits`` and ``l2`` priors have residual forms too;
* angle: ``sqrt(W_angle)`` times the elbow / knee hyper-extension over its scale;
* shape: ``sqrt(W_shape / 2) betas`` (``W_shape`` times :func:`fitlib.body.priors.shape_prior`);
* init pull: ``sqrt(W_pull) (body_pose - body_pose_init)`` and ``sqrt(W_init_shape) (betas - betas_init)``
  (the estimate as a prior centred on itself: no pull at the start, so an exact start stays exact);
* world landmarks (people whose detector gave BlazePose's 3D world landmarks, ``W_world > 0``): for each of the
  :data:`~fitlib.body.layouts.WORLD_POINTS`, the model's point relative to its hips' midpoint, in the camera turned
  to look at the person (:func:`fitlib.camera.ray_rotation`, fixed at the start), minus the landmark (m):
  ``r = e * s * sqrt(W_world / (s² + |e|²))``, Geman-McClure with scale ``s`` = ``world_sigma`` m (an arm or leg
  whose depth the landmark network inverted is an outlier, not a pull).

Jacobian: in closed form throughout (the body model's keypoint Jacobian, the projection's, the robust
factor's, the priors'); measured against autograd in ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fitlib import losses
from fitlib.body import priors as body_priors
from fitlib.body.layouts import WORLD_HIPS, WORLD_POINTS, KeypointLayout
from fitlib.body.model import BodyModel
from fitlib.camera import project
from fitlib.fitting.lm import LMResult, LMSettings, NormalEquations, levenberg_marquardt
from fitlib.params import SMPLParams

_MIN_DEPTH = 1e-3
"""The depth (m) below which :func:`fitlib.camera.project` clamps."""
N_PARAMS = 85
"""Parameters per person: global orientation 3, body pose 69, betas 10, translation 3."""
_ORIENT, _BODY, _BETAS, _TRANSL = slice(0, 3), slice(3, 72), slice(72, 82), slice(82, 85)


def pack(p: SMPLParams) -> torch.Tensor:
    """[P, 85] from a record with all four fields."""
    return torch.cat([p.global_orient, p.body_pose, p.betas, p.transl], -1)


def unpack(x: torch.Tensor) -> SMPLParams:
    """The record of [P, 85] parameters (views)."""
    return SMPLParams(x[:, _ORIENT], x[:, _BODY], x[:, _BETAS], x[:, _TRANSL])


@dataclass
class RefineTargets:
    """Per-person data of the refine objective (P people): keypoints ``xy`` [P, J, 2] px, data weights
    ``weights`` [P, J], intrinsics ``K`` [P, 3, 3], canonical ``scale`` [P], the initial body pose
    ``body_pose0`` [P, 69] and betas ``betas0`` [P, 10] the pulls are towards; and optionally BlazePose world
    landmarks ``world`` [P, 19, 3] (m, :data:`~fitlib.body.layouts.WORLD_POINTS`, NaN rows: none) with the
    frames ``world_frame`` [P, 3, 3] they are in (:func:`fitlib.camera.ray_rotation` of the start's hips)."""

    xy: torch.Tensor
    weights: torch.Tensor
    K: torch.Tensor
    scale: torch.Tensor
    body_pose0: torch.Tensor
    betas0: torch.Tensor
    world: torch.Tensor | None = None
    world_frame: torch.Tensor | None = None

    def index(self, rows) -> "RefineTargets":
        """The people at ``rows``."""
        w = None if self.world is None else self.world[rows]
        f = None if self.world_frame is None else self.world_frame[rows]
        return RefineTargets(self.xy[rows], self.weights[rows], self.K[rows], self.scale[rows], self.body_pose0[rows],
                             self.betas0[rows], w, f)


class RefineObjective:
    """Residuals and Jacobians of the refine objective (see the module doc).

    Args:
        model: the body model.
        layout: the keypoints' layout.
        weights: ``data``, ``pose_prior``, ``angle``, ``shape``, ``init_pull``, ``init_shape``, ``world`` (missing: 0).
        sigma: Geman-McClure scale (canonical px).
        priors: the fitter's :class:`~fitlib.losses.PriorTerms` (its kind and mixture).
        targets: the people's :class:`RefineTargets`.
        world_sigma: Geman-McClure scale (m) of the world-landmark term.
    """

    def __init__(self, model: BodyModel, layout: KeypointLayout, weights: dict[str, float], sigma: float,
                 priors: losses.PriorTerms, targets: RefineTargets, world_sigma: float = 0.1) -> None:
        self.model, self.layout, self.sigma, self.priors, self.t = model, layout, float(sigma), priors, targets
        self.w = {k: float(weights.get(k, 0.0)) for k in ("data", "pose_prior", "angle", "shape", "init_pull",
                                                           "init_shape", "world")}
        self.world_sigma = float(world_sigma)
        self.uses_world = self.w["world"] > 0 and targets.world is not None
        dtype, dev = targets.xy.dtype, targets.xy.device
        self.n_data = 2 * targets.xy.shape[1]
        # the model's points both terms read, produced (and differentiated) once per call: the layout's points,
        # then the world points it does not have
        self._points, self._n_layout = layout, len(layout)
        if self.uses_world:
            has = torch.isfinite(targets.world).all(-1).all(-1)
            self._world_has = has.to(dtype)
            self._world_target = torch.nan_to_num(targets.world.to(dtype))
            extra = tuple(n for n in WORLD_POINTS if n not in layout.names)
            names = layout.names + extra
            self._points = KeypointLayout(f"{layout.name}+world19", names, (), tuple(range(len(names))))
            self._world_rows = torch.tensor([names.index(n) for n in WORLD_POINTS], device=dev)
            self._world_hips = [names.index(WORLD_POINTS[i]) for i in WORLD_HIPS]
        idx, sign = body_priors.angle_prior_terms(dtype, dev)
        self._angle_idx, self._angle_sign = idx, sign
        self._angle_scale = body_priors.ANGLE_SCALE
        if priors.kind == "gmm":
            mix = priors.mixture
            T = mix.transform.to(dtype)
            d = mix.gmm_means.shape[1]
            L = mix.gmm_prec_chol.to(dtype)  # precision = L L^T, z = (f - mu) @ L
            self._gmm = (T, d, mix.gmm_means.to(dtype), L, mix.gmm_log_norm.to(dtype), mix.rest_std.to(dtype))
            self._gmm_jac = torch.einsum("kde,df->kef", L, T[:d])  # dz_k / d body_pose [K, D, 69]
            self._rest_jac = T[d:] / mix.rest_std.to(dtype)[:, None]  # [69 - D, 69]
            # their Gram matrices, the prior's constant blocks of J^T J
            self._gmm_gram = self._gmm_jac.transpose(1, 2) @ self._gmm_jac  # [K, 69, 69]
            self._rest_gram = self._rest_jac.T @ self._rest_jac  # [69, 69]

    # --------------------------------------------------------------------------------- residuals
    def _model_points(self, x: torch.Tensor) -> torch.Tensor:
        """[b, K, 3] the model's points at ``x`` [b, 85]: the layout's J, then the world points it lacks."""
        p = unpack(x)
        return self.model(p.pose, p.betas, p.transl, layout=self._points, validate=False).keypoints

    def _model_point_jacobian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(points [b, K, 3], their Jacobian [b, K, 3, 85]), as :meth:`_model_points`."""
        p = unpack(x)
        return self.model.keypoint_jacobian(p.pose, p.betas, p.transl, self._points)

    def data_residuals(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """[b, 2J] robust, confidence-weighted reprojection residuals of people ``rows`` at ``x`` [b, 85]."""
        return self._data_residuals(self._model_points(x), rows)

    def _data_residuals(self, pts: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        e = (project(pts[:, :self._n_layout], self.t.K[rows]) - self.t.xy[rows]) * self.t.scale[rows][:, None, None]
        s2 = self.sigma * self.sigma
        factor = torch.sqrt(self.w["data"] * self.t.weights[rows] * s2 / (s2 + e.pow(2).sum(-1)))
        return (e * factor[..., None]).flatten(1)

    def _world_errors(self, pts: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(errors ``e`` [b, W, 3] m of the model's world points, robust factors [b, W]) from its points ``pts``
        [b, K, 3] (:meth:`_model_points`)."""
        rel = pts[:, self._world_rows] - pts[:, self._world_hips].mean(1, keepdim=True)
        e = rel @ self.t.world_frame[rows] - self._world_target[rows]
        s2 = self.world_sigma ** 2
        factor = torch.sqrt(self.w["world"] * s2 / (s2 + e.pow(2).sum(-1))) * self._world_has[rows][:, None]
        return e, factor

    def world_residuals(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """[b, 3W] robust world-landmark residuals of people ``rows`` at ``x`` [b, 85] (none without landmarks)."""
        if not self.uses_world:
            return x.new_zeros(x.shape[0], 0)
        return self._world_residuals(self._model_points(x), rows)

    def _world_residuals(self, pts: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        e, factor = self._world_errors(pts, rows)
        return (e * factor[..., None]).flatten(1)

    def world_jacobian(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(world-landmark residuals [b, 3W], their Jacobian [b, 3W, 85]) in closed form: the body model's keypoint
        Jacobian, minus the hips', turned into the landmarks' frame, times the robust factor's
        ``f (I - e e^T / (s² + |e|²))``."""
        if not self.uses_world:
            return x.new_zeros(x.shape[0], 0), x.new_zeros(x.shape[0], 0, N_PARAMS)
        return self._world_jacobian(*self._model_point_jacobian(x), rows)

    def _world_jacobian(self, pts: torch.Tensor, dpts: torch.Tensor, rows: torch.Tensor):
        e, factor = self._world_errors(pts, rows)
        drel = dpts[:, self._world_rows] - dpts[:, self._world_hips].mean(1, keepdim=True)
        de = torch.einsum("bia,bjik->bjak", self.t.world_frame[rows], drel)  # d(R^T rel) [b, W, 3, 85]
        denom = self.world_sigma ** 2 + e.pow(2).sum(-1)
        eye = torch.eye(3, dtype=e.dtype, device=e.device)
        dr = factor[..., None, None] * (eye - e[..., :, None] * e[..., None, :] / denom[..., None, None])
        return (e * factor[..., None]).flatten(1), (dr @ de).flatten(1, 2)

    def prior_residuals(self, x: torch.Tensor, rows: torch.Tensor,
                        with_jacobian: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Prior residuals [b, R] and their Jacobian [b, R, 85], in closed form (None without ``with_jacobian``:
        a trial step needs the residuals only)."""
        b, dtype, dev = x.shape[0], x.dtype, x.device
        bp, betas = x[:, _BODY], x[:, _BETAS]
        res, jac = [], []

        def add(r: torch.Tensor, j_body: torch.Tensor | None = None, j_betas: torch.Tensor | None = None) -> None:
            res.append(r)
            if not with_jacobian:
                return
            J = torch.zeros(b, r.shape[1], N_PARAMS, dtype=dtype, device=dev)
            if j_body is not None:
                J[:, :, _BODY] = j_body
            if j_betas is not None:
                J[:, :, _BETAS] = j_betas
            jac.append(J)

        wp = self.w["pose_prior"]
        if wp > 0 and self.priors.kind == "gmm":
            zk, rest, const, k = self._gmm_parts(bp)
            c = math.sqrt(wp / 2)
            add(c * zk, c * self._gmm_jac[k])
            add(c * rest, c * self._rest_jac.expand(b, -1, -1))
            add(const)
        elif wp > 0 and self.priors.kind == "limits":
            r, slope = self._limit_parts(bp, wp)
            add(r, torch.diag_embed(slope))
        elif wp > 0 and self.priors.kind == "l2":
            add(math.sqrt(wp) * bp, math.sqrt(wp) * torch.eye(69, dtype=dtype, device=dev).expand(b, -1, -1))
        wa = self.w["angle"]
        if wa > 0:
            r, slope = self._angle_parts(bp, wa)
            j = torch.zeros(b, len(self._angle_idx), 69, dtype=dtype, device=dev)
            j[:, torch.arange(len(self._angle_idx)), self._angle_idx] = slope
            add(r, j)
        ws = self.w["shape"]
        if ws > 0:
            c = math.sqrt(ws / 2)
            add(c * betas, None, c * torch.eye(10, dtype=dtype, device=dev).expand(b, -1, -1))
        wi = self.w["init_pull"]
        if wi > 0:
            c = math.sqrt(wi)
            add(c * (bp - self.t.body_pose0[rows]), c * torch.eye(69, dtype=dtype, device=dev).expand(b, -1, -1))
        wb = self.w["init_shape"]
        if wb > 0:
            c = math.sqrt(wb)
            add(c * (betas - self.t.betas0[rows]), None, c * torch.eye(10, dtype=dtype, device=dev).expand(b, -1, -1))
        if not res:
            return x.new_zeros(b, 0), x.new_zeros(b, 0, N_PARAMS) if with_jacobian else None
        return torch.cat(res, 1), torch.cat(jac, 1) if with_jacobian else None

    def residuals(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """All residuals [b, m] of people ``rows`` at ``x`` [b, 85]."""
        pts = self._model_points(x)
        world = (self._world_residuals(pts, rows),) if self.uses_world else ()
        return torch.cat([self._data_residuals(pts, rows), *world,
                          self.prior_residuals(x, rows, with_jacobian=False)[0]], 1)

    def data_jacobian(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data residuals [b, 2J], their Jacobian [b, 2J, 85]) in closed form: the body model's keypoint
        Jacobian (:meth:`fitlib.body.model.BodyModel.keypoint_jacobian`), the pinhole projection's, and the
        robust factor's ``d(e f(e))/de = f (I - e e^T / (sigma² + |e|²))``."""
        return self._data_jacobian(*self._model_point_jacobian(x), rows)

    def _data_jacobian(self, pts: torch.Tensor, dpts: torch.Tensor, rows: torch.Tensor):
        kp, dkp = pts[:, :self._n_layout], dpts[:, :self._n_layout]  # [b, J, 3], [b, J, 3, 85]
        K, scale = self.t.K[rows], self.t.scale[rows][:, None, None]
        X, Y, Z = kp.unbind(-1)
        front = Z > _MIN_DEPTH
        z = Z.clamp(min=_MIN_DEPTH)
        fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
        zero = torch.zeros_like(z)
        dz = front.to(z.dtype) / (z * z)  # the projection clamps the depth: no gradient through it there
        dproj = torch.stack([fx / z, zero, -fx * X * dz, zero, fy / z, -fy * Y * dz], -1).view(*z.shape, 2, 3)
        e = (project(kp, K) - self.t.xy[rows]) * scale
        de = scale[..., None] * (dproj @ dkp)  # [b, J, 2, 85]
        s2 = self.sigma * self.sigma
        denom = s2 + e.pow(2).sum(-1)
        factor = torch.sqrt(self.w["data"] * self.t.weights[rows] * s2 / denom)  # [b, J]
        eye = torch.eye(2, dtype=e.dtype, device=e.device)
        dr = factor[..., None, None] * (eye - e[..., :, None] * e[..., None, :] / denom[..., None, None])
        return (e * factor[..., None]).flatten(1), (dr @ de).flatten(1, 2)

    def _point_jacobian(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(data and world residuals [b, 2J (+ 3W)], their Jacobian [b, 2J (+ 3W), 85]) from one keypoint
        Jacobian of the body model."""
        pts, dpts = self._model_point_jacobian(x)
        r, J = self._data_jacobian(pts, dpts, rows)
        if self.uses_world:
            r_w, j_w = self._world_jacobian(pts, dpts, rows)
            r, J = torch.cat([r, r_w], 1), torch.cat([J, j_w], 1)
        return r, J

    def jacobian(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(residuals [b, m], Jacobian [b, m, 85]), every part in closed form."""
        r_points, j_points = self._point_jacobian(x, rows)
        r_prior, j_prior = self.prior_residuals(x, rows)
        return torch.cat([r_points, r_prior], 1), torch.cat([j_points, j_prior], 1)

    def normal_equations(self, x: torch.Tensor, rows: torch.Tensor) -> NormalEquations:
        """``loss`` [b], ``A = JᵀJ`` [b, 85, 85] and ``g = Jᵀr`` [b, 85] without forming the priors' rows of
        ``J``: their blocks of ``JᵀJ`` are constant (the mixture's per component, the pulls' and the shape
        prior's identities) or diagonal (angle, limits), added in place. Equal to :meth:`jacobian`'s."""
        r_d, j_d = self._point_jacobian(x, rows)
        jt = j_d.transpose(1, 2)
        A = jt @ j_d
        g = (jt @ r_d[..., None])[..., 0]
        loss = r_d.pow(2).sum(-1)
        bp, betas = x[:, _BODY], x[:, _BETAS]
        A_body, A_betas = A[:, _BODY, _BODY], A[:, _BETAS, _BETAS]  # views: written in place
        g_body, g_betas = g[:, _BODY], g[:, _BETAS]
        body_diag, betas_diag = A_body.diagonal(dim1=1, dim2=2), A_betas.diagonal(dim1=1, dim2=2)
        wp = self.w["pose_prior"]
        if wp > 0 and self.priors.kind == "gmm":
            zk, rest, const, k = self._gmm_parts(bp)
            A_body += (wp / 2) * (self._gmm_gram[k] + self._rest_gram)
            g_body += (wp / 2) * ((self._gmm_jac[k].transpose(1, 2) @ zk[..., None])[..., 0] + rest @ self._rest_jac)
            loss = loss + (wp / 2) * (zk.pow(2).sum(-1) + rest.pow(2).sum(-1)) + const[:, 0].pow(2)
        elif wp > 0 and self.priors.kind == "limits":
            r, slope = self._limit_parts(bp, wp)
            body_diag += slope.pow(2)
            g_body += slope * r
            loss = loss + r.pow(2).sum(-1)
        elif wp > 0 and self.priors.kind == "l2":
            body_diag += wp
            g_body += wp * bp
            loss = loss + wp * bp.pow(2).sum(-1)
        wa = self.w["angle"]
        if wa > 0:
            r, slope = self._angle_parts(bp, wa)
            idx = self._angle_idx
            body_diag[:, idx] += slope.pow(2)
            g_body[:, idx] += slope * r
            loss = loss + r.pow(2).sum(-1)
        for weight, value in ((self.w["shape"] / 2, betas), (self.w["init_shape"], betas - self.t.betas0[rows])):
            if weight > 0:
                betas_diag += weight
                g_betas += weight * value
                loss = loss + weight * value.pow(2).sum(-1)
        wi = self.w["init_pull"]
        if wi > 0:
            diff = bp - self.t.body_pose0[rows]
            body_diag += wi
            g_body += wi * diff
            loss = loss + wi * diff.pow(2).sum(-1)
        return NormalEquations(loss, A, g)

    def _gmm_parts(self, bp: torch.Tensor):
        """Max-mixture pieces: whitened distance to the best component ``zk`` [b, D], the independent features
        ``rest`` [b, 69 - D] (in standard deviations), the constant residual [b, 1] and the component [b]."""
        T, d, mu, L, log_norm, rest_std = self._gmm
        f = bp @ T.T
        z = torch.einsum("bkd,kde->bke", f[:, None, :d] - mu, L)  # [b, K, D]
        k = (0.5 * z.pow(2).sum(-1) - log_norm).argmin(-1)  # the best component's NLL
        zk = z[torch.arange(bp.shape[0], device=bp.device), k]
        const = torch.sqrt(self.w["pose_prior"] * (log_norm.max() - log_norm[k]))[:, None]  # >= 0, no gradient
        return zk, f[:, d:] / rest_std, const, k

    def _limit_parts(self, bp: torch.Tensor, wp: float):
        """Joint-limit residuals [b, 69] and their (diagonal) slopes [b, 69]."""
        lo, hi = self.priors.mixture.joint_ranges.to(bp.dtype).unbind(-1)
        c = math.sqrt(wp) / body_priors.LIMIT_SCALE
        r = c * (torch.relu(lo - bp) + torch.relu(bp - hi))
        return r, c * ((bp > hi).to(bp.dtype) - (bp < lo).to(bp.dtype))

    def _angle_parts(self, bp: torch.Tensor, wa: float):
        """Hyper-extension residuals [b, 4] and their slopes [b, 4] (at the body-pose entries ``_angle_idx``)."""
        flex = bp[:, self._angle_idx] * self._angle_sign
        c = math.sqrt(wa) / self._angle_scale
        return c * torch.relu(-flex), -c * self._angle_sign * (flex < 0).to(bp.dtype)

    def loss(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """[b] the objective ``sum r²``."""
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        with torch.no_grad():
            return self.residuals(x, rows).pow(2).sum(-1)


def refine(objective: RefineObjective, start: torch.Tensor, settings: LMSettings,
           jacobian: str = "normal") -> LMResult:
    """Levenberg-Marquardt from ``start`` [P, 85] (see :func:`fitlib.fitting.lm.levenberg_marquardt`).

    ``jacobian``: ``"normal"`` (:meth:`RefineObjective.normal_equations`, the default), ``"closed"``
    (:meth:`RefineObjective.jacobian`, the whole ``J``) or ``"forward"`` / ``"reverse"`` (autograd of every
    residual), for comparison."""
    jac = {"normal": objective.normal_equations, "closed": objective.jacobian}.get(jacobian, jacobian)
    return levenberg_marquardt(objective.residuals, start, settings, jac)
