"""The methods a benchmark compares, by name: fitters with a config, oracles, stand-in regressors, and
fits started from another method's estimate.

A method maps N people's 2D keypoints (COCO-17) and intrinsics to camera-frame SMPL parameters. Names
(see :func:`method_factory`):

* ``spin``: the reference SMPLify mode (``configs/spin.yaml``: full mesh each iteration,
  Adam 100 + 100 iterations, from the mean pose, no early stop);
* ``default``, ``fast``, any shipped config or ``.yaml`` file, with ``@key=value`` overrides;
* ``gt``: the ground truth re-expressed in the camera frame (a sanity check: 0 mm on the
  synthetic set, the neutral-vs-gendered model gap on real 3DPW);
* ``noisy_gt``, ``noisy_gt_strong``: the ground truth with seeded errors, stand-ins for a regressor;
* ``regressor``: the shipped keypoint regressor alone; ``regressor@checkpoint=PATH@world=SIGMA@world_flip=P``:
  another regressor file; simulated BlazePose world landmarks (from the ground truth, as the detector-like 2D
  are) for a network with the world-landmark branch and for the fit started from it (``regressor@world=...+default``);
* ``INIT+CONFIG`` (e.g. ``noisy_gt+default``): the fit started from method INIT's estimate, as
  ``fitlib.fit(..., init=...)`` refines a regressor's.
"""
from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import roma
import torch
import yaml

from fitlib.body.layouts import get_layout
from fitlib.body.model import BodyModel
from fitlib.fitting import FitConfig, Fitter, load_config
from fitlib.params import SMPLParams

LAYOUT = "coco17"
"""The layout of :attr:`MethodInput.keypoints`."""


@dataclass
class MethodInput:
    """What a method sees: N people's keypoints with their camera; ``gt`` only for the oracles."""

    keypoints: torch.Tensor  # [N, J, 3] in ``layout`` (x px, y px, confidence)
    K: torch.Tensor  # [N, 3, 3]
    image_size: tuple[int, int]  # (height, width) px
    gt: SMPLParams  # [N] ground truth in the camera frame
    layout: str = LAYOUT  # the keypoints' layout


@dataclass
class Prediction:
    """A method's answer: camera-frame parameters of the N people, and which it could fit (None: all)."""

    params: SMPLParams
    fitted: torch.Tensor | None = None  # [N] bool
    world: np.ndarray | None = None  # [N, 33, 3] the world landmarks it was given (a fit started from it reads them too)


Method = Callable[[BodyModel, MethodInput], Prediction]
"""A method: (body model, inputs) -> :class:`Prediction`."""


def fitter_method(config: str | FitConfig, init: Method | None = None) -> Method:
    """A method running a :class:`~fitlib.fitting.Fitter` with a config, from the fitter's own starts
    or, given ``init``, from that method's estimate (``fit(..., init=...)``, as a regressor will).
    The Fitter is built once per body model and reused for every call."""
    cfg = load_config(config)
    fitters: dict[int, Fitter] = {}

    def run(model: BodyModel, inp: MethodInput) -> Prediction:
        if id(model) not in fitters:
            fitters[id(model)] = Fitter(model, cfg)
        fitter = fitters[id(model)]
        start = None if init is None else init(model, inp)
        out = fitter.fit(inp.keypoints, inp.K, inp.layout, init=None if start is None else start.params,
                         image_size=inp.image_size, world=None if start is None else start.world)
        return Prediction(out.params, out.fitted)

    run.config = cfg  # type: ignore[attr-defined]
    return run


def oracle_method(model: BodyModel, inp: MethodInput) -> Prediction:
    """The ground truth itself (sanity check of the evaluation path)."""
    return Prediction(inp.gt.clone())


def perturbed_oracle_method(model: BodyModel, inp: MethodInput, pose_sigma: float = 0.15) -> Prediction:
    """A stand-in for a regressor until fitlib has one: the ground truth with seeded, independent errors
    (body joints ``pose_sigma`` rad per axis-angle component, orientation 0.1 rad, betas 0.5, depth 10 %),
    to measure how the fitter treats a good but imperfect ``init``. A real regressor's errors are
    correlated and biased; weights tuned on this stand-in are to be checked again on one."""
    g = torch.Generator().manual_seed(0)
    gt = inp.gt
    n, dtype = len(gt), gt.body_pose.dtype
    noise = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
    body_pose = gt.body_pose + pose_sigma * noise(n, 23, 3).reshape(n, 69)
    orient = roma.rotvec_composition([0.1 * noise(n, 3), gt.global_orient])
    transl = gt.transl * (1 + 0.1 * noise(n, 1))
    return Prediction(SMPLParams(orient, body_pose, gt.betas + 0.5 * noise(n, 10), transl))


def simulated_world_landmarks(model: BodyModel, inp: MethodInput, sigma: float, limb_flip: float | None = None) -> np.ndarray:
    """[N, 33, 3] BlazePose-like world landmarks (m) of the ground-truth bodies, as a detector giving them would
    (:func:`fitlib.datasets.synthetic.simulate_world_landmarks`, :class:`~fitlib.datasets.synthetic.WorldNoise`
    with per-point error ``sigma`` m, limbs inverted in depth with probability ``limb_flip`` (None: the default),
    its other errors at their defaults), seeded by the inputs' keypoints (the same frame gets the same landmarks
    in every method and run). The mouth corners, which the open model does not define, are NaN (nothing reads
    them)."""
    from fitlib.datasets.synthetic import WorldNoise, simulate_world_landmarks

    gt = inp.gt
    with torch.no_grad():
        out = model(gt.pose.reshape(-1, 24, 3).to(model.joint_template), gt.betas.to(model.joint_template),
                    gt.transl.to(model.joint_template), layout="mediapipe33")
    pts = out.keypoints.double().cpu().numpy()
    names = get_layout("mediapipe33").names
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(inp.keypoints.double().cpu().numpy()).tobytes()))
    noise = WorldNoise(sigma=sigma) if limb_flip is None else WorldNoise(sigma=sigma, limb_flip=limb_flip)
    world = simulate_world_landmarks(pts, names, rng, noise)
    world[:, ~out.keypoint_mask.cpu().numpy()] = np.nan
    return world


