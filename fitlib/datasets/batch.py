"""A batch of regressor training samples (:class:`Batch`): what every sample source gives the trainer.

Synthetic samples (:class:`fitlib.training.data.SampleGenerator`), pseudo-labels from a label store
(:class:`fitlib.training.pseudo_labels.PseudoLabels`) and the person crops of SPIN-format image sets
(:class:`fitlib.datasets.spin_data.SpinDataset`) all come as a :class:`Batch`; the trainer's loss reads only it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """B training samples (camera frame, OpenCV axes, metres, pixels)."""

    keypoints: torch.Tensor  # [B, J, 3] detector-like (x px, y px, confidence; NaN/0 missing), network layout
    gt_keypoints2d: torch.Tensor  # [B, J, 3] exact projections (confidence 1 in front of the camera)
    K: torch.Tensor  # [B, 3, 3]
    image_size: torch.Tensor  # [B, 2] (height, width)
    pose: torch.Tensor  # [B, 24, 3] axis-angle, camera frame
    betas: torch.Tensor  # [B, 10]
    transl: torch.Tensor  # [B, 3] SMPL transl
    joints: torch.Tensor  # [B, 24, 3]
    has_smpl: torch.Tensor  # [B] bool
    has_3d: torch.Tensor  # [B] bool
    has_detections: torch.Tensor  # [B] bool (detector-like 2D present)
    has_gt2d: torch.Tensor  # [B] bool (exact 2D present)
    images: torch.Tensor | None = None  # [B, 3, S, S] RGB person crops in [0, 1] (image encoder), or None
    centre: torch.Tensor | None = None  # [B, 2] px, the square box each crop shows (None: from the keypoints)
    size: torch.Tensor | None = None  # [B] px, its side
    world: torch.Tensor | None = None  # [B, 19, 3] m, BlazePose-like world landmarks (layouts.WORLD_POINTS), NaN rows: none

    def to(self, device) -> "Batch":
        return Batch(**{k: None if (v := getattr(self, k)) is None else v.to(device) for k in self.__dataclass_fields__})

    def rows(self, index) -> "Batch":
        """The samples ``index`` (a slice, indices or a mask) of this batch."""
        return Batch(**{k: None if (v := getattr(self, k)) is None else v[index] for k in self.__dataclass_fields__})

    @classmethod
    def cat(cls, batches: list["Batch"]) -> "Batch":
        """The samples of several batches in one (in order); optional fields must be present in all or none, but
        for ``world`` (world landmarks): samples of a batch without them get NaN rows."""
        out = {}
        for k in cls.__dataclass_fields__:
            parts = [getattr(b, k) for b in batches]
            if k == "world" and any(p is not None for p in parts):
                like = next(p for p in parts if p is not None)
                parts = [p if p is not None else like.new_full((len(b.K), *like.shape[1:]), float("nan"))
                         for p, b in zip(parts, batches)]
            if all(p is None for p in parts):
                out[k] = None
            elif any(p is None for p in parts):
                raise ValueError(f"cannot concatenate batches with and without {k!r}")
            else:
                out[k] = torch.cat(parts)
        return Batch(**out)
