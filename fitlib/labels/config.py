"""Settings of pseudo-label jobs: ``configs/labels.yaml`` read into validated settings.

Same rules as the other configs: a wrong type or an unknown key is a ValueError naming the source and the
field. :func:`load_label_config` takes None (the shipped ``labels``), a shipped name, a ``.yaml`` path, a
dict or a :class:`LabelConfig`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from fitlib.io.config_files import read_settings


class LabelRules(BaseModel):
    """When a fit is a valid pseudo-label (checked by :func:`fitlib.labels.validity.check_labels`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    min_points: StrictInt = Field(5, ge=1)
    """Confident keypoints needed (confidence >= :data:`fitlib.labels.score.MIN_CONFIDENCE`)."""
    max_score: float = Field(12.0, gt=0)
    """Largest score (canonical px, :mod:`fitlib.labels.score`) of a valid label."""
    max_abs_beta: float = Field(3.0, gt=0)
    """A fit with any |beta| above this keeps its 2D keypoints only: pose and betas are both dropped
    (``has_smpl`` false), never one without the other."""
    max_prior_nll: float = 150.0
    """Largest body-pose NLL (nats) under the shipped pose prior (held-out real poses: about -19; random
    poses within the joint ranges: about 447)."""
    limit_tolerance: float = Field(0.35, ge=0)
    """Largest excess (radians) of any axis-angle component beyond the prior's joint ranges."""


class LabelConfig(BaseModel):
    """Everything a label job decides with (the fitting itself is the fitting config's)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    margin: float = Field(0.25, ge=0)
    """A new fit replaces the stored one only if its score is lower by more than this (canonical px)."""
    batch_images: StrictInt = Field(16, ge=1)
    """Images (or frames, or keypoint samples) whose people are fitted in one optimiser batch (a shard)."""
    rules: LabelRules = Field(default_factory=LabelRules)


def _validated(data: Any, source: str) -> LabelConfig:
    try:
        return LabelConfig.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e["loc"]) or "settings"
            msg = "is not a setting" if e["type"] == "extra_forbidden" else e["msg"]
            msgs.append(f"{where}: {msg} (got {e['input']!r})")
        raise ValueError(f"{source}: " + "; ".join(msgs)) from None


def load_label_config(config: str | Path | dict | LabelConfig | None = None) -> LabelConfig:
    """A label-job config (see the module doc). FileNotFoundError for a missing file."""
    if isinstance(config, LabelConfig):
        return _validated(config.model_dump(), "LabelConfig")
    if isinstance(config, dict):
        return _validated(config, "config dict")
    data, source = read_settings(config, "labels", "", "label config")
    return _validated(data, source)
