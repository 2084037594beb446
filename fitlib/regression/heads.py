"""The iterative-error-feedback head of HMR, as SPIN ships it, with CLIFF's box condition and hypotheses.

From mean parameters (6D rotations of the 24 joints, betas, a crop camera), ``iterations`` times:
concatenate the feature ``x``, the condition (CLIFF's ``bbox_info``) and the current estimate, run
``fc1 -> [activation] -> dropout -> fc2 -> [activation] -> dropout`` (SPIN has no activation) and add the
residuals of three linear decoders (``decpose``, ``decshape``, ``deccam``, xavier-initialised with gain
0.01, so the first estimates stay near the mean).

Hypotheses: the decoders output ``hypotheses`` residuals; hypothesis 0 is the one fed back (the
estimate the next iteration refines), the others are alternatives offset from the same state (e.g.
the body turned around: 2D keypoints do not say front from back). Every iteration's hypotheses are
returned, for a loss per iteration.
"""
from __future__ import annotations

import torch
from torch import nn

POSE_DIM, SHAPE_DIM, CAM_DIM = 24 * 6, 10, 3


class IEFHead(nn.Module):
    """Args:
        in_dim: width of the feature ``x``; cond_dim: width of the condition (0 for none).
        hidden: fc1/fc2 width (1024 in SPIN); iterations: IEF steps (3); dropout: after fc1 and fc2 (0.5 in SPIN).
        activation: ``"none"`` (SPIN) or ``"relu"`` after fc1 and fc2.
        hypotheses: outputs per person.
        init_pose6d [H, 144], init_betas [10], init_cam [3]: mean parameters (the start of every hypothesis
        is the same state; hypothesis h's decoders add their own offset, initialised from ``init_pose6d[h] -
        init_pose6d[0]``).
    """

    def __init__(self, in_dim: int, cond_dim: int, init_pose6d: torch.Tensor, init_betas: torch.Tensor,
                 init_cam: torch.Tensor, hidden: int = 1024, iterations: int = 3, dropout: float = 0.5,
                 activation: str = "none", hypotheses: int = 1) -> None:
        super().__init__()
        if activation not in ("none", "relu"):
            raise ValueError(f"activation must be 'none' or 'relu', got {activation!r}")
        self.iterations, self.hypotheses, self.activation = iterations, hypotheses, activation
        width = in_dim + cond_dim + POSE_DIM + SHAPE_DIM + CAM_DIM
        self.fc1 = nn.Linear(width, hidden)
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.decpose = nn.Linear(hidden, POSE_DIM * hypotheses)
        self.decshape = nn.Linear(hidden, SHAPE_DIM * hypotheses)
        self.deccam = nn.Linear(hidden, CAM_DIM * hypotheses)
        for dec in (self.decpose, self.decshape, self.deccam):
            nn.init.xavier_uniform_(dec.weight, gain=0.01)
            nn.init.zeros_(dec.bias)
        with torch.no_grad():  # the alternatives start from their own mean (e.g. turned around)
            offset = (init_pose6d - init_pose6d[:1]).reshape(-1)
            self.decpose.bias.copy_(offset)
        self.register_buffer("init_pose", init_pose6d[0].clone())
        self.register_buffer("init_betas", init_betas.clone())
        self.register_buffer("init_cam", init_cam.clone())

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args: x [B, in_dim], cond [B, cond_dim] or None.
        Returns: pose6d [I, B, H, 144], betas [I, B, H, 10], cam [I, B, H, 3] for the I iterations."""
        B, H = x.shape[0], self.hypotheses
        pose = self.init_pose.expand(B, -1)
        betas = self.init_betas.expand(B, -1)
        cam = self.init_cam.expand(B, -1)
        feat = x if cond is None else torch.cat([x, cond], -1)
        act = torch.relu if self.activation == "relu" else (lambda t: t)
        # fc1 of [feat, state] = W_feat feat + W_state state + b: the feature's part once, not per iteration
        n = feat.shape[-1]
        w_feat, w_state = self.fc1.weight[:, :n], self.fc1.weight[:, n:]
        base = nn.functional.linear(feat, w_feat, self.fc1.bias)
        poses, shapes, cams = [], [], []
        for _ in range(self.iterations):
            h = self.drop1(act(base + nn.functional.linear(torch.cat([pose, betas, cam], -1), w_state)))
            h = self.drop2(act(self.fc2(h)))
            p = pose[:, None] + self.decpose(h).view(B, H, POSE_DIM)
            s = betas[:, None] + self.decshape(h).view(B, H, SHAPE_DIM)
            c = cam[:, None] + self.deccam(h).view(B, H, CAM_DIM)
            poses.append(p), shapes.append(s), cams.append(c)
            pose, betas, cam = p[:, 0], s[:, 0], c[:, 0]
        return torch.stack(poses), torch.stack(shapes), torch.stack(cams)
