"""The batched SMPLify-style fitter: SMPL parameters from 2D keypoints, many people at once.

:class:`Fitter` holds a body model, a config and the priors, built once and reused for every
call of :meth:`Fitter.fit` (label jobs and training in the loop call it thousands of times).

Every person is an independent problem.  The optimiser is a batched Adam whose
state is kept per person: each person keeps the best iterate it reaches, and a
person whose best loss stops improving leaves the working batch (per-person
early stop) and costs nothing afterwards; L-BFGS can be chosen per stage
(:mod:`fitlib.fitting.optimizers`).

Without an initial estimate, the first (camera) stage runs from several headings
and the first body stage from several starting poses (the pose prior's modes),
all in one batch; each person keeps its best start (:mod:`fitlib.fitting.starts`).
With an initial body pose (``init``: a regressor's output, the previous video frame, a
stored label), the fitter instead refines it by a per-person Levenberg-Marquardt solve
(:mod:`fitlib.fitting.refine`, the config's ``refine`` section) that never ends above the
start's loss.  Stages, weights and thresholds come from a
:class:`fitlib.fitting.config.FitConfig` (``configs/*.yaml``); the loss terms from
:mod:`fitlib.losses`.

Camera frame: OpenCV (x right, y down, z forward), metres; keypoints in pixels.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from fitlib import losses
from fitlib.body.layouts import WORLD19_FROM_MEDIAPIPE33, WORLD_HIPS, KeypointLayout, get_layout
from fitlib.body.model import BodyModel, load_body_model
from fitlib.camera import project, ray_rotation
from fitlib.fitting.config import FitConfig, Stage, load_config
from fitlib.fitting.lm import LMSettings
from fitlib.fitting.optimizers import runner, threads_for
from fitlib.fitting.refine import RefineObjective, RefineTargets, pack, refine, unpack
from fitlib.fitting.starts import (FACING_CAMERA, TORSO, best_of_starts, best_per_owner, heading_starts,
                                   initial_translation, point_indices, pose_starts, relaxed_pose)
from fitlib.params import MAX_ABS_BETA, SMPLParams, as_params


@dataclass
class FitOutput:
    """Per-person results of :meth:`Fitter.fit` (P people).

    Attributes:
        params: the fitted :class:`~fitlib.params.SMPLParams` ([P, 3], [P, 69], [P, 10], [P, 3];
            orientation and translation in the camera frame, metres).
        loss: [P] final total loss (of the last stage's objective, or of the refine objective).
        reprojection_error: [P] mean pixel distance over the keypoints used (NaN if not fitted).
        converged: [P] bool, the convergence test was met: the early stop of the last stage (its best loss
            gained less than ``convergence.ftol`` over the window), or, on the refine path, the
            Levenberg-Marquardt criteria (``refine.ftol`` / ``xtol``) before ``refine.max_iterations``.
            False where the schedule, not convergence, ended the fit.
        fitted: [P] bool, False for people without enough usable keypoints or spread (:data:`MIN_SPREAD_PX`; their
            parameters are the initial ones) and for fits outside :data:`DEPTH_RANGE_M` or :data:`MAX_LATERAL`, with betas beyond
            :data:`fitlib.params.MAX_ABS_BETA` or with errors above :data:`MAX_RELATIVE_ERROR`.
        iterations: [P] optimiser iterations spent on the person, all stages and starts (on the refine
            path: Jacobian evaluations).
        joints: [P, 24, 3] fitted SMPL joints in the camera frame (metres).
        projected: [P, J, 2] fitted keypoints projected (pixels; NaN for points the model cannot produce).
    """

    params: SMPLParams
    loss: torch.Tensor
    reprojection_error: torch.Tensor
    converged: torch.Tensor
    fitted: torch.Tensor
    iterations: torch.Tensor
    joints: torch.Tensor
    projected: torch.Tensor


@dataclass
class Targets:
    """What a stage's objective compares against, per person (b people of a working batch).

    Attributes:
        xy: [b, J, 2] keypoints (px), 0 where unusable.
        weights: [b, J] per-point data weights (:func:`fitlib.losses.clean_keypoints`).
        K: [b, 3, 3] intrinsics.
        scale: [b] canonical scale of the residuals (:func:`fitlib.losses.canonical_scale`).
        depth0: [b] starting depth (m), kept by the ``depth`` term.
        body_pose0: [b, 69] the caller's initial body pose, pulled towards by ``init_pull``.
        body_kp: [b, J, 3] keypoints posed with zero orientation and translation (rigid stages only).
        root: [b, 3] rest pelvis joint (rigid stages only).
    """

    xy: torch.Tensor
    weights: torch.Tensor
    K: torch.Tensor
    scale: torch.Tensor
    depth0: torch.Tensor
    body_pose0: torch.Tensor
    body_kp: torch.Tensor | None = None
    root: torch.Tensor | None = None

    def index(self, rows) -> "Targets":
        """The people at ``rows``."""
        return Targets(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                          for f in dataclasses.fields(self)})


MIN_SPREAD_PX = 4.0
"""People whose usable keypoints span a box of less than this diagonal (pixels) are not fitted: nothing about a
body can be read from a few pixels (e.g. every keypoint on one pixel)."""
MAX_LATERAL = 100.0
"""A fit more than this many times its depth off the optical axis (beyond 89.4 degrees) is flagged not fitted."""
MAX_RELATIVE_ERROR = 0.25
"""A fit whose mean reprojection error exceeds this fraction of the person's 2D size (box diagonal of the usable
keypoints) is flagged not fitted: it does not explain the keypoints (good fits are at 1-5 %)."""
DEPTH_RANGE_M = (0.05, 1000.0)
"""A fit whose translation puts the body outside this depth range (metres) is flagged not fitted (an absurd
focal length, keypoints that no body fits)."""


class StageObjective:
    """Per-person loss of one stage, the terms of :mod:`fitlib.losses` weighted by the stage's weights."""

    def __init__(self, model: BodyModel, layout: KeypointLayout, config: FitConfig, stage: Stage,
                 priors: losses.PriorTerms, init_pose_given: bool) -> None:
        self.model, self.layout, self.config, self.stage, self.priors = model, layout, config, stage, priors
        self.w = {k: float(v) for k, v in stage.weights.items() if v}
        if not init_pose_given:  # the pull is towards a caller's estimate, not towards the fitter's own start
            self.w.pop("init_pull", None)
        sel = torch.zeros(len(layout), dtype=model.joint_template.dtype, device=model.joint_template.device)
        sel[point_indices(layout, stage.keypoints) if stage.keypoints else slice(None)] = 1.0
        self.select = sel  # [J] 1 for the points the stage's data term uses
        # A stage that moves only the whole body (orientation, translation) poses the keypoints once
        # and then rotates them about the pelvis: exact, and no body model per iteration.
        self.rigid = not ({"body_pose", "betas"} & set(stage.params)) and not config.full_mesh

    def prepare(self, p: SMPLParams, t: Targets) -> Targets:
        """``t`` plus what the stage needs precomputed (``body_kp`` and ``root`` for a rigid stage)."""
        if not self.rigid:
            return t
        with torch.no_grad():
            pose = torch.cat([torch.zeros_like(p.global_orient)[:, None], p.body_pose.reshape(-1, 23, 3)], 1)
            body_kp = self.model(pose, p.betas, layout=self.layout, validate=False).keypoints
            root = self.model.rest_joints(p.betas)[:, 0]
        return dataclasses.replace(t, body_kp=body_kp, root=root)

    def keypoints(self, p: SMPLParams, t: Targets) -> torch.Tensor:
        """The layout's points [b, J, 3] in the camera frame (metres)."""
        if self.rigid:
            R = roma.rotvec_to_rotmat(p.global_orient)
            root = t.root[:, None]
            return (t.body_kp - root) @ R.transpose(-1, -2) + root + p.transl[:, None]
        return self.model(p.pose, p.betas, p.transl, layout=self.layout, vertices=self.config.full_mesh,
                          validate=False).keypoints

    def __call__(self, p: SMPLParams, t: Targets) -> torch.Tensor:
        proj = project(self.keypoints(p, t), t.K)
        w = self.w
        loss = w.get("data", 0.0) * losses.reprojection_loss(proj, t.xy, t.weights * self.select, t.scale,
                                                             self.config.robust_sigma)
        if "depth" in w:
            loss = loss + w["depth"] * (p.transl[:, 2] - t.depth0).pow(2)
        if "pose_prior" in w:
            loss = loss + w["pose_prior"] * self.priors.pose(p.body_pose)
        if "angle" in w:
            loss = loss + w["angle"] * self.priors.angle(p.body_pose)
        if "shape" in w:
            loss = loss + w["shape"] * self.priors.shape(p.betas)
        if "init_pull" in w:
            loss = loss + w["init_pull"] * (p.body_pose - t.body_pose0).pow(2).sum(-1)
        return loss


