"""Fitting tracked people over time: warm starts that do not drift, one shape per track, smoothing.

:func:`fit_sequence` works on :class:`Step` records (one per video frame: the people's keypoints,
intrinsics, image sizes and track ids), so that a video (:func:`fitlib.video.fit_video`) and a benchmark
batching many sequences share it. Per frame, every person of a track fitted recently is refined from that
track's last fit (``Fitter.fit(..., init=[previous or None])``). Chained refines drift in 3D (each frame's
detector noise is followed along the depth ambiguities and never undone), so with ``warm="best"`` (the
default) every such person is also fitted from the regressor's estimate (the default config's path
without ``init``), and keeps whichever of the two scores lower under one objective that neither start
favours (:class:`Scorer`: the robust reprojection term and the priors of the refine, without its pulls
towards the start). ``warm="reseed"`` refines warm and restarts every track from the regressor every
``reseed`` frames (cheaper); ``warm="scratch"`` fits every frame independently.

After the per-frame pass, each track gets one shape (:func:`track_betas`: the median of its per-frame
betas; optionally refitted with it held, ``betas_refit``: measured no more accurate for 35-45 % more time),
then its pose and translation are smoothed in time (:mod:`fitlib.video.smoothing`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from fitlib import losses
from fitlib.body.layouts import get_layout
from fitlib.camera import project
from fitlib.fitting import FitOutput, Fitter
from fitlib.fitting.refine import RefineObjective, RefineTargets, pack
from fitlib.params import SMPLParams
from fitlib.video.smoothing import METHODS, smooth_params

WARM_MODES = ("best", "reseed", "warm", "scratch")


@dataclass
class Step:
    """One frame's people (P of them): ``keypoints`` [P, J, 3] (x px, y px, confidence), ``K`` [P, 3, 3] px,
    ``image_size`` [P, 2] (height, width px), ``ids`` [P] track ids, ``time`` seconds, and ``world`` [P, 33, 3]
    BlazePose world landmarks (m, the bundled detector's; NaN rows: none) or None."""

    keypoints: torch.Tensor
    K: torch.Tensor
    image_size: torch.Tensor
    ids: np.ndarray
    time: float
    world: torch.Tensor | None = None


@dataclass
class StepFit:
    """The fits of one :class:`Step`'s P people: ``params`` (float64, [P] rows), ``fitted`` [P],
    ``converged`` [P], ``loss`` [P] (of the per-frame fit), ``reprojection_error`` [P] px, ``joints``
    [P, 24, 3] m, ``projected`` [P, J, 2] px, ``source`` [P] ("warm", "regressor" or "" if not fitted)."""

    params: SMPLParams
    fitted: np.ndarray
    converged: np.ndarray
    loss: np.ndarray
    reprojection_error: np.ndarray
    joints: np.ndarray
    projected: np.ndarray
    source: list[str] = field(default_factory=list)


@dataclass
class SequenceSettings:
    """How :func:`fit_sequence` fits a sequence.

    Attributes:
        warm: ``"best"`` (warm refine and regressor start per person, the better one kept), ``"reseed"``
            (warm, restarted from the regressor every ``reseed`` frames), ``"warm"`` (warm only, chained),
            ``"scratch"`` (every frame on its own).
        reseed: frames between restarts for ``warm="reseed"``.
        max_gap: a track's last fit warm-starts it again after at most this many frames unseen.
        track_betas: give each track one shape (the median of its betas).
        betas_pull: the refine's ``init_shape`` weight of the refit with ``betas_refit``.
        betas_refit: refit every frame from its fit with the track's betas pulled by ``betas_pull``; False
            (default): only replace the per-frame betas by the track's (the joints move with the shape).
        smoothing: one of :data:`fitlib.video.smoothing.METHODS`.
        window_s: the Savitzky-Golay window in seconds (0.3: 9 frames at 30 fps; at least 5 frames), order 2,
            unless ``rotation_settings`` / ``translation_settings`` give a ``window`` in frames.
        rotation_settings / translation_settings: the filter's settings (see :func:`smooth_params`); the
            One-Euro defaults are ``min_cutoff`` 3 Hz, ``beta`` 0.5.
        warm_iterations: the warm refines' Levenberg-Marquardt iterations, without the turned-body screen
            (None: the config's, with it); 2 (default) is as accurate as the config's 6 from a previous frame
            (67.3 against 67.8 mm with ``best``) at 2-3x their people/s.
        score_pose_prior: the pose-prior weight of :class:`Scorer` (None: the refine's 0.1; 1.0, the body
            stages', picks the 3D-better fit more often: 63.6 against 66.5 mm after smoothing on the benchmark).
    """

    warm: str = "best"
    reseed: int = 5
    max_gap: int = 10
    track_betas: bool = True
    betas_pull: float = 1000.0
    betas_refit: bool = False
    smoothing: str = "savgol"
    window_s: float = 0.3
    rotation_settings: dict = field(default_factory=dict)
    translation_settings: dict = field(default_factory=dict)
    score_pose_prior: float | None = 1.0
    warm_iterations: int | None = 2

    def __post_init__(self) -> None:
        if self.warm not in WARM_MODES:
            raise ValueError(f"warm must be one of {WARM_MODES}, got {self.warm!r}")
        if self.smoothing not in METHODS:
            raise ValueError(f"smoothing must be one of {METHODS}, got {self.smoothing!r}")
        for name in ("reseed", "max_gap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (1 if name == "reseed" else 0):
                raise ValueError(f"{name} must be a {'positive' if name == 'reseed' else 'non-negative'} number of "
                                 f"frames, got {v!r}")
        if not (isinstance(self.betas_pull, (int, float)) and self.betas_pull >= 0):
            raise ValueError(f"betas_pull must be a non-negative weight, got {self.betas_pull!r}")


class Scorer:
    """One objective to compare fits of the same keypoints made from different starts: the refine's robust
    reprojection term and priors (:class:`fitlib.fitting.refine.RefineObjective`) without its pulls
    towards the start (which would favour each fit's own start)."""

    def __init__(self, fitter: Fitter, layout: str, pose_prior: float | None = None) -> None:
        cfg = fitter.config
        self.fitter, self.layout = fitter, get_layout(layout)
        refine = cfg.refine
        self.weights = {k: float(v) for k, v in (refine.weights if refine else {"data": 1.0}).items()
                        if k not in ("init_pull", "init_shape")}
        if pose_prior is not None:
            self.weights["pose_prior"] = float(pose_prior)
        self.sigma = (refine.robust_sigma if refine else None) or cfg.robust_sigma

    def __call__(self, params: SMPLParams, keypoints: torch.Tensor, K: torch.Tensor,
                 image_size: torch.Tensor) -> torch.Tensor:
        """[P] objective of fits ``params`` [P] of ``keypoints`` [P, J, 3] (K [P, 3, 3], image_size [P, 2])."""
        f = self.fitter
        dtype, dev = f.dtype, f.device
        cfg = f.config
        kp = keypoints.to(dev, dtype)
        kmap = f.model.keypoint_map(self.layout)
        pw = losses.point_weights(self.layout, cfg.keypoint_weights, dtype, dev)
        xy, w, usable = losses.clean_keypoints(kp, kmap.mask, pw, cfg.keypoint_confidence_threshold,
                                               cfg.square_confidence, image_size.to(dev, dtype))
        p = params.to(dev, dtype)
        rt = RefineTargets(xy, w, K.to(dev, dtype), losses.canonical_scale(xy, usable), p.body_pose, p.betas)
        return RefineObjective(f.model, self.layout, self.weights, self.sigma, f.priors, rt).loss(pack(p))


_OUT_FIELDS = ("loss", "reprojection_error", "converged", "fitted", "iterations", "joints", "projected")


def _cat_outputs(outs: list) -> "FitOutput":
    """One output of the people of several :class:`~fitlib.fitting.FitOutput` s, in order."""
    first = outs[0]
    return dataclasses.replace(first, params=SMPLParams.cat([o.params for o in outs]),
                               **{k: torch.cat([getattr(o, k) for o in outs]) for k in _OUT_FIELDS})


def _take(out, idx: torch.Tensor):
    return dataclasses.replace(out, params=out.params.index(idx), **{k: getattr(out, k)[idx] for k in _OUT_FIELDS})


def fit_step(fitter: Fitter, step: Step, layout: str, inits: list[SMPLParams | None], scorer: Scorer | None,
             warm_fitter: Fitter | None = None) -> StepFit:
    """Fit one frame: people with an init are refined from it (by ``warm_fitter``, default ``fitter``; with a
    ``scorer`` they are also fitted from the regressor, keeping the lower score); the others from the
    regressor (or the multistart path)."""
    P = len(step.ids)
    if P == 0:
        J = step.keypoints.shape[1]
        e = np.zeros(0)
        return StepFit(SMPLParams(*(torch.zeros(0, n, dtype=torch.float64) for n in (3, 69, 10, 3))), e.astype(bool),
                       e.astype(bool), e, e, np.zeros((0, 24, 3)), np.zeros((0, J, 2)), [])
    warm_fitter = warm_fitter or fitter
    warm_rows = [i for i, v in enumerate(inits) if v is not None]
    cold_rows = list(range(P)) if scorer is not None else [i for i in range(P) if inits[i] is None]
    parts, where = [], []  # outputs and, per output row, the person it belongs to
    if cold_rows:
        r = torch.tensor(cold_rows)
        parts.append(fitter.fit(step.keypoints[r], step.K[r], layout, image_size=step.image_size[r],
                                world=None if step.world is None else step.world[r]))
        where += cold_rows
    if warm_rows:
        r = torch.tensor(warm_rows)
        parts.append(warm_fitter.fit(step.keypoints[r], step.K[r], layout, init=[inits[i] for i in warm_rows],
                                     image_size=step.image_size[r], world=None if step.world is None else step.world[r]))
        where += warm_rows
    both = _cat_outputs(parts)
    n_cold = len(cold_rows)
    pick = [0] * P
    source = [""] * P
    for k, i in enumerate(where[:n_cold]):
        pick[i], source[i] = k, "regressor"
    for k, i in enumerate(where[n_cold:], start=n_cold):
        if scorer is None:
            pick[i], source[i] = k, "warm"
    if scorer is not None and warm_rows:
        cand = torch.tensor(warm_rows)  # their rows among the cold fits are their person indices
        alt = torch.arange(n_cold, n_cold + len(warm_rows))
        ok_a, ok_b = both.fitted[cand], both.fitted[alt]
        score_a = scorer(both.params.index(cand), step.keypoints[cand], step.K[cand], step.image_size[cand])
        score_b = scorer(both.params.index(alt), step.keypoints[cand], step.K[cand], step.image_size[cand])
        for j, i in enumerate(warm_rows):
            if bool(ok_b[j]) and (not bool(ok_a[j]) or float(score_b[j]) <= float(score_a[j])):
                pick[i], source[i] = n_cold + j, "warm"
    out = _take(both, torch.tensor(pick))
    np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
    fitted = np_(out.fitted).astype(bool)
    source = [s if fitted[i] else "" for i, s in enumerate(source)]
    return StepFit(out.params.to(dtype=torch.float64, device="cpu"), fitted, np_(out.converged).astype(bool),
                   np_(out.loss).astype(np.float64), np_(out.reprojection_error).astype(np.float64),
                   np_(out.joints).astype(np.float64), np_(out.projected).astype(np.float64), source)


def warm_fitter_for(fitter: Fitter, settings: "SequenceSettings") -> Fitter:
    """The fitter of the warm refines: ``fitter`` itself, or with ``settings.warm_iterations`` set, one whose
    refine stops after that many iterations and tries no turned body (the previous frame knows the heading)."""
    if settings.warm_iterations is None or fitter.config.refine is None:
        return fitter
    cfg = fitter.config
    return _variant(fitter, ("warm", settings.warm_iterations), cfg.replace(
        flip_threshold=0.0, refine={**cfg.refine.model_dump(), "max_iterations": int(settings.warm_iterations)}))


class WarmStarts:
    """Which start each person of the next frame gets under :class:`SequenceSettings` (``warm``, ``reseed``,
    ``max_gap``): :meth:`inits` gives the per-person inits, :meth:`record` keeps a frame's fits."""

    def __init__(self, settings: SequenceSettings) -> None:
        self.s = settings
        self.last: dict[int, tuple[int, SMPLParams]] = {}  # track id -> (step, its last fit)
        self.since_seed: dict[int, int] = {}

    def inits(self, t: int, ids: np.ndarray, device, dtype) -> list[SMPLParams | None]:
        """Per person of step ``t`` (track ids ``ids``): its track's last fit, or None (regressor start)."""
        s, out = self.s, []
        for tid in np.asarray(ids).tolist():
            prev = self.last.get(tid)
            use = s.warm != "scratch" and prev is not None and t - prev[0] <= s.max_gap + 1
            if use and s.warm == "reseed" and self.since_seed.get(tid, 0) >= s.reseed:
                use = False
            out.append(prev[1].to(device, dtype) if use else None)
        return out

    def record(self, t: int, ids: np.ndarray, inits: list, fit: StepFit) -> None:
        for i, tid in enumerate(np.asarray(ids).tolist()):
            if fit.fitted[i]:
                self.last[tid] = (t, fit.params.index(slice(i, i + 1)))
                self.since_seed[tid] = 0 if inits[i] is None else self.since_seed.get(tid, 0) + 1


def fit_sequence(fitter: Fitter, steps: list[Step], layout: str = "coco17",
                 settings: SequenceSettings | None = None, progress=None) -> list[StepFit]:
    """Fit every step of a tracked sequence (see the module doc); returns one :class:`StepFit` per step.

    ``progress``: an optional callable ``progress(step_index)`` called after each step's per-frame fit."""
    s = settings or SequenceSettings()
    scorer = Scorer(fitter, layout, s.score_pose_prior) if s.warm == "best" else None
    starts = WarmStarts(s)
    warm_fitter = warm_fitter_for(fitter, s)
    fits: list[StepFit] = []
    for t, step in enumerate(steps):
        inits = starts.inits(t, step.ids, fitter.device, fitter.dtype)
        fit = fit_step(fitter, step, layout, inits, scorer, warm_fitter)
        starts.record(t, step.ids, inits, fit)
        fits.append(fit)
        if progress is not None:
            progress(t)
    return postprocess(fitter, steps, fits, layout, s)


def postprocess(fitter: Fitter, steps: list[Step], fits: list[StepFit], layout: str,
                settings: SequenceSettings) -> list[StepFit]:
    """The per-track steps after the per-frame pass: one betas per track and its refit (``track_betas``),
    then smoothing (``smoothing``)."""
    if settings.track_betas and steps:
        fits = refit_with_track_betas(fitter, steps, fits, layout, settings.betas_pull, settings.betas_refit)
    if settings.smoothing != "none":
        fits = smooth_sequence(fitter, steps, fits, layout, settings)
    return fits


def track_rows(steps: list[Step], fits: list[StepFit]) -> dict[int, list[tuple[int, int]]]:
    """Per track id, its fitted (step, row) pairs in time order."""
    rows: dict[int, list[tuple[int, int]]] = {}
    for t, (step, fit) in enumerate(zip(steps, fits)):
        for i, tid in enumerate(step.ids.tolist()):
            if fit.fitted[i]:
                rows.setdefault(int(tid), []).append((t, i))
    return rows


def track_betas(fits: list[StepFit], rows: list[tuple[int, int]]) -> np.ndarray:
    """[10] one shape for a track: the per-coefficient median of its per-frame betas (robust to the frames
    whose fit went wrong)."""
    return np.median(np.stack([fits[t].params.betas[i].numpy() for t, i in rows]), 0)


def refit_with_track_betas(fitter: Fitter, steps: list[Step], fits: list[StepFit], layout: str,
                           betas_pull: float, refit: bool = True) -> list[StepFit]:
    """Every fitted person refined once more from its fit, with its track's betas (:func:`track_betas`)
    as the start and pulled towards with weight ``betas_pull``; all person-frames in one batch. With
    ``refit`` False the betas are only replaced."""
    cfg = fitter.config
    if cfg.refine is None:
        return fits
    pulled = _pulled_fitter(fitter, float(betas_pull))
    per_track = track_rows(steps, fits)
    todo: list[tuple[int, int]] = []
    inits = []
    for tid, rows in per_track.items():
        betas = torch.as_tensor(track_betas(fits, rows))[None]
        for t, i in rows:
            todo.append((t, i))
            inits.append(fits[t].params.index(slice(i, i + 1)).replace(betas=betas.clone()))
    if not todo:
        return fits
    if not refit:
        return _write_back(fits, todo, SMPLParams.cat(inits), None, fitter, steps, layout)
    kp = torch.stack([steps[t].keypoints[i] for t, i in todo])
    Ks = torch.stack([steps[t].K[i] for t, i in todo])
    sizes = torch.stack([steps[t].image_size[i] for t, i in todo])
    world = None
    if any(steps[t].world is not None for t, _ in todo):
        world = torch.stack([steps[t].world[i] if steps[t].world is not None else
                             torch.full((33, 3), float("nan"), dtype=torch.float64) for t, i in todo])
    init = SMPLParams.cat(inits).to(fitter.device, fitter.dtype)
    out = pulled.fit(kp, Ks, layout, init=init, image_size=sizes, world=world)
    return _write_back(fits, todo, out.params.to(dtype=torch.float64, device="cpu"), out.fitted.cpu().numpy(),
                       fitter, steps, layout, losses_=out.loss.detach().cpu().numpy())


def _variant(fitter: Fitter, key, config) -> Fitter:
    """A Fitter sharing ``fitter``'s model, priors and regressor with another ``config`` (kept on ``fitter``
    under ``key``, built once)."""
    cache = fitter.__dict__.setdefault("_video_variants", {})
    if key not in cache:
        variant = Fitter.__new__(Fitter)
        variant.__dict__.update({k: v for k, v in fitter.__dict__.items() if k != "_video_variants"})
        variant.config = config
        cache[key] = variant
    return cache[key]


def _pulled_fitter(fitter: Fitter, betas_pull: float) -> Fitter:
    """A Fitter like ``fitter`` whose refine pulls the betas with weight ``betas_pull``."""
    cfg = fitter.config
    weights = {**cfg.refine.weights, "init_shape": betas_pull}
    return _variant(fitter, ("betas", betas_pull), cfg.replace(refine={**cfg.refine.model_dump(), "weights": weights}))


def _filter_settings(settings: SequenceSettings, given: dict, times: np.ndarray) -> dict:
    """The filter's settings for one track: ``given`` completed with the defaults of the method (the
    Savitzky-Golay window from ``window_s`` and the track's median frame interval)."""
    out = dict(given)
    if settings.smoothing == "savgol":
        if "window" not in out:
            dt = float(np.median(np.diff(times))) if len(times) > 1 else 1 / 30
            n = int(round(settings.window_s / max(dt, 1e-6)))
            out["window"] = max(5, n + 1 - n % 2)  # odd; 3 frames of order 2 would change nothing
        out.setdefault("order", 2)
    elif settings.smoothing in ("one_euro", "one_euro2"):
        out.setdefault("min_cutoff", 3.0)
        out.setdefault("beta", 0.5)
    return out


def smooth_sequence(fitter: Fitter, steps: list[Step], fits: list[StepFit], layout: str,
                    settings: SequenceSettings) -> list[StepFit]:
    """Each track's fitted frames smoothed in time (:func:`fitlib.video.smoothing.smooth_params`); joints,
    projections and reprojection errors recomputed."""
    todo, new = [], []
    for tid, rows in track_rows(steps, fits).items():
        if len(rows) < 3:
            continue
        poses = np.stack([fits[t].params.pose[i].reshape(72).numpy() for t, i in rows])
        transl = np.stack([fits[t].params.transl[i].numpy() for t, i in rows])
        times = np.array([steps[t].time for t, _ in rows])
        sp, st = smooth_params(poses, transl, times, settings.smoothing,
                               _filter_settings(settings, settings.rotation_settings, times),
                               _filter_settings(settings, settings.translation_settings, times))
        for k, (t, i) in enumerate(rows):
            todo.append((t, i))
            new.append(SMPLParams.from_pose(torch.as_tensor(sp[k:k + 1]), fits[t].params.betas[i:i + 1].clone(),
                                            torch.as_tensor(st[k:k + 1])))
    if not todo:
        return fits
    return _write_back(fits, todo, SMPLParams.cat(new), None, fitter, steps, layout)


def _write_back(fits: list[StepFit], todo: list[tuple[int, int]], params: SMPLParams, fitted: np.ndarray | None,
                fitter: Fitter, steps: list[Step], layout: str, losses_: np.ndarray | None = None) -> list[StepFit]:
    """New :class:`StepFit` records with the people ``todo`` replaced by ``params`` (where ``fitted``), their
    joints, projections and reprojection errors recomputed with the body model."""
    fits = [dataclasses.replace(f, params=f.params.clone(), fitted=f.fitted.copy(), loss=f.loss.copy(),
                                reprojection_error=f.reprojection_error.copy(), joints=f.joints.copy(),
                                projected=f.projected.copy()) for f in fits]
    keep = np.ones(len(todo), bool) if fitted is None else fitted.astype(bool)
    sel = [k for k in range(len(todo)) if keep[k]]
    if not sel:
        return fits
    p = params.index(torch.tensor(sel)).to(fitter.device, fitter.dtype)
    kp = torch.stack([steps[todo[k][0]].keypoints[todo[k][1]] for k in sel]).to(fitter.device, fitter.dtype)
    Ks = torch.stack([steps[todo[k][0]].K[todo[k][1]] for k in sel]).to(fitter.device, fitter.dtype)
    with torch.no_grad():
        out = fitter.model(p.pose, p.betas, p.transl, layout=layout)
        proj = project(out.keypoints, Ks)
        cfg = fitter.config
        usable = (kp[..., 2] >= cfg.keypoint_confidence_threshold) & torch.isfinite(kp).all(-1) & \
            out.keypoint_mask[None]
        dist = (proj - torch.nan_to_num(kp[..., :2])).norm(dim=-1)
        reproj = (dist * usable).sum(1) / usable.sum(1).clamp(min=1)
        proj[:, ~out.keypoint_mask] = float("nan")
    p64 = p.to(dtype=torch.float64, device="cpu")
    for j, k in enumerate(sel):
        t, i = todo[k]
        f = fits[t]
        for name in SMPLParams.FIELDS:
            getattr(f.params, name)[i] = getattr(p64, name)[j]
        f.joints[i] = out.joints[j].double().cpu().numpy()
        f.projected[i] = proj[j].double().cpu().numpy()
        f.reprojection_error[i] = float(reproj[j])
        if losses_ is not None:
            f.loss[i] = float(losses_[k])
    return fits
