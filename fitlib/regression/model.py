"""The keypoint regressor: a pluggable encoder, CLIFF's box condition and HMR's IEF head.

``Regressor(config)(keypoints, K)`` maps 2D keypoints in the network's layout (``config.layout``) and
the camera intrinsics to SMPL parameters per IEF iteration and per hypothesis
(:class:`RegressorOutput`); :meth:`RegressorOutput.params` turns them into :class:`fitlib.SMPLParams`
with leading dims ``[B, H]`` in the camera frame. Pose is predicted as 6D rotations (two columns of
each rotation matrix, Gram-Schmidt to a rotation: ``roma.special_gramschmidt``), the camera as a crop
camera converted with the real intrinsics (:mod:`fitlib.regression.camera`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import roma
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from torch import nn

from fitlib.body.layouts import get_layout
from fitlib.params import SMPLParams
from fitlib.regression import camera
from fitlib.regression.encoders import ENCODERS, EncoderInput
from fitlib.regression.heads import IEFHead

MEAN_CAM = (0.9, 0.0, 0.0)
"""Mean crop camera ``(s, tx, ty)`` (SPIN's; s = 0.9 is a standing adult filling the 1.2x box)."""
HEADINGS = (0.0, np.pi, np.pi / 2, -np.pi / 2)
"""Starting heading of each hypothesis about the body's vertical axis (0: facing the camera)."""


class RegressorConfig(BaseModel):
    """The network's architecture (stored in every checkpoint)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    layout: Literal["coco17", "coco17_feet"] = "coco17"
    encoder: Literal["keypoints"] = "keypoints"
    encoder_hidden: StrictInt = Field(256, ge=8)
    encoder_blocks: StrictInt = Field(3, ge=0)
    head_hidden: StrictInt = Field(1024, ge=8)
    iterations: StrictInt = Field(3, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    activation: Literal["none", "relu"] = "none"
    hypotheses: StrictInt = Field(1, ge=1, le=len(HEADINGS))
    camera: Literal["cliff", "weak"] = "cliff"
    min_confidence: float = Field(0.01, ge=0, le=1)
    """Points below this confidence count as missing."""


def mean_body_pose() -> torch.Tensor:
    """[23, 3, 3] the rotation-averaged body pose of the training mocap clips (SPIN's mean pose plays this role)."""
    from fitlib.datasets.mocap import load_mocap

    poses = np.concatenate([c.poses for c in load_mocap("train").values()])
    rot = roma.rotvec_to_rotmat(torch.as_tensor(poses, dtype=torch.float64).reshape(-1, 24, 3)[:, 1:])
    return roma.special_procrustes(rot.mean(0)).float()


def initial_pose6d(hypotheses: int) -> torch.Tensor:
    """[H, 144] starting 6D poses: the mean body pose, upright, turned by :data:`HEADINGS` (camera frame)."""
    body = mean_body_pose()
    flip = roma.rotvec_to_rotmat(torch.tensor([np.pi, 0.0, 0.0]))  # y up -> y down, facing the camera
    out = []
    for h in HEADINGS[:hypotheses]:
        root = flip @ roma.rotvec_to_rotmat(torch.tensor([0.0, h, 0.0]))
        rot = torch.cat([root[None], body])
        out.append(rot[..., :2].reshape(-1))
    return torch.stack(out)


@dataclass
class RegressorOutput:
    """Estimates for B people, I iterations and H hypotheses (camera frame, metres).

    Attributes:
        rotmat: [I, B, H, 24, 3, 3] joint rotations (joint 0: global orientation).
        betas: [I, B, H, 10].
        cam: [I, B, H, 3] crop cameras (s, tx, ty).
        pelvis: [I, B, H, 3] pelvis positions (from the crop cameras and the real intrinsics).
        centre, size: [B, 2], [B] the person boxes (px) the network used.
        visible: [B, J] the points it treated as present.
    """

    rotmat: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    pelvis: torch.Tensor
    centre: torch.Tensor
    size: torch.Tensor
    visible: torch.Tensor

    def params(self, body_model, iteration: int = -1) -> SMPLParams:
        """:class:`SMPLParams` with leading dims [B, H]; ``transl`` puts the pelvis of ``body_model`` at
        :attr:`pelvis` (SMPL's ``transl`` offsets the mesh origin: ``transl = pelvis - J_pelvis(betas)``)."""
        rot, betas = self.rotmat[iteration], self.betas[iteration]
        aa = roma.rotmat_to_rotvec(rot)
        j0 = body_model.rest_joints(betas)[..., 0, :]
        return SMPLParams(aa[..., 0, :], aa[..., 1:, :].flatten(-2), betas, self.pelvis[iteration] - j0)


class Regressor(nn.Module):
    """Encoder + IEF head. ``forward(keypoints [B, J, 3], K [B, 3, 3], images=None) -> RegressorOutput``
    (``keypoints`` in ``config.layout``: x px, y px, confidence; NaN or confidence below
    ``config.min_confidence`` is a missing point)."""

    def __init__(self, config: RegressorConfig | dict | None = None) -> None:
        super().__init__()
        config = RegressorConfig.model_validate(config or {}) if not isinstance(config, RegressorConfig) else config
        self.config = config
        self.layout = get_layout(config.layout)
        self.encoder = ENCODERS[config.encoder](num_points=len(self.layout), hidden=config.encoder_hidden,
                                                blocks=config.encoder_blocks)
        self.head = IEFHead(self.encoder.out_dim, 3 if config.camera == "cliff" else 0,
                            initial_pose6d(config.hypotheses), torch.zeros(10), torch.tensor(MEAN_CAM),
                            hidden=config.head_hidden, iterations=config.iterations, dropout=config.dropout,
                            activation=config.activation, hypotheses=config.hypotheses)

    def visible(self, keypoints: torch.Tensor) -> torch.Tensor:
        """[B, J] bool: points with finite coordinates and confidence >= ``config.min_confidence`` (> 0)."""
        conf = keypoints[..., 2]
        return torch.isfinite(keypoints).all(-1) & (conf >= self.config.min_confidence) & (conf > 0)

    def forward(self, keypoints: torch.Tensor, K: torch.Tensor, images: torch.Tensor | None = None,
                all_iterations: bool | None = None) -> RegressorOutput:
        """``all_iterations``: return every IEF iteration (default: in training mode; in eval mode only the
        last, I = 1, which saves the rotation conversions of the others)."""
        if keypoints.ndim != 3 or keypoints.shape[1:] != (len(self.layout), 3):
            raise ValueError(f"the regressor takes keypoints [B, {len(self.layout)}, 3] in layout "
                             f"{self.layout.name!r}, got {tuple(keypoints.shape)}")
        vis = self.visible(keypoints)
        centre, size = camera.keypoint_box(torch.nan_to_num(keypoints[..., :2]), vis)
        x = self.encoder(EncoderInput(keypoints, vis, centre, size, images))
        cond = camera.bbox_info(centre, size, K) if self.config.camera == "cliff" else None
        pose6d, betas, cam = self.head(x, cond)
        if not (self.training if all_iterations is None else all_iterations):
            pose6d, betas, cam = pose6d[-1:], betas[-1:], cam[-1:]
        rotmat = roma.special_gramschmidt(pose6d.view(*pose6d.shape[:-1], 24, 3, 2))
        pelvis = camera.crop_to_translation(cam, centre[:, None], size[:, None], K[:, None])
        return RegressorOutput(rotmat, betas, cam, pelvis, centre, size, vis)