class Fitter:
    """Fits SMPL to 2D keypoints; holds the body model, the config and the priors, built once.

    Args:
        model: a :class:`~fitlib.body.model.BodyModel`, or what :func:`~fitlib.body.model.load_body_model`
            takes (``"open"``, an SMPL file or folder).
        config: fitting settings (a shipped name, a YAML path, a dict or a :class:`FitConfig`;
            default ``configs/default.yaml``).
        device: where a model loaded here lives (a given model stays where it is).
    """

    def __init__(self, model: BodyModel | str | Path = "open", config: str | Path | dict | FitConfig | None = None,
                 device: str | torch.device | None = None) -> None:
        self.model = model if isinstance(model, BodyModel) else load_body_model(model, device=device)
        self.config = load_config(config)
        dtype, dev = self.model.joint_template.dtype, self.model.joint_template.device
        cfg = self.config
        self.priors = losses.PriorTerms(cfg.pose_prior, cfg.pose_prior_file, need_mixture=cfg.pose_starts > 0,
                                        device=dev, dtype=dtype)
        self.regressor = None
        if cfg.start == "regressor":  # the learned init, posed with this Fitter's body model
            from fitlib.regression.checkpoint import load_regressor
            from fitlib.regression.predict import KeypointRegressor

            net, header = load_regressor(cfg.regressor, dev)
            if net.config.encoder == "image":
                raise ValueError(f"{cfg.regressor} is an image regressor: the fitter sees keypoints only; pass it as "
                                 f"fitlib.fit(image, ..., regressor=PATH), which crops the image for it")
            self.regressor = KeypointRegressor(net, self.model, header)

    @property
    def device(self) -> torch.device:
        return self.model.joint_template.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.joint_template.dtype

    def fit(self, keypoints: torch.Tensor, K: torch.Tensor, layout: str | KeypointLayout = "coco17",
            init: SMPLParams | dict | list | None = None,
            image_size: tuple[int, int] | torch.Tensor | None = None, world=None) -> FitOutput:
        """Fit SMPL to the 2D keypoints of P people.

        Args:
            keypoints: [P, J, 3] (x px, y px, confidence in [0, 1]) in ``layout``; NaN or
                low-confidence points are ignored.
            K: [P, 3, 3] or [3, 3] intrinsics (pixels).
            layout: the keypoints' layout.
            init: optional starting values for all P people (:class:`~fitlib.params.SMPLParams` or what
                :func:`~fitlib.params.as_params` takes), or a list of P per-person values (each one
                person's record, or None: that person starts as without init); missing fields use the
                defaults (relaxed pose facing the camera, mean shape, depth from torso length). With a
                body pose, the fitter refines it (the config's ``refine`` path) instead of trying its
                own starting poses. Without one, people start from the keypoint regressor's estimate
                (``start: regressor``, the default config) or from the multistart stages.
            image_size: (height, width) in pixels, or [P, 2] per person (people from several
                images fit in one batch); keypoints far outside their image are ignored.
            world: [P, 33, 3] BlazePose world landmarks (m, ``mediapipe33`` order, :attr:`fitlib.Keypoints.world`;
                NaN rows: none), read by a regressor with the world-landmark branch (``start: regressor``) and by
                the refine path's 3D term (``refine.weights.world``; the stages do not use them).
        Returns:
            :class:`FitOutput`; people without enough keypoints are flagged ``fitted=False``.
        """
        layout = get_layout(layout)
        keypoints, K, image_size = self._check_inputs(keypoints, K, layout, image_size)
        P = keypoints.shape[0]
        if isinstance(init, (list, tuple)) and len(init) != P:
            raise ValueError(f"init is a list of {len(init)} per-person values for {P} people")
        world = self._check_world(world, P)
        regressed = None
        if self.regressor is not None and (init is None or isinstance(init, (list, tuple))):
            given = None if init is None else list(init)
            init = self._regressed(keypoints, K, layout, given, world)
            regressed = [v is not None and (given is None or given[i] is None) for i, v in enumerate(init)]
        if isinstance(init, (list, tuple)):
            return self._fit_mixed(keypoints, K, layout, list(init), image_size, world, regressed)
        return self._fit_one(keypoints, K, layout, as_params({} if init is None else init, P, self.dtype, self.device),
                             image_size, world)

    def _check_world(self, world, P: int) -> torch.Tensor | None:
        """[P, 33, 3] world landmarks on the fitter's device and dtype (NaN rows: none), or None."""
        if world is None:
            return None
        w = torch.as_tensor(np.asarray(world.detach().cpu() if isinstance(world, torch.Tensor) else world,
                                       dtype=np.float64), dtype=self.dtype, device=self.device)
        if w.shape != (P, 33, 3):
            raise ValueError(f"world landmarks must be [{P}, 33, 3] (mediapipe33 order, metres), got {tuple(w.shape)}")
        return w

    def _fit_multistart(self, keypoints, K, layout: KeypointLayout, image_size) -> FitOutput:
        return self._fit_one(keypoints, K, layout, SMPLParams(), image_size)

    def _fit_one(self, keypoints, K, layout: KeypointLayout, init: SMPLParams, image_size, world=None,
                 turn: bool = True) -> FitOutput:
        """One batch whose people all give the same fields of ``init`` (checked inputs); ``turn`` False: an
        estimate with an orientation is not also tried turned by 180 degrees (the regressor's own estimates)."""
        P = keypoints.shape[0]
        xy, usable, targets, start = self._prepare(keypoints, K, layout, image_size, init)
        torso_idx = point_indices(layout, TORSO)
        spread = losses.box_diagonal(xy, usable)
        fitted = (usable[:, torso_idx].sum(1) >= self.config.min_torso_keypoints) & (spread >= MIN_SPREAD_PX)
        params = start.clone()
        loss = torch.full((P,), float("nan"), dtype=self.dtype, device=self.device)
        converged = torch.zeros(P, dtype=torch.bool, device=self.device)
        iterations = torch.zeros(P, dtype=torch.long, device=self.device)
        idx = torch.nonzero(fitted).flatten()
        if idx.numel():
            if init.body_pose is not None and self.config.refine is not None:
                p, l, c, n = self._refine(start.index(idx), targets.index(idx), xy[idx], usable[idx], layout,
                                          free_heading=init.global_orient is None, betas_given=init.betas is not None,
                                          world=None if world is None else world[idx], turn=turn)
            else:
                p, l, c, n = self._run_stages(start.index(idx), targets.index(idx), xy[idx], usable[idx], layout,
                                              init.body_pose is not None, free_heading=init.global_orient is None)
            for k in SMPLParams.FIELDS:
                getattr(params, k)[idx] = getattr(p, k).detach()
            loss[idx], converged[idx], iterations[idx] = l, c, n
        depth = params.transl[:, 2]
        fitted &= (depth >= DEPTH_RANGE_M[0]) & (depth <= DEPTH_RANGE_M[1])  # e.g. a focal length of 1e-9 px
        fitted &= params.transl[:, :2].abs().amax(-1) <= MAX_LATERAL * depth.clamp(min=0)  # off to the side
        fitted &= params.betas.abs().amax(-1) <= MAX_ABS_BETA  # no human body
        return self._output(params, loss, converged, fitted, iterations, spread, xy, usable, K, layout)

    def _regressed(self, keypoints, K, layout: KeypointLayout, inits: list | None, world=None) -> list | None:
        """Per-person inits with the regressor's estimates where the caller gave none (``start: regressor``);
        people the regressor cannot read (too few points, a layout without its points) keep None and are
        fitted from the multistart path."""
        from fitlib.regression.predict import check_layout

        P = keypoints.shape[0]
        inits = [None] * P if inits is None else inits
        todo = [i for i, v in enumerate(inits) if v is None]
        if not todo:
            return inits
        try:
            check_layout(layout.name, self.regressor.layout)
        except ValueError:
            return inits
        rows = torch.tensor(todo, device=self.device)
        pred = self.regressor.predict(keypoints[rows], K[rows], layout.name, world=None if world is None else world[rows])
        est = pred.params.to(self.device, self.dtype)
        for j, i in enumerate(todo):
            if bool(pred.fitted[j]) and bool(est.transl[j, 2] > 0):
                inits[i] = est.index(slice(j, j + 1))
        return inits

    def _fit_mixed(self, keypoints, K, layout: KeypointLayout, inits: list, image_size, world=None,
                   regressed: list | None = None) -> FitOutput:
        """A per-person list of inits: the people whose inits give the same fields (and come from the same source:
        ``regressed`` marks the regressor's own estimates) are fitted together (people are independent problems,
        so the grouping changes no result), the outputs merged."""
        P = keypoints.shape[0]
        records = [None if v is None else as_params(v, 1, self.dtype, self.device) for v in inits]
        regressed = regressed or [False] * P
        kinds = [(() if r is None else r.given(), bool(g)) for r, g in zip(records, regressed)]
        turn_regressed = self.config.refine is None or self.config.refine.turn_regressor_starts
        parts = []
        for kind in dict.fromkeys(kinds):
            rows = torch.tensor([i for i, k in enumerate(kinds) if k == kind], device=self.device)
            size = None if image_size is None else image_size[rows]
            if kind[0]:
                init = as_params(SMPLParams.cat([records[i] for i in rows.tolist()]), len(rows), self.dtype, self.device)
                out = self._fit_one(keypoints[rows], K[rows], layout, init, size,
                                    None if world is None else world[rows], turn=turn_regressed or not kind[1])
            else:  # the fitter's own starts for these (the multistart path, also with start: regressor)
                out = self._fit_multistart(keypoints[rows], K[rows], layout, size)
            parts.append((rows, out))
        return _merge_outputs(parts, P)

    # ----------------------------------------------------------------------------------- steps
    def _check_inputs(self, keypoints, K, layout: KeypointLayout, image_size):
        dtype, dev = self.dtype, self.device
        keypoints = torch.as_tensor(keypoints, dtype=dtype, device=dev)
        if keypoints.ndim != 3 or keypoints.shape[1:] != (len(layout), 3):
            raise ValueError(f"keypoints for layout {layout.name!r} must have shape [P, {len(layout)}, 3], "
                             f"got {tuple(keypoints.shape)}")
        P = keypoints.shape[0]
        conf = keypoints[..., 2]
        bad = torch.isfinite(conf) & ((conf < 0) | (conf > 1))
        if bool(bad.any()):
            raise ValueError(f"keypoint confidences must be in [0, 1] (NaN: missing), got {float(conf[bad][0])!r} "
                             f"for person {int(torch.nonzero(bad)[0, 0])}")
        try:
            K = torch.as_tensor(K, dtype=dtype, device=dev)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"K must be a [3, 3] or [P, 3, 3] intrinsics matrix, got {type(K).__name__}") from None
        if K.shape == (3, 3):
            K = K.expand(P, 3, 3)
        if K.shape != (P, 3, 3) or not torch.isfinite(K).all() or bool((K[:, [0, 1], [0, 1]] <= 0).any()):
            raise ValueError(f"K must be finite [3, 3] or [P, 3, 3] intrinsics with positive focal lengths fx, fy, "
                             f"got shape {tuple(K.shape)}")
        f = K[:, [0, 1], [0, 1]].amin(-1)
        skewed = K[:, 0, 1].abs() > 1e-6 * f
        bottom = (K[:, 2] - torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=dev)).abs().amax(-1) > 1e-6
        off_axis = K[:, 1, 0].abs() > 1e-6 * f
        if bool((skewed | bottom | off_axis).any()):
            raise ValueError("K must be pinhole intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew, bottom "
                             f"row 0 0 1), got {K[int(torch.nonzero(skewed | bottom | off_axis)[0, 0])].tolist()}")
        if image_size is not None:
            size_t = torch.as_tensor(image_size, dtype=dtype, device=dev)
            if size_t.numel() not in (2, 2 * P) or not torch.isfinite(size_t).all() or bool((size_t <= 0).any()):
                raise ValueError(f"image_size must be a positive (height, width) in pixels or [P, 2] of them for "
                                 f"P={P}, got {image_size!r}")
            image_size = size_t.reshape(-1, 2).expand(P, 2)
        if len(point_indices(layout, TORSO)) != 4:
            raise ValueError(f"layout {layout.name!r} has no shoulders and hips to fit the torso on")
        return keypoints, K, image_size

    def _prepare(self, keypoints, K, layout: KeypointLayout, image_size, init: SMPLParams):
        """Cleaned keypoints, the data term's targets and the starting parameters of every person."""
        cfg, dtype, dev = self.config, self.dtype, self.device
        P = keypoints.shape[0]
        kmap = self.model.keypoint_map(layout)
        point_w = losses.point_weights(layout, cfg.keypoint_weights, dtype, dev)
        xy, weights, usable = losses.clean_keypoints(keypoints, kmap.mask, point_w, cfg.keypoint_confidence_threshold,
                                                     cfg.square_confidence, image_size)
        if init.body_pose is not None:
            body_pose0 = init.body_pose
        else:
            body_pose0 = relaxed_pose(P, dtype, dev)[:, 1:].reshape(P, 69)
        orient0 = init.global_orient if init.global_orient is not None else \
            torch.tensor(FACING_CAMERA, dtype=dtype, device=dev).expand(P, 3).clone()
        betas0 = init.betas if init.betas is not None else torch.zeros(P, 10, dtype=dtype, device=dev)
        start = SMPLParams(orient0, body_pose0.clone(), betas0, init.transl)
        if start.transl is None:
            with torch.no_grad():
                start.transl = initial_translation(self.model, start.pose, betas0, xy, usable, K,
                                                   point_indices(layout, TORSO))
        targets = Targets(xy, weights, K, losses.canonical_scale(xy, usable), start.transl[:, 2].clone(),
                          body_pose0.clone())
        return xy, usable, targets, start

    def _refine(self, params: SMPLParams, targets: Targets, xy, usable, layout: KeypointLayout,
                free_heading: bool, betas_given: bool, world: torch.Tensor | None = None, turn: bool = True):
        """The refine path (:mod:`fitlib.fitting.refine`) from each person's estimate, also from the turned
        body where front and back are ambiguous (or from the config's headings without an orientation): a
        person with several starts runs each for ``refine.screen_iterations`` and goes on from the one of
        lowest loss, a person with one start goes straight on, so both get at most ``refine.max_iterations``
        after the screening (``turn`` False: each estimate as it is, for the regressor's own estimates).
        ``world`` [P, 33, 3]: world landmarks for the 3D term.
        Returns (params, loss, converged, iterations)."""
        cfg = self.config
        if turn or free_heading:
            owner, starts = heading_starts(params, xy, usable, cfg, layout, free_heading)
        else:  # each estimate as it is
            owner, starts = torch.arange(len(params), device=self.device), params
        world19 = frame = None
        if world is not None and cfg.refine.weights.get("world", 0) > 0:
            world19 = world[:, list(WORLD19_FROM_MEDIAPIPE33)]
            with torch.no_grad():  # the frame the landmarks are in: the camera turned to the start's hips
                pts = self.model(params.pose, params.betas, params.transl, layout="world19", validate=False).keypoints
            frame = ray_rotation(pts[:, list(WORLD_HIPS)].mean(1))
        rt = RefineTargets(targets.xy, targets.weights, targets.K, targets.scale, targets.body_pose0,
                           params.betas.clone(), world19, frame).index(owner)
        weights = dict(cfg.refine.weights)
        if not betas_given:  # the pull is towards a caller's estimate, not towards the fitter's own mean shape
            weights.pop("init_shape", None)
        sigma = cfg.refine.robust_sigma or cfg.robust_sigma
        objective_for = lambda t: RefineObjective(self.model, layout, weights, sigma, self.priors, t,  # noqa: E731
                                                  cfg.refine.world_sigma)
        settings = LMSettings(max_iterations=cfg.refine.max_iterations, damping=cfg.refine.damping,
                              ftol=cfg.refine.ftol, xtol=cfg.refine.xtol)
        x = pack(starts)
        iters = torch.zeros(len(params), dtype=torch.long, device=self.device)
        pick = torch.arange(len(owner), device=self.device)
        if len(owner) > len(params):  # several starts for some people: screen theirs briefly, keep each one's best
            several = torch.nonzero((torch.bincount(owner, minlength=len(params)) > 1)[owner]).flatten()
            with threads_for(len(several), self.device, cfg):
                screen = refine(objective_for(rt.index(several)), x[several],
                                dataclasses.replace(settings, max_iterations=cfg.refine.screen_iterations))
            iters.index_add_(0, owner[several], screen.iterations)
            loss = torch.zeros(len(owner), dtype=x.dtype, device=self.device)  # a single start is its owner's best
            loss[several] = screen.loss
            x = x.index_copy(0, several, screen.x)
            pick = best_per_owner(loss, owner)
        objective, x = objective_for(rt.index(pick)), x[pick]
        with threads_for(len(x), self.device, cfg):
            res = refine(objective, x, settings)
        return unpack(res.x).clone(), res.loss, res.converged, iters + res.iterations

    def _run_stages(self, params: SMPLParams, targets: Targets, xy, usable, layout: KeypointLayout,
                    init_pose_given: bool, free_heading: bool = True):
        """Every stage of the config over the fitted people; returns (params, loss, converged, iterations)."""
        cfg = self.config
        total_iters = torch.zeros(len(params), dtype=torch.long, device=self.device)
        body_started = False
        c = torch.zeros(len(params), dtype=torch.bool, device=self.device)
        for i, stage in enumerate(cfg.stages):
            problem = StageObjective(self.model, layout, cfg, stage, self.priors, init_pose_given)
            targets = problem.prepare(params, targets)
            if i == 0 and "global_orient" in stage.params:
                owner, starts = heading_starts(params, xy, usable, cfg, layout, not init_pose_given)
                params, _, c, n = best_of_starts(problem, params, targets, stage, cfg, owner, starts)
            elif "body_pose" in stage.params and not body_started and not init_pose_given and cfg.pose_starts > 0:
                owner, starts = pose_starts(params, self.priors.mixture.start_poses(cfg.pose_starts))
                params, _, c, n = best_of_starts(problem, params, targets, stage, cfg, owner, starts)
            else:
                _, c, n = runner(cfg, stage)(problem, params, targets, stage, cfg)
            total_iters += n
            body_started = body_started or "body_pose" in stage.params
        with torch.no_grad():
            final = StageObjective(self.model, layout, cfg, cfg.stages[-1], self.priors, init_pose_given)
            loss = final(params, final.prepare(params, targets))
        return params, loss, c, total_iters

    def _output(self, params: SMPLParams, loss, converged, fitted, iterations, spread, xy, usable, K,
                layout: KeypointLayout) -> FitOutput:
        vis = usable.to(self.dtype)
        with torch.no_grad():
            out = self.model(params.pose, params.betas, params.transl, layout=layout)
            projected = project(out.keypoints, K)
            dist = (projected - xy).norm(dim=-1)
            reproj = (dist * vis).sum(1) / vis.sum(1).clamp(min=1)
            projected[:, ~out.keypoint_mask] = float("nan")
        fitted = fitted & (reproj <= MAX_RELATIVE_ERROR * spread)  # e.g. a focal length of 1e-9 px
        reproj = torch.where(fitted, reproj, torch.full_like(reproj, float("nan")))
        return FitOutput(params.detach(), loss, reproj, converged & fitted, fitted, iterations, out.joints, projected)


def _merge_outputs(parts: list[tuple[torch.Tensor, FitOutput]], P: int) -> FitOutput:
    """One :class:`FitOutput` of P people from outputs of disjoint ``rows``."""
    def merged(get):
        first = get(parts[0][1])
        out = first.new_zeros((P, *first.shape[1:]))
        for rows, o in parts:
            out[rows] = get(o)
        return out

    params = SMPLParams(**{k: merged(lambda o, k=k: getattr(o.params, k)) for k in SMPLParams.FIELDS})
    rest = {f.name: merged(lambda o, n=f.name: getattr(o, n)) for f in dataclasses.fields(FitOutput)
            if f.name != "params"}
    return FitOutput(params=params, **rest)
