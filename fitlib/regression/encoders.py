"""Encoders: modules turning what the regressor sees into the feature ``x`` its head reads.

An encoder is a ``torch.nn.Module`` with an ``out_dim`` attribute, ``forward(inputs) -> x [B, out_dim]`` and a
``from_config(config, num_points)`` constructor (the regressor's config, the points of its layout),
``inputs`` being a :class:`EncoderInput` (the keypoints in the network's layout and their person box;
the image encoder reads ``inputs.images``, crops cut with the same boxes). The head, the losses and
the trainer never look inside: a new encoder is registered in :data:`ENCODERS` and named in the config.

* :class:`KeypointEncoder` (``keypoints``): an MLP on the box-normalised keypoints, optionally (config
  ``world_landmarks``) also reading BlazePose's 3D world landmarks (:data:`~fitlib.body.layouts.WORLD_POINTS`,
  metres) through a second input branch;
* :class:`ImageEncoder` (``image``): HMR's ResNet-50 (:mod:`fitlib.regression.resnet`, torchvision's
  parameter names) on the crop, its pooled 2048-d feature.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from fitlib.body.layouts import WORLD_HIPS, WORLD_POINTS
from fitlib.regression.camera import to_box


@dataclass
class EncoderInput:
    """What an encoder may read, for B people.

    Attributes:
        keypoints: [B, J, 3] (x px, y px, confidence) in the network's layout, or None (an image network
            run on boxes); missing points have ``visible`` False (their coordinates are undefined, e.g. NaN).
        visible: [B, J] bool.
        centre, size: the square person boxes, [B, 2] and [B] px.
        images: [B, 3, S, S] person crops for an image encoder, or None.
        world: [B, W, 3] (m) the :data:`~fitlib.body.layouts.WORLD_POINTS` of BlazePose's world landmarks
            (hip-centred, in the camera turned to look at the person: :func:`fitlib.camera.ray_rotation`), NaN rows
            for people without; or None (nobody has them).
    """

    keypoints: torch.Tensor | None
    visible: torch.Tensor
    centre: torch.Tensor
    size: torch.Tensor
    images: torch.Tensor | None = None
    world: torch.Tensor | None = None


class ResidualBlock(nn.Module):
    """``x + fc2(relu(fc1(relu(x))))``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(torch.relu(x))))


class KeypointEncoder(nn.Module):
    """2D keypoints -> feature: per point (x, y) normalised to the person box (0 where missing), its
    confidence and a visibility flag (a missing point is flagged, not a zero coordinate), through a linear
    layer and ``blocks`` residual MLP blocks.

    With ``world=True``, a second linear input (``world_inp``) reads the
    :data:`~fitlib.body.layouts.WORLD_POINTS` of BlazePose's world landmarks (metres, re-centred on the hips'
    midpoint) and a has-landmarks flag; its output is added to the keypoints' before the blocks. It starts at
    zero, so a network trained without the branch loads into one with it (``train-regressor --init``) and
    behaves as before until trained; people without landmarks (NaN) read zeros and flag 0.

    Args:
        num_points: J, points of the network's layout.
        hidden: feature width (``out_dim``).
        blocks: residual blocks.
        world: also read the world landmarks.
    """

    def __init__(self, num_points: int, hidden: int = 512, blocks: int = 2, world: bool = False) -> None:
        super().__init__()
        self.num_points = num_points
        self.out_dim = hidden
        self.inp = nn.Linear(4 * num_points, hidden)
        self.world_inp = None
        if world:
            self.world_inp = nn.Linear(3 * len(WORLD_POINTS) + 1, hidden)
            nn.init.zeros_(self.world_inp.weight)
            nn.init.zeros_(self.world_inp.bias)
        self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])

    @classmethod
    def from_config(cls, config, num_points: int) -> "KeypointEncoder":
        """``config.encoder_hidden`` wide, ``config.encoder_blocks`` blocks, the world branch with
        ``config.world_landmarks``."""
        return cls(num_points, hidden=config.encoder_hidden, blocks=config.encoder_blocks,
                   world=config.world_landmarks)

    def features(self, inputs: EncoderInput) -> torch.Tensor:
        """[B, 4 J] the network's view of the keypoints."""
        vis = inputs.visible
        xy = to_box(torch.nan_to_num(inputs.keypoints[..., :2]), inputs.centre, inputs.size)
        xy = torch.where(vis[..., None], xy.clamp(-3, 3), torch.zeros_like(xy))
        conf = torch.where(vis, torch.nan_to_num(inputs.keypoints[..., 2]).clamp(0, 1), torch.zeros_like(xy[..., 0]))
        return torch.cat([xy, conf[..., None], vis[..., None].to(xy.dtype)], -1).flatten(-2)

    @staticmethod
    def world_features(world: torch.Tensor | None, B: int, like: torch.Tensor) -> torch.Tensor:
        """[B, 3 W + 1] the branch's input: points re-centred on the hips' midpoint (m, clamped to +-2.5), zeros and
        flag 0 for people without landmarks (``world`` None or a non-finite row)."""
        W = len(WORLD_POINTS)
        if world is None:
            return torch.zeros(B, 3 * W + 1, dtype=like.dtype, device=like.device)
        if world.shape[1:] != (W, 3):
            raise ValueError(f"world landmarks must be [B, {W}, 3] (the WORLD_POINTS), got {tuple(world.shape)}")
        has = torch.isfinite(world).all(-1).all(-1)
        w = torch.nan_to_num(world.to(like.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        hips = w[:, list(WORLD_HIPS)].mean(1, keepdim=True)
        w = torch.where(has[:, None, None], (w - hips).clamp(-2.5, 2.5), torch.zeros_like(w))
        return torch.cat([w.flatten(1), has[:, None].to(w.dtype)], -1)

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        h = self.inp(self.features(inputs))
        if self.world_inp is not None:
            h = h + self.world_inp(self.world_features(inputs.world, len(h), h))
        return torch.relu(self.blocks(h))


class ImageEncoder(nn.Module):
    """Person crops -> feature: ResNet-50's pooled 2048-d feature (HMR, SPIN) of the ImageNet-normalised crop.

    ``backbone`` is :func:`fitlib.regression.resnet.resnet50` (torchvision's where installed), so ImageNet or
    SPIN backbone weights load by name into ``encoder.backbone.*``.
    """

    def __init__(self) -> None:
        super().__init__()
        from fitlib.regression.resnet import resnet50

        self.backbone = resnet50()
        self.out_dim = 2048

    @classmethod
    def from_config(cls, config, num_points: int) -> "ImageEncoder":
        """The crop size is ``config.image_size``; nothing else to set."""
        return cls()

    def forward(self, inputs: EncoderInput) -> torch.Tensor:
        from fitlib.regression.resnet import normalise

        return self.backbone(normalise(inputs.images))


ENCODERS: dict[str, Callable[..., nn.Module]] = {"keypoints": KeypointEncoder.from_config,
                                                 "image": ImageEncoder.from_config}
"""Encoder constructors by config name: ``ctor(config, num_points)``."""
