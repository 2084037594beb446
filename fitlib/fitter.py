"""The batched SMPLify-style fitter: SMPL parameters from 2D keypoints, many people at once.

Every person is an independent problem.  The optimiser is a batched Adam whose
state is kept per person: each person keeps the best iterate it reaches, and a
person whose best loss stops improving leaves the working batch (per-person
early stop) and costs nothing afterwards; L-BFGS can be chosen per stage.

Without an initial estimate, the first (camera) stage runs from several headings
and the first body stage from several starting poses (the pose prior's modes),
all in one batch; each person keeps its best start.  With one (``init``, e.g. a
regressor's output), the fitter refines it.  Stages, weights and thresholds come
from a :class:`fitlib.config.FitConfig` (``configs/*.yaml``).

Camera frame: OpenCV (x right, y down, z forward), metres; keypoints in pixels.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import roma
import torch

from fitlib.body_model import BodyModel
from fitlib.camera import project
from fitlib.config import FitConfig, Stage
from fitlib.layouts import KeypointLayout, get_layout

TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
CANONICAL_SIZE = 200.0
"""A person's 2D size (box diagonal of the visible keypoints) is rescaled to this many pixels in the data term."""


@dataclass
class FitOutput:
    """Per-person results of :func:`fit_keypoints` (P people).

    Attributes:
        pose: [P, 24, 3] axis-angle, radians (joint 0: orientation in the camera frame).
        betas: [P, 10].
        transl: [P, 3] metres, camera frame.
        loss: [P] final total loss.
        reprojection_error: [P] mean pixel distance over the keypoints used (NaN if not fitted).
        converged: [P] bool, the early-stop test was met in the last stage.
        fitted: [P] bool, False for people without enough usable keypoints (their parameters are the initial ones).
        iterations: [P] optimiser iterations spent on the person, all stages.
        joints: [P, 24, 3] fitted SMPL joints in the camera frame (metres).
        projected: [P, J, 2] fitted keypoints projected (pixels; NaN for points the model cannot produce).
    """

    pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    loss: torch.Tensor
    reprojection_error: torch.Tensor
    converged: torch.Tensor
    fitted: torch.Tensor
    iterations: torch.Tensor
    joints: torch.Tensor
    projected: torch.Tensor


