"""The regressor: a pluggable encoder (2D keypoints, or HMR's ResNet-50 on the person crop), CLIFF's box
condition and HMR's IEF head.

``Regressor(config)(keypoints, K)`` maps 2D keypoints in the network's layout (``config.layout``) and
the camera intrinsics to SMPL parameters per IEF iteration and per hypothesis
(:class:`RegressorOutput`); :meth:`RegressorOutput.params` turns them into :class:`fitlib.SMPLParams`
with leading dims ``[B, H]`` in the camera frame. Pose is predicted as 6D rotations (two columns of
each rotation matrix, Gram-Schmidt to a rotation: ``roma.special_gramschmidt``, SPIN's ``rot6d``), the
camera as a crop camera converted with the real intrinsics (:mod:`fitlib.regression.camera`).

With ``encoder: image`` the network reads ``images`` [B, 3, S, S], RGB person crops in [0, 1] of the square
boxes ``centre``, ``size`` (px of the image ``K`` belongs to); keypoints are then optional (they only give
the box when none is passed). ``camera: spin`` is SPIN's camera: weak perspective on SMPL's origin (not the
pelvis), focal length 5000 px on a 224 px crop (:func:`fitlib.regression.camera.spin_project`), no box input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import roma
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
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
    encoder: Literal["keypoints", "image"] = "keypoints"
    """``keypoints``: an MLP on the box-normalised 2D keypoints; ``image``: ResNet-50 on the person crop (HMR, SPIN)."""
    encoder_hidden: StrictInt = Field(256, ge=8)
    encoder_blocks: StrictInt = Field(3, ge=0)
    """Width and residual blocks of the keypoint encoder (the image encoder's feature is ResNet-50's 2048)."""
    image_size: StrictInt = Field(224, ge=32)
    """Side (px) of the square person crops the image encoder reads (SPIN: 224)."""
    head_hidden: StrictInt = Field(1024, ge=8)
    iterations: StrictInt = Field(3, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    activation: Literal["none", "relu"] = "none"
    hypotheses: StrictInt = Field(1, ge=1, le=len(HEADINGS))
    camera: Literal["cliff", "weak", "spin"] = "cliff"
    """``cliff``: crop camera on the pelvis, the box's place in the image (``bbox_info``) as input, 2D loss in
    full-image pixels; ``weak``: the same camera without the box input, 2D loss weak-perspective in box
    coordinates; ``spin``: SPIN's camera (on SMPL's origin, f = 5000 px on the 224 px crop)."""
    min_confidence: float = Field(0.01, ge=0, le=1)
    """Points below this confidence count as missing."""
    world_landmarks: bool = False
    """The keypoint encoder also reads BlazePose's 3D world landmarks where a person has them (an input branch,
    :class:`~fitlib.regression.encoders.KeypointEncoder`); people without them are regressed from 2D alone."""

    @model_validator(mode="after")
    def _world_needs_keypoints(self) -> "RegressorConfig":
        if self.world_landmarks and self.encoder != "keypoints":
            raise ValueError("world_landmarks is an input branch of the keypoint encoder (encoder: keypoints)")
        return self


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
        visible: [B, J] the points it treated as present (all False for an image network given no keypoints).
        anchor: what ``pelvis`` positions: ``"pelvis"``, or ``"origin"``, SMPL's origin (``transl``), for SPIN's
            camera.
    """

    rotmat: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    pelvis: torch.Tensor
    centre: torch.Tensor
    size: torch.Tensor
    visible: torch.Tensor
    anchor: str = "pelvis"

    def params(self, body_model, iteration: int = -1) -> SMPLParams:
        """:class:`SMPLParams` with leading dims [B, H]; ``transl`` puts the pelvis of ``body_model`` at
        :attr:`pelvis` (SMPL's ``transl`` offsets the mesh origin: ``transl = pelvis - J_pelvis(betas)``)."""
        rot, betas = self.rotmat[iteration], self.betas[iteration]
        aa = roma.rotmat_to_rotvec(rot)
        return SMPLParams(aa[..., 0, :], aa[..., 1:, :].flatten(-2), betas,
                          self.transl(body_model, self.pelvis[iteration], betas))

    def transl(self, body_model, position: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """SMPL ``transl`` [..., 3] (m) for anchor positions ``position`` [..., 3] and ``betas`` [..., 10]."""
        if self.anchor == "origin":
            return position
        return position - body_model.rest_joints(betas)[..., 0, :]


class Regressor(nn.Module):
    """Encoder + IEF head. ``forward(keypoints [B, J, 3], K [B, 3, 3], images=None, centre=None, size=None)
    -> RegressorOutput`` (``keypoints`` in ``config.layout``: x px, y px, confidence; NaN or confidence below
    ``config.min_confidence`` is a missing point).

    Args:
        config: the architecture.
        mean_params: the head's starting estimate ``(pose6d [144] or [H, 144], betas [10], cam [3])``, e.g.
            SPIN's ``smpl_mean_params.npz`` (:func:`fitlib.regression.spin.read_spin_mean_params`); default:
            the training mocap's mean pose, upright, facing the camera (and turned by :data:`HEADINGS` for
            the other hypotheses), betas 0, :data:`MEAN_CAM`.
    """

    def __init__(self, config: RegressorConfig | dict | None = None,
                 mean_params: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        config = RegressorConfig.model_validate(config or {}) if not isinstance(config, RegressorConfig) else config
        self.config = config
        self.layout = get_layout(config.layout)
        self.encoder = ENCODERS[config.encoder](config, len(self.layout))
        if mean_params is None:
            pose6d, betas, cam = initial_pose6d(config.hypotheses), torch.zeros(10), torch.tensor(MEAN_CAM)
        else:
            pose6d, betas, cam = (torch.as_tensor(t, dtype=torch.float32) for t in mean_params)
            pose6d = pose6d.reshape(-1, 144) if pose6d.numel() % 144 == 0 else pose6d
            if pose6d.ndim == 2 and len(pose6d) == 1 and config.hypotheses > 1:
                pose6d = pose6d.expand(config.hypotheses, -1)
            if pose6d.shape != (config.hypotheses, 144) or betas.shape != (10,) or cam.shape != (3,):
                raise ValueError(f"mean_params must be pose6d [144] or [{config.hypotheses}, 144], betas [10], cam [3]; "
                                 f"got {tuple(pose6d.shape)}, {tuple(betas.shape)}, {tuple(cam.shape)}")
            if not all(torch.isfinite(t).all() for t in (pose6d, betas, cam)):
                raise ValueError("mean_params hold non-finite values")
        self.head = IEFHead(self.encoder.out_dim, 3 if config.camera == "cliff" else 0, pose6d, betas, cam,
                            hidden=config.head_hidden, iterations=config.iterations, dropout=config.dropout,
                            activation=config.activation, hypotheses=config.hypotheses)

    def visible(self, keypoints: torch.Tensor) -> torch.Tensor:
        """[B, J] bool: points with finite coordinates and confidence >= ``config.min_confidence`` (> 0)."""
        conf = keypoints[..., 2]
        return torch.isfinite(keypoints).all(-1) & (conf >= self.config.min_confidence) & (conf > 0)

    def forward(self, keypoints: torch.Tensor | None, K: torch.Tensor, images: torch.Tensor | None = None,
                centre: torch.Tensor | None = None, size: torch.Tensor | None = None,
                all_iterations: bool | None = None, world: torch.Tensor | None = None) -> RegressorOutput:
        """Args:
            keypoints: [B, J, 3] or None (an image network given ``centre`` and ``size``).
            K: [B, 3, 3] intrinsics (px) of the image the keypoints and boxes are in.
            images: [B, 3, S, S] person crops (RGB in [0, 1], S = ``config.image_size``) for an image network.
            centre, size: [B, 2], [B] px the square boxes the crops show (default: :func:`camera.keypoint_box`
                of the keypoints).
            all_iterations: return every IEF iteration (default: in training mode; in eval mode only the
                last, I = 1, which saves the rotation conversions of the others).
            world: [B, W, 3] (m) BlazePose world landmarks (:data:`~fitlib.body.layouts.WORLD_POINTS`; NaN
                rows: none for that person) for a network with ``world_landmarks``; ignored by others.
        """
        cfg = self.config
        if keypoints is not None and (keypoints.ndim != 3 or keypoints.shape[1:] != (len(self.layout), 3)):
            raise ValueError(f"the regressor takes keypoints [B, {len(self.layout)}, 3] in layout "
                             f"{self.layout.name!r}, got {tuple(keypoints.shape)}")
        if cfg.encoder == "image":
            S = cfg.image_size
            if images is None or images.ndim != 4 or images.shape[1:] != (3, S, S):
                raise ValueError(f"an image regressor takes person crops [B, 3, {S}, {S}] (RGB in [0, 1]), got "
                                 f"{None if images is None else tuple(images.shape)}")
            if (centre is None or size is None) and keypoints is None:
                raise ValueError("an image regressor needs the crops' boxes (centre, size) or keypoints to make them")
        elif keypoints is None:
            raise ValueError("a keypoint regressor needs keypoints")
        B = len(K)
        if keypoints is not None:
            vis = self.visible(keypoints)
        else:
            vis = torch.zeros(B, len(self.layout), dtype=torch.bool, device=K.device)
        if centre is None or size is None:
            centre, size = camera.keypoint_box(torch.nan_to_num(keypoints[..., :2]), vis)
        x = self.encoder(EncoderInput(keypoints, vis, centre, size, images, world if cfg.world_landmarks else None))
        cond = camera.bbox_info(centre, size, K) if cfg.camera == "cliff" else None
        pose6d, betas, cam = self.head(x, cond)
        if not (self.training if all_iterations is None else all_iterations):
            pose6d, betas, cam = pose6d[-1:], betas[-1:], cam[-1:]
        rotmat = roma.special_gramschmidt(pose6d.view(*pose6d.shape[:-1], 24, 3, 2))
        position = camera.crop_to_translation(cam, centre[:, None], size[:, None], K[:, None])
        return RegressorOutput(rotmat, betas, cam, position, centre, size, vis,
                               "origin" if cfg.camera == "spin" else "pelvis")
