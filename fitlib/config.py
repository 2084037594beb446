"""Fitting configuration: YAML files under ``configs/`` read into dataclasses.

``configs/`` is installed as the package ``fitlib.configs``; :func:`load_config`
takes a shipped name (``"default"``, ``"spin"``), a path, a dict, or a
:class:`FitConfig`.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PARAMS = ("global_orient", "body_pose", "betas", "transl")
WEIGHTS = ("data", "depth", "pose_prior", "angle", "shape", "init_pull")


@dataclass
class Stage:
    """One optimisation stage."""

    name: str
    params: list[str]
    iterations: int
    lr: float
    weights: dict[str, float]
    keypoints: list[str] | None = None  # point names used by the data term (None: all)
    lr_final_ratio: float = 1.0  # Adam's learning rate decays (cosine) to this fraction of lr by the last iteration
    optimizer: str | None = None  # "adam" or "lbfgs" for this stage (default: the config's optimizer)


@dataclass
class Convergence:
    ftol: float = 1e-4
    window: int = 10
    min_iterations: int = 10
    enabled: bool = True


@dataclass
class FitConfig:
    """All settings of the fitter; see ``configs/default.yaml`` for what each number means."""

    stages: list[Stage]
    keypoint_confidence_threshold: float = 0.2
    min_torso_keypoints: int = 3
    robust_sigma: float = 100.0
    square_confidence: bool = True
    pose_prior: str = "gmm"
    pose_prior_file: str | None = None  # a prior trained with priors/train_pose_prior.py (default: the shipped one)
    optimizer: str = "adam"
    flip_threshold: float = 0.6
    camera_headings: list[float] = field(default_factory=lambda: [0.0])
    pose_starts: int = 0  # without an initial pose, the body stage also starts from this many prior modes
    keypoint_weights: dict[str, float] = field(default_factory=dict)
    convergence: Convergence = field(default_factory=Convergence)
    full_mesh: bool = False  # run the full mesh forward every iteration (reference mode only)

    def replace(self, **changes: Any) -> "FitConfig":
        """A copy with some top-level fields changed."""
        return dataclasses.replace(copy.deepcopy(self), **changes)


def _from_dict(d: dict, source: str) -> FitConfig:
    d = dict(d)
    unknown = set(d) - {f.name for f in dataclasses.fields(FitConfig)}
    if unknown:
        raise ValueError(f"{source}: unknown fitting settings {sorted(unknown)}")
    if not d.get("stages"):
        raise ValueError(f"{source}: at least one stage is needed")
    stages = []
    for s in d.pop("stages"):
        stage = Stage(**s)
        bad = set(stage.params) - set(PARAMS)
        if bad:
            raise ValueError(f"{source}: stage {stage.name!r} optimises unknown parameters {sorted(bad)}")
        bad = set(stage.weights) - set(WEIGHTS)
        if bad:
            raise ValueError(f"{source}: stage {stage.name!r} has unknown loss weights {sorted(bad)}")
        if stage.optimizer not in (None, "adam", "lbfgs"):
            raise ValueError(f"{source}: stage {stage.name!r}: optimizer must be 'adam' or 'lbfgs'")
        stages.append(stage)
    conv = Convergence(**d.pop("convergence", {}))
    cfg = FitConfig(stages=stages, convergence=conv, **d)
    if cfg.optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"{source}: optimizer must be 'adam' or 'lbfgs', got {cfg.optimizer!r}")
    if cfg.pose_prior not in ("gmm", "limits", "l2", "none"):
        raise ValueError(f"{source}: pose_prior must be 'gmm', 'limits', 'l2' or 'none', got {cfg.pose_prior!r}")
    return cfg


def load_config(config: str | Path | dict | FitConfig | None = None) -> FitConfig:
    """Read a fitting configuration (default: the shipped ``default.yaml``)."""
    if isinstance(config, FitConfig):
        return copy.deepcopy(config)
    if isinstance(config, dict):
        return _from_dict(config, "config dict")
    name = "default" if config is None else str(config)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"fitting config not found: {path}")
        text, source = path.read_text(), str(path)
    else:
        shipped = resources.files("fitlib.configs") / f"{name}.yaml"
        if not shipped.is_file():
            raise ValueError(f"unknown fitting config {name!r}: not a file and not a shipped config")
        text, source = shipped.read_text(), f"configs/{name}.yaml"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a mapping of settings")
    return _from_dict(data, source)
