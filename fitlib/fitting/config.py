"""Fitting configuration: YAML files under ``configs/`` read into validated settings.

``configs/`` is installed as the package ``fitlib.configs``; :func:`load_config`
takes a shipped name (``"default"``, ``"spin"``), a path, a dict, or a
:class:`FitConfig`.  Settings are pydantic models: a wrong type, an unknown key or
an unknown point name is a ValueError naming the source and the field, also when
a setting is changed later (assignment is validated).

A config may start from another: ``base: default`` (a shipped name, or a path relative to the
config file) takes every setting of the base, and the file states only what differs. Mappings
merge key by key; ``stages`` given as a mapping ``{stage name: {setting: value}}`` changes the
base's stages of those names and appends stages of new names (which must then be complete),
given as a list it replaces them.
"""
from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator

from fitlib.body.layouts import LAYOUTS
from fitlib.io.config_files import parse_mapping

NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _check_point_names(names, known: set[str]):
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown point names {unknown}{_suggest(unknown, known)}")
    return names


_LAYOUT_POINTS = {n for layout in LAYOUTS.values() for n in layout.names}
"""Point names of every layout: ``keypoint_weights`` matches these exactly."""
_STAGE_POINTS = _LAYOUT_POINTS | {n.removeprefix("smpl_") for n in _LAYOUT_POINTS}
"""A stage's ``keypoints`` may also name SMPL joints without ``smpl_``, as the fitter resolves them."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, revalidate_instances="always")


class Stage(_Settings):
    """One optimisation stage."""

    name: str = Field(min_length=1)
    params: list[Literal["global_orient", "body_pose", "betas", "transl"]] = Field(min_length=1)
    iterations: StrictInt = Field(ge=1)
    lr: Positive
    weights: dict[Literal["data", "depth", "pose_prior", "angle", "shape", "init_pull"], NonNegative]
    keypoints: list[str] | None = Field(None, min_length=1)  # point names used by the data term (None: all)
    lr_final_ratio: NonNegative = 1.0  # Adam's learning rate decays (cosine) to this fraction of lr by the last iteration
    optimizer: Literal["adam", "lbfgs"] | None = None  # for this stage (default: the config's optimizer)

    @field_validator("keypoints")
    @classmethod
    def _known_keypoints(cls, v):
        return v if v is None else _check_point_names(v, _STAGE_POINTS)


class Convergence(_Settings):
    """Per-person early stop: a person stops when its best loss improved by less than ``ftol``
    (relative) over the last ``window`` iterations, after ``min_iterations``."""

    ftol: NonNegative = 1e-4
    window: StrictInt = Field(10, ge=1)
    min_iterations: StrictInt = Field(10, ge=0)
    enabled: StrictBool = True


class Refine(_Settings):
    """The refine path (:mod:`fitlib.fitting.refine`), used when ``init`` gives a body pose: a per-person
    Levenberg-Marquardt solve from the estimate instead of the stages. Stopping: an accepted step that lowers
    the loss by less than ``ftol`` (relative), a step shorter than ``xtol``, or ``max_iterations``."""

    weights: dict[Literal["data", "pose_prior", "angle", "shape", "init_pull", "init_shape", "world"], NonNegative]
    max_iterations: StrictInt = Field(10, ge=1)
    screen_iterations: StrictInt = Field(2, ge=1)  # with a turned start too: iterations before each keeps its best
    robust_sigma: Positive | None = None  # Geman-McClure scale (canonical px; None: the config's robust_sigma)
    world_sigma: Positive = 0.1  # Geman-McClure scale (m) of the world-landmark term (weight "world")
    turn_regressor_starts: StrictBool = False  # also try the regressor's own estimates turned by 180 deg
    # (flip_threshold's rule, which a caller's init= always gets)
    ftol: NonNegative = 1e-4
    xtol: NonNegative = 1e-6
    damping: Positive = 1e-3


class FitConfig(_Settings):
    """All settings of the fitter; see ``configs/default.yaml`` for what each number means."""

    stages: list[Stage] = Field(min_length=1)
    keypoint_confidence_threshold: NonNegative = 0.2
    min_torso_keypoints: StrictInt = Field(3, ge=0, le=4)  # of the 4 shoulders and hips
    robust_sigma: Positive = 100.0
    square_confidence: StrictBool = True
    pose_prior: Literal["gmm", "limits", "l2", "none"] = "gmm"
    pose_prior_file: str | None = None  # a prior trained with `fitlib train-prior` (default: the shipped one)
    optimizer: Literal["adam", "lbfgs"] = "adam"
    flip_threshold: NonNegative = 0.6
    camera_headings: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(default_factory=lambda: [0.0])
    pose_starts: StrictInt = Field(0, ge=0)  # without an initial pose, the body stage also starts from this many prior modes
    keypoint_weights: dict[str, NonNegative] = Field(default_factory=dict)
    convergence: Convergence = Field(default_factory=Convergence)
    full_mesh: StrictBool = False  # run the full mesh forward every iteration (reference mode only)
    refine: Refine | None = None  # with an initial body pose: the refine path (None: the stages, from the estimate)
    start: Literal["regressor", "multistart"] = "multistart"  # people without init=: the keypoint regressor's
    # estimate, refined (by the refine path, or the stages without one), or the stages from several starts
    regressor: str | None = None  # a regressor checkpoint for start: regressor (default: the shipped weights)

    @field_validator("keypoint_weights")
    @classmethod
    def _known_weighted_points(cls, v):
        return _check_point_names(v, _LAYOUT_POINTS)

    def replace(self, **changes: Any) -> "FitConfig":
        """A copy with some top-level fields changed, checked like a loaded config."""
        return _validated({**self.model_dump(), **changes}, "FitConfig.replace()")


def _suggest(unknown: list, known) -> str:
    """`` (did you mean 'x' for 'y'?)`` for the unknown names with a close known one."""
    pairs = [f"{m[0]!r} for {u!r}" for u in unknown if isinstance(u, str)
             for m in [difflib.get_close_matches(u, sorted(known), n=1)] if m]
    return f" (did you mean {', '.join(pairs)}?)" if pairs else ""


def _validated(data: Any, source: str) -> FitConfig:
    """``data`` as a :class:`FitConfig`; a ValueError naming ``source`` and each wrong field otherwise."""
    if isinstance(data, BaseModel):
        data = data.model_dump()
    try:
        return FitConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, data) for e in exc.errors()]
        raise ValueError(f"{source}: " + "; ".join(problems)) from None


def _describe(error: dict, data: Any) -> str:
    """One pydantic error as ``stage 'body': iterations: <problem> (got <input>)``."""
    loc, where, model, node = list(error["loc"]), "", FitConfig, data
    if loc[:1] == ["stages"] and len(loc) > 1 and isinstance(loc[1], int):
        stage = node["stages"][loc[1]] if isinstance(node, dict) else None
        name = stage.get("name") if isinstance(stage, dict) else None
        where = f"stage {name!r}: " if isinstance(name, str) and name else f"stage {loc[1] + 1}: "
        loc, model = loc[2:], Stage
    elif loc[:1] == ["convergence"] and len(loc) > 1:
        where, loc, model = "convergence: ", loc[1:], Convergence
    elif loc[:1] == ["refine"] and len(loc) > 1:
        where, loc, model = "refine: ", loc[1:], Refine
    field = ".".join(str(x) for x in loc) or "settings"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = f"is not a setting{_suggest([str(loc[-1])], model.model_fields)}"
    return f"{where}{field}: {msg} (got {error['input']!r})"


def load_config(config: str | Path | dict | FitConfig | None = None) -> FitConfig:
    """Read a fitting configuration (default: the shipped ``default.yaml``).

    Args:
        config: None (the default), a shipped config's name (a plain name such as ``"fast"``: never
            a file of that name in the current folder), a path to a ``.yaml`` / ``.yml`` file (or any
            path with a folder part), a dict of settings, or a :class:`FitConfig`. Files and dicts
            may name a ``base`` (see the module doc).
    Raises:
        ValueError naming the source and field for unknown names, bad YAML or wrong settings;
        FileNotFoundError for a config path that does not exist.
    """
    if isinstance(config, FitConfig):
        return _validated(config, "FitConfig")
    if isinstance(config, dict):
        return _validated(_resolve_base(dict(config), "config dict", None, ()), "config dict")
    data, source = _read(config, None, ())
    return _validated(data, source)


def _read(config: str | Path | None, relative_to: Path | None, chain: tuple[str, ...]) -> tuple[dict, str]:
    """The settings of a shipped name or a file, with its base resolved, and a name for messages."""
    name = "default" if config is None else str(config)
    path = Path(name)
    is_path = path.suffix in (".yaml", ".yml") or len(path.parts) > 1 or isinstance(config, Path)
    if is_path:
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if not path.is_file():
            raise FileNotFoundError(f"fitting config not found: {path}")
        text, source, folder = path.read_text(), str(path), path.parent
    else:
        shipped = resources.files("fitlib.configs") / f"{name}.yaml"
        if not shipped.is_file():
            known = sorted(p.name[:-5] for p in resources.files("fitlib.configs").iterdir() if p.name.endswith(".yaml"))
            raise ValueError(f"unknown fitting config {name!r}: not a shipped config (known: {known}) and not a "
                             f"path (a config file is named with its .yaml suffix){_suggest([name], known)}")
        text, source, folder = shipped.read_text(), f"configs/{name}.yaml", None
    if source in chain:
        raise ValueError(f"{source}: its 'base' chain loops: {' -> '.join(chain + (source,))}")
    data = parse_mapping(text, source)
    return _resolve_base(data, source, folder, chain + (source,)), source


def _resolve_base(data: dict, source: str, folder: Path | None, chain: tuple[str, ...]) -> dict:
    """``data`` merged over its ``base`` (recursively); ``data`` itself when it names none."""
    if "base" not in data:
        if isinstance(data.get("stages"), dict):
            raise ValueError(f"{source}: stages given by name need a 'base' config whose stages they change")
        return data
    base = data.pop("base")
    if not isinstance(base, str) or not base:
        raise ValueError(f"{source}: base must name a config (e.g. 'default'), got {base!r}")
    base_data, _ = _read(base, folder, chain)
    return _merge(base_data, data, source)


def _merge(base: dict, changes: dict, source: str) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if key == "stages" and isinstance(value, dict):
            out["stages"] = _merge_stages(list(base.get("stages") or []), value, source)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, source)
        else:
            out[key] = value
    return out


def _merge_stages(stages: list, changes: dict, source: str) -> list:
    """The base's stages with ``changes`` ({stage name: settings}) applied, new names appended."""
    stages = [dict(s) if isinstance(s, dict) else s for s in stages]
    by_name = {s.get("name"): i for i, s in enumerate(stages) if isinstance(s, dict)}
    for name, settings in changes.items():
        if not isinstance(settings, dict):
            raise ValueError(f"{source}: stage {name!r} must be a mapping of settings, got {settings!r}")
        if name in by_name:
            stages[by_name[name]] = _merge(stages[by_name[name]], settings, source)
        else:
            stages.append({"name": name, **settings})
    return stages
