"""A label store's valid pseudo-labels as training samples for the regressor (training in the loop).

Each sample is a person's stored fit: its 2D keypoints as the detections (converted to the network's
layout), the intrinsics and image size it was scored with, and, where the label ``has_smpl``, its pose and
betas as SMPL supervision. There is no exact 2D and no measured 3D (``has_gt2d`` / ``has_3d`` false): the
trainer's 2D loss is against the keypoints, its parameter loss against the fit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fitlib.body.model import BodyModel
from fitlib.labels.store import LabelStore
from fitlib.regression.predict import network_keypoints
from fitlib.datasets.batch import Batch


class PseudoLabels:
    """The valid labels of ``store`` (N samples; with ``smpl_only``, those with SMPL parameters) for a network
    reading ``layout``.

    Raises:
        ValueError: the store has no valid label.
    """

    def __init__(self, store: str | Path, model: BodyModel, layout: str = "coco17", smpl_only: bool = False) -> None:
        rows = {k: [] for k in ("kp", "K", "hw", "pose", "betas", "transl", "smpl")}
        with LabelStore(store) as st:
            for lab in st.labels(valid_only=True):
                if smpl_only and not lab.has_smpl:
                    continue
                rows["kp"].append(network_keypoints(lab.keypoints[None], lab.layout, layout)[0])
                rows["K"].append(lab.K)
                rows["hw"].append(lab.image_size)
                rows["pose"].append(lab.pose)
                rows["betas"].append(lab.betas)
                rows["transl"].append(lab.transl)
                rows["smpl"].append(lab.has_smpl)
        if not rows["kp"]:
            raise ValueError(f"{store}: no valid pseudo-label to train on")
        f = lambda k: torch.as_tensor(np.stack(rows[k]), dtype=torch.float32)  # noqa: E731
        self.keypoints, self.K, self.image_size = f("kp"), f("K"), f("hw")
        self.pose, self.betas, self.transl = f("pose").view(-1, 24, 3), f("betas"), f("transl")
        self.has_smpl = torch.as_tensor(rows["smpl"], dtype=torch.bool)
        with torch.no_grad():
            self.joints = model(self.pose, self.betas, self.transl).joints.float()

    def __len__(self) -> int:
        return len(self.keypoints)

    def batch(self, step: int, n: int, seed: int = 0) -> Batch:
        """``n`` samples drawn uniformly (a pure function of ``(seed, step, n)``)."""
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 7, step]).generate_state(1)[0]))
        i = torch.randint(len(self), (n,), generator=g)
        no = torch.zeros(n, dtype=torch.bool)
        return Batch(self.keypoints[i], torch.zeros_like(self.keypoints[i]), self.K[i], self.image_size[i], self.pose[i],
                     self.betas[i], self.transl[i], self.joints[i], self.has_smpl[i], no, torch.ones(n, dtype=torch.bool), no)
