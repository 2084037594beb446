"""Training configuration of the regressor: ``configs/train/*.yaml`` read into validated settings.

Same rules as the fitting configs (:mod:`fitlib.fitting.config`): a wrong type or an unknown key is a
ValueError naming the file and the field. ``load_train_config`` takes a shipped name (``"regressor"``:
``configs/train/regressor.yaml``), a path, a dict or a :class:`TrainConfig`.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from fitlib.io.config_files import read_settings
from fitlib.regression.model import RegressorConfig
from fitlib.training.data import DataConfig

NonNegative = Field(ge=0)


class LossWeights(BaseModel):
    """Weights of the loss terms (each per IEF iteration; see :func:`fitlib.training.trainer.regressor_loss`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    keypoints2d_detected: float = Field(10.0, ge=0)
    """2D reprojection against the detector-like keypoints (SPIN's openpose_weight), confidence² weighted."""
    keypoints2d_gt: float = Field(20.0, ge=0)
    """2D reprojection against exact 2D (SPIN's gt_weight)."""
    robust_sigma: float | None = Field(0.15, gt=0)
    """Geman-McClure scale of the 2D terms in units of the person's 2D size (None: squared error)."""
    keypoints3d: float = Field(5.0, ge=0)
    """Hip-aligned 3D joints (m²)."""
    pose: float = Field(1.0, ge=0)
    """Rotation-matrix MSE over the 24 joints."""
    betas: float = Field(0.01, ge=0)
    betas_prior: float = Field(0.0001, ge=0)
    camera: float = Field(10.0, ge=0)
    wta: float = Field(1.0, ge=0)
    """With several hypotheses: weight of the winner-takes-all term (min over hypotheses); hypothesis 0 always
    gets the full loss."""
    last_iteration_only: bool = False
    """Only the last IEF iteration's estimate is supervised (SPIN); else every iteration, equally."""


class LoopConfig(BaseModel):
    """Training in the loop (``fitlib train-regressor --loop``, :mod:`fitlib.training.loop`): after the first
    run, ``rounds`` times: label the unlabelled sources with the current regressor (regress, refine,
    compare-and-replace in the store), then train ``steps_per_round`` more steps on batches of which
    ``pseudo_fraction`` are the store's valid pseudo-labels (SMPL parameter loss where a label has SMPL, 2D
    loss always) and the rest synthetic 3D-supervised samples."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rounds: StrictInt = Field(3, ge=1)
    steps_per_round: StrictInt = Field(500, ge=1)
    pseudo_fraction: float = Field(0.5, ge=0, le=1)
    lr: float = Field(2e-4, gt=0)
    """Peak learning rate of each round (warm-up, then cosine decay within the round)."""
    fit_config: str = "default"
    """The fitting config that labels (its regressor is replaced by the current round's)."""
    label_config: str = "labels"
    every: StrictInt = Field(5, ge=1)
    """Keep every n-th frame of video sources."""
    smpl_only: bool = False
    """Train only on the pseudo-labels with SMPL parameters (not on those that kept their 2D keypoints only)."""
    as_motion: bool = True
    """Also add the SMPL pseudo-labels' body poses to the synthetic samples' motion (seen from random views and
    cameras like the mocap frames), not only as samples of their own image (measured: recovers 22-30 % of exact
    labels' gain, against 3 % without; benchmarks/RESULTS.md, issue 13)."""


class ImageSet(BaseModel):
    """One SPIN-format dataset file (:mod:`fitlib.datasets.spin_data`) and the folder its ``imgname`` paths are in."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    npz: str
    image_root: str
    weight: float = Field(1.0, gt=0)
    """Relative share of each batch drawn from this set (SPIN mixes its datasets with fixed shares)."""


class ImageDataConfig(BaseModel):
    """Data of an image regressor (``model.encoder: image``): SPIN-format sets, SPIN's crop augmentation,
    pseudo-labels from a label store for samples without SMPL ground truth."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    train: list[ImageSet] = Field(min_length=1)
    val: list[ImageSet] = Field(default_factory=list)
    """Validation sets (never augmented); none: validation on the first ``val_samples`` of the training sets,
    unaugmented (not held out: say so when reporting)."""
    augment: dict = Field(default_factory=dict)
    """:class:`fitlib.datasets.crops.AugmentConfig` settings (SPIN's by default)."""
    pseudo_labels: str | None = None
    """A label store whose valid fits supervise the samples without ``has_smpl`` (matched by image and box)."""
    loader_threads: StrictInt = Field(2, ge=1)
    """Threads decoding and cropping images."""


class TrainConfig(BaseModel):
    """Everything a training run depends on (stored in its checkpoints; a resumed run must match)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: StrictInt = 0
    batch_size: StrictInt = Field(256, ge=1)
    epochs: StrictInt = Field(20, ge=1)
    steps_per_epoch: StrictInt = Field(500, ge=1)
    lr: float = Field(5e-4, gt=0)
    lr_final_ratio: float = Field(0.05, ge=0, le=1)
    warmup_steps: StrictInt = Field(200, ge=0)
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float | None = Field(5.0, gt=0)
    device: str = "auto"
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``: where the network and the loss run
    (samples are generated on the CPU). Not part of what a resumed run must match."""
    threads: StrictInt = Field(1, ge=0)
    """torch threads (0: leave torch's default)."""
    checkpoint_every: StrictInt = Field(100, ge=1)
    """Steps between resumable checkpoints (also at every epoch end)."""
    log_every: StrictInt = Field(25, ge=1)
    val_samples: StrictInt = Field(2048, ge=1)
    model: RegressorConfig = Field(default_factory=RegressorConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossWeights = Field(default_factory=LossWeights)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    images: ImageDataConfig | None = None
    """The data of an image regressor (required with ``model.encoder: image``; the synthetic ``data`` is then unused)."""
    amp: bool = False
    """Mixed precision (float16 autocast and gradient scaling) on CUDA; ignored on the CPU."""

    @model_validator(mode="after")
    def _image_data(self) -> "TrainConfig":
        if (self.model.encoder == "image") != (self.images is not None):
            raise ValueError("an image regressor (model.encoder: image) trains on images: give the images section; "
                             "a keypoint regressor takes none")
        return self


def _describe(error: dict) -> str:
    field = ".".join(str(x) for x in error["loc"]) or "settings"
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        parent: Any = TrainConfig
        for part in error["loc"][:-1]:
            ann = getattr(parent, "model_fields", {}).get(part)
            parent = ann.annotation if ann is not None else None
        known = sorted(getattr(parent, "model_fields", {}))
        close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
        msg = "is not a setting" + (f" (did you mean {close[0]!r}?)" if close else "")
    return f"{field}: {msg} (got {error['input']!r})"


def _validated(data: Any, source: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def load_train_config(config: str | Path | dict | TrainConfig | None = None) -> TrainConfig:
    """A training config: None (the shipped ``regressor``), a shipped name, a ``.yaml`` path, a dict or a
    :class:`TrainConfig`. ValueError naming the source and field for bad settings; FileNotFoundError for a
    missing file."""
    if isinstance(config, TrainConfig):
        return _validated(config.model_dump(), "TrainConfig")
    if isinstance(config, dict):
        return _validated(config, "config dict")
    data, source = read_settings(config, "regressor", "train", "training config")
    return _validated(data, source)