def relaxed_pose(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """A neutral starting pose [n, 24, 3]: arms lowered 70 degrees from the T-pose, the rest at rest."""
    pose = torch.zeros(n, 24, 3, dtype=dtype, device=device)
    pose[:, 16, 2] = -math.radians(70)  # left shoulder
    pose[:, 17, 2] = math.radians(70)  # right shoulder
    return pose


FACING_CAMERA = (math.pi, 0.0, 0.0)
"""Global orientation (axis-angle) of an upright body facing the camera: 180 degrees about x."""


def _prior_terms(config: FitConfig, device, dtype):
    """(pose penalty, angle prior, the shipped mixture prior or None).

    ``pose_prior``: ``gmm`` the mixture's negative log-likelihood; ``limits`` only the
    joint-range penalty of :func:`fitlib.priors.joint_limit_prior`; ``l2`` squared body
    pose (a placeholder); ``none`` nothing.  The mixture is also loaded whenever
    ``pose_starts`` asks for its modes as starting poses.
    """
    from fitlib import priors

    mixture = None
    if config.pose_prior in ("gmm", "limits") or config.pose_starts > 0:
        mixture = priors.load_pose_prior(config.pose_prior_file).to(device=device, dtype=dtype)
    if config.pose_prior == "gmm":
        # shifted by its value at the best mode: a normalised NLL can be negative, which would make the
        # relative early-stop test (ftol x |loss|) meaningless; the shift leaves the gradients alone
        with torch.no_grad():
            floor = mixture(mixture.start_poses(mixture.gmm_means.shape[0])).min()
        penalty = lambda bp: mixture(bp) - floor  # noqa: E731
    elif config.pose_prior == "limits":
        penalty = lambda bp: priors.joint_limit_prior(bp, mixture.joint_ranges)  # noqa: E731
    elif config.pose_prior == "l2":
        penalty = lambda bp: (bp**2).sum(-1)  # noqa: E731  (placeholder named in the config)
    else:
        penalty = lambda bp: bp.new_zeros(bp.shape[:-1])  # noqa: E731
    return penalty, priors.angle_prior, mixture


def _point_indices(layout: KeypointLayout, names: tuple[str, ...] | list[str]) -> list[int]:
    out = []
    for n in names:
        for candidate in (n, f"smpl_{n}"):
            if candidate in layout.names:
                out.append(layout.names.index(candidate))
                break
    return out


def _prepare_keypoints(keypoints: torch.Tensor, layout: KeypointLayout, model_mask: torch.Tensor,
                       config: FitConfig, image_size: torch.Tensor | None):
    """Clean keypoints [P, J, 3]: returns xy [P, J, 2], weights [P, J], usable [P, J] bool.

    ``image_size`` [P, 2] (height, width): points more than an image size outside are ignored."""
    xy, conf = keypoints[..., :2], keypoints[..., 2]
    finite = torch.isfinite(xy).all(-1) & torch.isfinite(conf)
    usable = finite & (conf >= config.keypoint_confidence_threshold) & model_mask[None]
    if image_size is not None:
        h, w = image_size[:, :1], image_size[:, 1:]
        margin = torch.maximum(h, w)
        inside = (xy[..., 0] > -margin) & (xy[..., 0] < w + margin) & (xy[..., 1] > -margin) & (xy[..., 1] < h + margin)
        usable &= inside
    xy = torch.where(usable[..., None], xy, torch.zeros_like(xy))
    conf = torch.where(usable, conf.clamp(0, 1), torch.zeros_like(conf))
    point_w = torch.tensor([config.keypoint_weights.get(n, 1.0) for n in layout.names], dtype=xy.dtype,
                           device=xy.device)
    weights = (conf**2 if config.square_confidence else conf) * point_w
    return xy, weights, usable


def _initial_translation(model: BodyModel, pose, betas, xy, usable, K, torso_idx) -> torch.Tensor:
    """Translation [P, 3] putting the torso at the depth implied by its 2D length, centred on the 2D torso."""
    ls, rs, lh, rh = torso_idx
    rest = model.rest_joints(betas)  # SMPL joints: 16/17 shoulders, 1/2 hips
    len3d = 0.5 * ((rest[:, 16] - rest[:, 1]).norm(dim=-1) + (rest[:, 17] - rest[:, 2]).norm(dim=-1))
    pairs = [(ls, lh), (rs, rh)]
    num = torch.zeros_like(len3d)
    cnt = torch.zeros_like(len3d)
    for a, b in pairs:
        ok = usable[:, a] & usable[:, b]
        num = num + torch.where(ok, (xy[:, a] - xy[:, b]).norm(dim=-1), torch.zeros_like(num))
        cnt = cnt + ok.to(num.dtype)
    # Without a visible shoulder-hip pair, fall back on shoulder or hip width (about 0.8 torso lengths).
    for a, b in ((ls, rs), (lh, rh)):
        ok = (cnt == 0) & usable[:, a] & usable[:, b]
        num = num + torch.where(ok, (xy[:, a] - xy[:, b]).norm(dim=-1) / 0.8, torch.zeros_like(num))
        cnt = cnt + ok.to(num.dtype)
    len2d = (num / cnt.clamp(min=1)).clamp(min=1.0)
    f = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    depth = (f * len3d / len2d).clamp(min=0.3)  # no upper bound: len2d >= 1 px already bounds it by f * len3d
    tmask = usable[:, list(torso_idx)].to(xy.dtype)
    centre2d = (xy[:, list(torso_idx)] * tmask[..., None]).sum(1) / tmask.sum(1, keepdim=True).clamp(min=1)
    ray = torch.stack([(centre2d[:, 0] - K[:, 0, 2]) / K[:, 0, 0], (centre2d[:, 1] - K[:, 1, 2]) / K[:, 1, 1],
                       torch.ones_like(depth)], -1)
    out = model(pose, betas)
    body_centre = out.joints[:, [1, 2, 16, 17]].mean(1)
    return ray * depth[:, None] - body_centre


class _Problem:
    """Per-person loss of one stage over a (compacted) batch."""

    def __init__(self, model: BodyModel, layout: KeypointLayout, config: FitConfig, stage: Stage,
                 prior: Callable, angle: Callable, init_pose_given: bool) -> None:
        self.model, self.layout, self.config, self.stage = model, layout, config, stage
        self.prior, self.angle = prior, angle
        self.w = {k: float(v) for k, v in stage.weights.items() if v}
        if not init_pose_given:  # the pull is towards a caller's estimate, not towards the fitter's own start
            self.w.pop("init_pull", None)
        sel = torch.zeros(len(layout), dtype=model.joint_template.dtype, device=model.joint_template.device)
        sel[_point_indices(layout, stage.keypoints) if stage.keypoints else slice(None)] = 1.0
        self.select = sel  # [J] 1 for the points the stage's data term uses
        # A stage that moves only the whole body (orientation, translation) poses the keypoints once
        # and then rotates them about the pelvis: exact, and no body model per iteration.
        self.rigid = not ({"body_pose", "betas"} & set(stage.params)) and not config.full_mesh

    def prepare(self, p: dict[str, torch.Tensor], d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``d`` plus what the stage needs precomputed: for a rigid stage the keypoints [P, J, 3] posed
        with zero orientation and translation (``body_kp``) and the rest pelvis joint [P, 3] (``root``)."""
        if not self.rigid:
            return d
        with torch.no_grad():
            pose = torch.cat([torch.zeros_like(p["global_orient"])[:, None], p["body_pose"].reshape(-1, 23, 3)], 1)
            body_kp = self.model(pose, p["betas"], layout=self.layout, validate=False).keypoints
            root = self.model.rest_joints(p["betas"])[:, 0]
        return {**d, "body_kp": body_kp, "root": root}

    def keypoints(self, p: dict[str, torch.Tensor], d: dict[str, torch.Tensor]) -> torch.Tensor:
        """The layout's points [P, J, 3] in the camera frame (metres)."""
        if self.rigid:
            R = roma.rotvec_to_rotmat(p["global_orient"])
            root = d["root"][:, None]
            return (d["body_kp"] - root) @ R.transpose(-1, -2) + root + p["transl"][:, None]
        pose = torch.cat([p["global_orient"][:, None], p["body_pose"].reshape(-1, 23, 3)], 1)
        return self.model(pose, p["betas"], p["transl"], layout=self.layout, vertices=self.config.full_mesh,
                          validate=False).keypoints

    def __call__(self, p: dict[str, torch.Tensor], d: dict[str, torch.Tensor]) -> torch.Tensor:
        proj = project(self.keypoints(p, d), d["K"])
        r2 = ((proj - d["xy"]) * d["scale"][:, None, None]).pow(2).sum(-1)
        s2 = self.config.robust_sigma**2
        w = d["weights"] * self.select
        loss = self.w.get("data", 0.0) * (w * (s2 * r2 / (s2 + r2))).sum(-1)
        if "depth" in self.w:
            loss = loss + self.w["depth"] * (p["transl"][:, 2] - d["depth0"]).pow(2)
        if "pose_prior" in self.w:
            loss = loss + self.w["pose_prior"] * self.prior(p["body_pose"])
        if "angle" in self.w:
            loss = loss + self.w["angle"] * self.angle(p["body_pose"])
        if "shape" in self.w:
            loss = loss + self.w["shape"] * p["betas"].pow(2).sum(-1)
        if "init_pull" in self.w:
            loss = loss + self.w["init_pull"] * (p["body_pose"] - d["body_pose0"]).pow(2).sum(-1)
        return loss


def _run_adam(problem: _Problem, params: dict[str, torch.Tensor], data: dict[str, torch.Tensor],
              stage: Stage, config: FitConfig):
    """Batched Adam with per-person early stop. Updates ``params`` in place; returns (loss, converged, iters).

    Each person keeps the parameters of the lowest loss it has reached (Adam's steps are
    about ``lr`` long whatever the gradient, so the last iterate can be worse than an
    earlier one); a person stops when that best loss improved by less than ``ftol``
    (relative) over the last ``window`` iterations.
    """
    P = next(iter(params.values())).shape[0]
    dev, dtype = params["transl"].device, params["transl"].dtype
    loss_out = torch.full((P,), float("nan"), dtype=dtype, device=dev)
    converged = torch.zeros(P, dtype=torch.bool, device=dev)
    iters = torch.zeros(P, dtype=torch.long, device=dev)
    ids = torch.arange(P, device=dev)
    opt = stage.params
    work = {k: v.clone() for k, v in params.items()}
    best = {k: work[k].clone() for k in opt}
    best_loss = torch.full((P,), float("inf"), dtype=dtype, device=dev)
    d = dict(data)
    m = {k: torch.zeros_like(work[k]) for k in opt}
    v = {k: torch.zeros_like(work[k]) for k in opt}
    b1, b2, eps = 0.9, 0.999, 1e-8
    conv = config.convergence
    hist: list[torch.Tensor] = []

    def write_back(rows: torch.Tensor) -> None:
        for k in opt:
            params[k][ids[rows]] = best[k][rows]
        loss_out[ids[rows]] = best_loss[rows]

    for it in range(stage.iterations):
        leaves = {k: (t.requires_grad_(True) if k in opt else t) for k, t in work.items()}
        loss = problem(leaves, d)
        grads = torch.autograd.grad(loss.sum(), [leaves[k] for k in opt])
        with torch.no_grad():
            loss = loss.detach()
            improved = loss < best_loss
            best_loss = torch.where(improved, loss, best_loss)
            for k in opt:
                best[k] = torch.where(improved.view(-1, *[1] * (best[k].ndim - 1)), leaves[k].detach(), best[k])
            t = it + 1
            # cosine decay to lr_final_ratio x lr: late iterations refine instead of jittering by lr
            frac = it / max(1, stage.iterations - 1)
            lr = stage.lr * (stage.lr_final_ratio + (1 - stage.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
            step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            for k, g in zip(opt, grads):
                m[k].mul_(b1).add_(g, alpha=1 - b1)
                v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
                work[k] = leaves[k].detach() - step * m[k] / (v[k].sqrt() + eps)
        hist.append(best_loss)
        iters[ids] += 1
        if not conv.enabled or t < max(conv.min_iterations, conv.window + 1):
            continue
        old = hist[-conv.window - 1]
        done = (old - best_loss) <= conv.ftol * old.abs().clamp(min=1e-12)
        if bool(done.any()):
            write_back(done)
            converged[ids[done]] = True
            keep = ~done
            if not bool(keep.any()):
                return loss_out, converged, iters
            ids = ids[keep]
            best_loss = best_loss[keep]
            work = {k: x[keep] for k, x in work.items()}
            best = {k: x[keep] for k, x in best.items()}
            d = {k: x[keep] for k, x in d.items()}
            m = {k: x[keep] for k, x in m.items()}
            v = {k: x[keep] for k, x in v.items()}
            hist = [h[keep] for h in hist[-conv.window - 1:]]
    write_back(torch.ones(len(ids), dtype=torch.bool, device=dev))
    return loss_out, converged, iters


SINGLE_THREAD_ROWS = 4096
"""On CPU, a stage on the fast path with fewer rows (people x starts) than this runs on one thread.

Its tensors are tiny ([rows, 24, 3, 4] and the like), so a second OpenMP thread costs more to wake
(OMP_WAIT_POLICY=PASSIVE, a shared machine) than it saves: measured on 2 cores, every stage of the
default fit of 64 people (64-832 rows) and the body stage of 512 people ran 1.2-1.6x faster on one
thread, while the 6656-row screening stage of 512 people ran 1.6x faster on two (benchmarks/RESULTS.md).
The full-mesh reference mode keeps torch's setting.  The thread count is process-wide: it is
restored when the stage ends."""


@contextlib.contextmanager
def _threads_for(rows: int, device: torch.device, config: FitConfig):
    single = device.type == "cpu" and not config.full_mesh and rows < SINGLE_THREAD_ROWS
    before = torch.get_num_threads()
    if single and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _runner(config: FitConfig, stage: Stage | None = None):
    """The optimiser of a stage (its own ``optimizer`` setting, else the config's), run on the
    number of CPU threads that suits its size (:data:`SINGLE_THREAD_ROWS`)."""
    name = (stage.optimizer if stage is not None and stage.optimizer else None) or config.optimizer
    run = _run_adam if name == "adam" else _run_lbfgs

    def run_stage(problem, params, data, stage, config):
        with _threads_for(params["transl"].shape[0], params["transl"].device, config):
            return run(problem, params, data, stage, config)

    return run_stage


def _run_lbfgs(problem: _Problem, params: dict[str, torch.Tensor], data: dict[str, torch.Tensor],
               stage: Stage, config: FitConfig):
    """L-BFGS (strong Wolfe line search), one person at a time. Same contract as :func:`_run_adam`.

    A line search over the whole batch would give everyone the step the hardest person allows, so a
    person's fit would depend on who else is in the batch; here each person has its own optimiser
    (as smplify-x, which fits one person per run), at the price of a loop over people."""
    P = params["transl"].shape[0]
    loss = torch.empty(P, dtype=params["transl"].dtype, device=params["transl"].device)
    converged = torch.zeros(P, dtype=torch.bool, device=loss.device)
    iters = torch.zeros(P, dtype=torch.long, device=loss.device)
    for i in range(P):
        leaves = {k: params[k][i:i + 1].clone().requires_grad_(k in stage.params) for k in params}
        person = {k: v[i:i + 1] for k, v in data.items()}
        opt = torch.optim.LBFGS([leaves[k] for k in stage.params], lr=1.0, max_iter=stage.iterations,
                                line_search_fn="strong_wolfe", tolerance_change=config.convergence.ftol * 1e-3)

        def closure():
            opt.zero_grad()
            total = problem(leaves, person).sum()
            total.backward()
            return total

        opt.step(closure)
        n_iter = opt.state[opt._params[0]].get("n_iter", stage.iterations)
        with torch.no_grad():
            for k in params:
                params[k][i] = leaves[k].detach()[0]
            loss[i] = problem({k: v[i:i + 1] for k, v in params.items()}, person)[0]
        converged[i], iters[i] = n_iter < stage.iterations, n_iter
    return loss, converged, iters


def check_init(init: dict | None, P: int, dtype: torch.dtype = torch.float32, device=None) -> dict[str, torch.Tensor]:
    """Starting values for P people as finite tensors, or a ValueError naming the entry.

    Args:
        init: ``pose`` ([P, 72] or [P, 24, 3] axis-angle, radians), ``betas`` [P, 10], ``transl``
            [P, 3] (metres, camera frame, in front of the camera); arrays, lists or tensors; missing
            or None entries are left out.
    Returns:
        ``{"pose": [P, 72], "betas": [P, 10], "transl": [P, 3]}`` (the entries given), new tensors.
    """
    sizes = {"pose": 72, "betas": 10, "transl": 3}
    if init is not None and not isinstance(init, dict):
        raise ValueError(f"init must be a dict with pose / betas / transl, got {type(init).__name__}")
    unknown = sorted(set(init or {}) - set(sizes))
    if unknown:
        raise ValueError(f"init has unknown entries {unknown}; it takes {sorted(sizes)}")
    out = {}
    for key, value in (init or {}).items():
        if value is None:
            continue
        if isinstance(value, torch.Tensor):  # e.g. a regressor's output
            value = value.detach()
        try:
            t = torch.as_tensor(value, dtype=dtype, device=device)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"init {key} is not numeric: {type(value).__name__}") from None
        if t.numel() != P * sizes[key]:
            raise ValueError(f"init {key} must hold {sizes[key]} numbers per person for {P} people, "
                             f"got shape {tuple(t.shape)}")
        t = t.reshape(P, sizes[key]).clone()
        if not torch.isfinite(t).all():
            raise ValueError(f"init {key} contains NaN or infinite values")
        out[key] = t
    if "transl" in out and bool((out["transl"][:, 2] <= 0).any()):
        raise ValueError("init transl puts a person at or behind the camera (z <= 0; camera frame, z forward)")
    return out


def fit_keypoints(model: BodyModel, keypoints: torch.Tensor, K: torch.Tensor, layout: str | KeypointLayout = "coco17",
                  config: FitConfig | None = None, init: dict[str, torch.Tensor] | None = None,
                  image_size: tuple[int, int] | torch.Tensor | None = None) -> FitOutput:
    """Fit SMPL to the 2D keypoints of P people.

    Args:
        model: the body model.
        keypoints: [P, J, 3] (x px, y px, confidence in [0, 1]) in ``layout``; NaN or
            low-confidence points are ignored.
        K: [P, 3, 3] or [3, 3] intrinsics (pixels).
        config: fitting settings (default ``configs/default.yaml``).
        init: optional starting values: ``pose`` [P, 24, 3] or [P, 72], ``betas`` [P, 10],
            ``transl`` [P, 3] (camera frame, metres); missing ones use the defaults
            (relaxed pose facing the camera, mean shape, depth from torso length).
        image_size: (height, width) in pixels, or [P, 2] per person (people from several
            images fit in one batch); keypoints far outside their image are ignored.
    Returns:
        :class:`FitOutput`; people without enough keypoints are flagged ``fitted=False``.
    """
    from fitlib.config import load_config

    config = load_config(config)
    layout = get_layout(layout)
    dtype, dev = model.joint_template.dtype, model.joint_template.device
    keypoints = torch.as_tensor(keypoints, dtype=dtype, device=dev)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (len(layout), 3):
        raise ValueError(f"keypoints for layout {layout.name!r} must have shape [P, {len(layout)}, 3], "
                         f"got {tuple(keypoints.shape)}")
    P = keypoints.shape[0]
    K = torch.as_tensor(K, dtype=dtype, device=dev)
    if K.shape == (3, 3):
        K = K.expand(P, 3, 3)
    if K.shape != (P, 3, 3) or not torch.isfinite(K).all() or bool((K[:, [0, 1], [0, 1]] <= 0).any()):
        raise ValueError(f"K must be finite [3, 3] or [P, 3, 3] intrinsics with positive focal lengths fx, fy, "
                         f"got shape {tuple(K.shape)}")
    kmap = model.keypoint_map(layout)
    if image_size is not None:
        size_t = torch.as_tensor(image_size, dtype=dtype, device=dev)
        if size_t.numel() not in (2, 2 * P) or not torch.isfinite(size_t).all() or bool((size_t <= 0).any()):
            raise ValueError(f"image_size must be a positive (height, width) in pixels or [P, 2] of them for P={P}, "
                             f"got {image_size!r}")
        image_size = size_t.reshape(-1, 2).expand(P, 2)
    xy, weights, usable = _prepare_keypoints(keypoints, layout, kmap.mask, config, image_size)
    torso_idx = _point_indices(layout, TORSO)
    if len(torso_idx) != 4:
        raise ValueError(f"layout {layout.name!r} has no shoulders and hips to fit the torso on")
    fitted = usable[:, torso_idx].sum(1) >= config.min_torso_keypoints

    init = check_init(init, P, dtype, dev)
    init_pose_given = "pose" in init
    pose0 = init["pose"].reshape(P, 24, 3) if init_pose_given else relaxed_pose(P, dtype, dev)
    if not init_pose_given:
        pose0[:, 0] = torch.tensor(FACING_CAMERA, dtype=dtype, device=dev)
    betas0 = init["betas"] if "betas" in init else torch.zeros(P, 10, dtype=dtype, device=dev)
    transl0 = init.get("transl")
    with torch.no_grad():
        if transl0 is None:
            transl0 = _initial_translation(model, pose0, betas0, xy, usable, K, torso_idx)

    vis = usable.to(dtype)
    lo = torch.where(usable[..., None], xy, torch.full_like(xy, float("inf"))).amin(1)
    hi = torch.where(usable[..., None], xy, torch.full_like(xy, float("-inf"))).amax(1)
    size = (hi - lo).norm(dim=-1)  # diagonal of the visible keypoints' box
    size = torch.where(torch.isfinite(size) & (size > 1), size, torch.full_like(size, 100.0))
    data_all = {"xy": xy, "weights": weights * vis, "K": K, "scale": CANONICAL_SIZE / size,
                "depth0": transl0[:, 2].clone(), "body_pose0": pose0[:, 1:].reshape(P, 69).clone()}
    params_all = {"global_orient": pose0[:, 0].clone(), "body_pose": pose0[:, 1:].reshape(P, 69).clone(),
                  "betas": betas0.clone(), "transl": transl0.clone()}

    idx = torch.nonzero(fitted).flatten()
    loss = torch.full((P,), float("nan"), dtype=dtype, device=dev)
    converged = torch.zeros(P, dtype=torch.bool, device=dev)
    iterations = torch.zeros(P, dtype=torch.long, device=dev)
    if idx.numel():
        params = {k: v[idx] for k, v in params_all.items()}
        data = {k: v[idx] for k, v in data_all.items()}
        prior, angle, mixture = _prior_terms(config, dev, dtype)
        total_iters = torch.zeros(idx.numel(), dtype=torch.long, device=dev)
        body_started = False
        for i, stage in enumerate(config.stages):
            problem = _Problem(model, layout, config, stage, prior, angle, init_pose_given)
            data = problem.prepare(params, data)
            if i == 0 and "global_orient" in stage.params:
                owner, starts = _heading_starts(params, data, config, layout, usable[idx], not init_pose_given)
                params, l, c, n = _best_of_starts(problem, params, data, stage, config, owner, starts)
            elif "body_pose" in stage.params and not body_started and not init_pose_given \
                    and config.pose_starts > 0:
                owner, starts = _pose_starts(params, mixture.start_poses(config.pose_starts))
                params, l, c, n = _best_of_starts(problem, params, data, stage, config, owner, starts)
            else:
                l, c, n = _runner(config, stage)(problem, params, data, stage, config)
            total_iters += n
            body_started = body_started or "body_pose" in stage.params
        with torch.no_grad():
            final = _Problem(model, layout, config, config.stages[-1], prior, angle, init_pose_given)
            loss[idx] = final(params, final.prepare(params, data))
        converged[idx] = c
        iterations[idx] = total_iters
        for k in params_all:
            params_all[k][idx] = params[k].detach()

    pose = torch.cat([params_all["global_orient"][:, None], params_all["body_pose"].reshape(P, 23, 3)], 1)
    with torch.no_grad():
        out = model(pose, params_all["betas"], params_all["transl"], layout=layout)
        projected = project(out.keypoints, K)
        dist = (projected - xy).norm(dim=-1)
        reproj = (dist * vis).sum(1) / vis.sum(1).clamp(min=1)
        projected[:, ~out.keypoint_mask] = float("nan")
    reproj = torch.where(fitted, reproj, torch.full_like(reproj, float("nan")))
    return FitOutput(pose.detach(), params_all["betas"].detach(), params_all["transl"].detach(), loss, reproj,
                     converged, fitted, iterations, out.joints, projected)


def _best_of_starts(problem, params, data, stage, config, owner: torch.Tensor, starts: dict[str, torch.Tensor]):
    """Run a stage from several starts per person and keep, per person, the start of lowest loss.

    Args:
        params, data: per-person tensors [P, ...].
        owner: [S] person index of each start.
        starts: start parameters [S, ...] (all of ``params``' keys).
    Returns:
        (params [P, ...], loss [P], converged [P], iterations [P] summed over the starts).
    """
    run = _runner(config, stage)
    P = params["transl"].shape[0]
    dev = owner.device
    l, c, n = run(problem, starts, {k: v[owner] for k, v in data.items()}, stage, config)
    iters = torch.zeros(P, dtype=n.dtype, device=dev).index_add_(0, owner, n)
    pick = _best_rows(torch.nan_to_num(l, nan=float("inf")), owner, 1)
    pick = pick[torch.argsort(owner[pick])]  # one row per person, in person order
    return {k: v[pick] for k, v in starts.items()}, l[pick], c[pick], iters


def _best_rows(loss: torch.Tensor, owner: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` lowest-loss rows of each owner (ties: the earlier row)."""
    order = torch.argsort(loss, stable=True)
    order = order[torch.argsort(owner[order], stable=True)]  # grouped by owner, by loss within a group
    grouped = owner[order]
    start = torch.searchsorted(grouped, grouped)  # first position of each row's group
    rank = torch.arange(len(order), device=order.device) - start
    return order[rank < k]


def _heading_starts(params, data, config, layout, usable, free_heading: bool):
    """Starts of the first stage: ``config.camera_headings`` (degrees about the body's vertical axis)
    for people without an initial orientation; with one, the turned body (180 degrees) only for
    people whose shoulders are too close in 2D to tell front from back."""
    P = params["transl"].shape[0]
    dev, dtype = params["transl"].device, params["transl"].dtype
    if free_heading:
        extra = [(torch.arange(P, device=dev), h) for h in config.camera_headings if h % 360]
    else:
        ls, rs, lh, rh = _point_indices(layout, TORSO)
        xy = data["xy"]
        width = (xy[:, ls] - xy[:, rs]).norm(dim=-1)
        height = 0.5 * ((xy[:, ls] - xy[:, lh]).norm(dim=-1) + (xy[:, rs] - xy[:, rh]).norm(dim=-1))
        ambiguous = usable[:, [ls, rs, lh, rh]].all(1) & (width < config.flip_threshold * height)
        extra = [(torch.nonzero(ambiguous).flatten(), 180.0)]
    extra = [(idx, h) for idx, h in extra if idx.numel()]
    owner = torch.cat([torch.arange(P, device=dev)] + [idx for idx, _ in extra])
    starts = {k: v[owner].clone() for k, v in params.items()}
    orients = [params["global_orient"]]
    for idx, h in extra:
        turn = torch.tensor([0.0, math.radians(h), 0.0], dtype=dtype, device=dev).expand(idx.numel(), 3)
        orients.append(roma.rotvec_composition([params["global_orient"][idx], turn]))
    starts["global_orient"] = torch.cat(orients)
    return owner, starts


def _pose_starts(params, prior_poses: torch.Tensor):
    """Starts of the body stage: each person's current pose, then each of ``prior_poses`` [S, 69]."""
    P = params["transl"].shape[0]
    S = prior_poses.shape[0]
    owner = torch.arange(P, device=prior_poses.device).repeat(S + 1)
    starts = {k: v[owner].clone() for k, v in params.items()}
    starts["body_pose"][P:] = prior_poses.repeat_interleave(P, 0)
    return owner, starts