def regressor_method(checkpoint: str | None = None, world: float | None = None,
                     world_flip: float | None = None) -> Method:
    """The keypoint regressor alone (:mod:`fitlib.regression`; default: the shipped weights), its selected
    hypothesis (lowest 2D error); people with too few usable points are reported as not fitted. ``world``:
    simulated BlazePose world landmarks with this per-point error (m) and ``world_flip`` limb inversions
    (:func:`simulated_world_landmarks`; None: no landmarks, as from a detector without them), read by a network
    with the world-landmark branch and passed on to a fit started from this method (``regressor@world=...+CONFIG``)."""
    from fitlib.regression.predict import KeypointRegressor
    from fitlib.regression.checkpoint import load_regressor

    net, header = load_regressor(checkpoint)
    runners: dict[int, KeypointRegressor] = {}

    def run(model: BodyModel, inp: MethodInput) -> Prediction:
        if id(model) not in runners:
            runners[id(model)] = KeypointRegressor(net, model, header)
        w = None if world is None else simulated_world_landmarks(model, inp, world, world_flip)
        pred = runners[id(model)].predict(inp.keypoints, inp.K, inp.layout, world=w)
        return Prediction(pred.params, pred.fitted, w)

    return run


METHODS: dict[str, Callable[[], Method]] = {
    "spin": lambda: fitter_method("spin"),
    "default": lambda: fitter_method("default"),
    "fast": lambda: fitter_method("fast"),
    "gt": lambda: oracle_method,
    "noisy_gt": lambda: perturbed_oracle_method,  # about as accurate as the default fitter here
    "noisy_gt_strong": lambda: functools.partial(perturbed_oracle_method, pose_sigma=0.07),  # twice as accurate
    "regressor": regressor_method,  # the shipped keypoint regressor alone (issue 12)
}
"""Method factories by name (``regressor`` gets added here). ``INIT+CONFIG`` (e.g. ``noisy_gt+default``)
refines the estimate of method INIT with a fitting config (see :func:`method_factory`)."""
ORACLES = ("gt", "noisy_gt", "noisy_gt_strong")
"""Methods that read the ground truth instead of fitting (no speed is reported for them)."""


def method_factory(name: str) -> Callable[[], Method]:
    """A method by name: a key of :data:`METHODS`, or ``regressor@checkpoint=PATH@world=SIGMA@world_flip=P``
    (another regressor file; simulated world landmarks, :func:`simulated_world_landmarks`); or a fitting config (a shipped config's name such as
    ``precise``, or a path to a ``.yaml``) with optional overrides, ``CONFIG@key=value@...`` (settings,
    e.g. ``default@pose_prior=none@pose_starts=0``, nested ones such as ``default@refine.weights.init_pull=30``
    or ``default@refine=null`` (the stages from an estimate), or a loss weight in every stage that has it,
    e.g. ``default@weights.init_pull=0``); or ``INIT+CONFIG...``, the fit started from method
    INIT's estimate (e.g. ``noisy_gt+default``)."""
    if name in METHODS:
        return METHODS[name]
    init_name, plus, spec = name.rpartition("+")
    init = method_factory(init_name) if plus else None
    base, *overrides = spec.split("@")
    if base == "regressor" and not plus:  # regressor@checkpoint=PATH@world=SIGMA@world_flip=P
        settings = dict(item.partition("=")[::2] for item in overrides)
        if len(settings) != len(overrides) or set(settings) - {"checkpoint", "world", "world_flip"} or \
                not all(settings.values()) or ("world_flip" in settings and "world" not in settings):
            raise ValueError(f"method {name!r}: the regressor takes checkpoint=PATH, world=SIGMA (m) and "
                             f"world_flip=P (with world) overrides")
        sigma, flip = (float(settings[k]) if k in settings else None for k in ("world", "world_flip"))
        return lambda: regressor_method(settings.get("checkpoint"), sigma, flip)
    try:
        config = load_config(base)
    except (ValueError, FileNotFoundError):
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}, a shipped config, a config "
                         f".yaml file, CONFIG@key=value@..., or INIT+CONFIG") from None
    data, weights = config.model_dump(), {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"method {name!r}: override {item!r} is not key=value")
        if key.startswith("weights."):  # a loss weight, in every stage that has it
            weights[key.removeprefix("weights.")] = float(yaml.safe_load(value))
            continue
        *path, last = key.split(".")  # a setting, or a nested one (refine.weights.init_pull=30)
        node = data
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"method {name!r}: override {key!r}: {part!r} is not a section of the config")
            node = node[part]
        node[last] = yaml.safe_load(value)
    config = load_config(data)
    for stage in config.stages:
        stage.weights.update({k: v for k, v in weights.items() if k in stage.weights})
    return lambda: fitter_method(config, None if init is None else init())
