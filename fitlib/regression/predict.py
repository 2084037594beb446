"""Running a trained regressor on keypoints (and, for an image network, the image): layout conversion, checks,
crops, hypothesis selection.

:class:`KeypointRegressor` wraps a loaded :class:`~fitlib.regression.model.Regressor` with a body model.
``predict(keypoints, K, layout, images=None)`` converts the keypoints to the network's layout (points with
the same name; a layout that cannot provide the network's torso and limb points is an error naming it),
flags people with too few usable points (they are not regressed), runs the network and returns every
hypothesis plus the one whose projection is closest to the keypoints (:class:`Prediction`). An image
network (``encoder: image``, e.g. a converted SPIN checkpoint) also needs each person's image: it reads the
crop of the person's keypoint box (:func:`~fitlib.regression.camera.keypoint_box`, SPIN's 1.2 x the
keypoints' extent; :mod:`fitlib.datasets.crops`), and its camera is converted to the image's intrinsics.
:func:`shared_regressor` keeps one per (checkpoint, body model, device) for the process.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from fitlib.body.layouts import FEET_NAMES, conversion_matrix, convert_keypoints, get_layout
from fitlib.body.model import BodyModel, model_key, resolve_device, shared_body_model
from fitlib.camera import project
from fitlib.params import SMPLParams
from fitlib.regression.checkpoint import load_regressor, shipped_path
from fitlib.regression.model import Regressor

MIN_POINTS = 6
"""A person needs this many usable points, two of them on the torso (shoulders, hips), to be regressed."""
_TORSO = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
_REQUIRED = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
             "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
"""Points a source layout must provide (directly or derived) for the network to read it."""


@dataclass
class Prediction:
    """The regressor's estimates of P people (camera frame).

    Attributes:
        params: [P] the selected hypothesis of each person.
        hypotheses: [P, H] every hypothesis (the refine step may keep any of them).
        best: [P] index of the selected hypothesis (lowest confidence-weighted 2D error).
        hypothesis_error: [P, H] mean 2D error (px) of each hypothesis against the keypoints.
        projected: [P, J, 2] the selected hypothesis' keypoints (px) in the caller's layout.
        joints: [P, 24, 3] its SMPL joints (m).
        reprojection_error: [P] mean 2D error (px) over the person's usable points (its ``hypothesis_error``).
        fitted: [P] bool, False for people with too few usable points (their parameters are the mean start).
    """

    params: SMPLParams
    hypotheses: SMPLParams
    best: torch.Tensor
    hypothesis_error: torch.Tensor
    projected: torch.Tensor
    joints: torch.Tensor
    reprojection_error: torch.Tensor
    fitted: torch.Tensor


def check_layout(layout: str, network_layout: str) -> None:
    """ValueError naming ``layout`` when it cannot give the network's torso and limb points."""
    src, dst = get_layout(layout), get_layout(network_layout)
    M = conversion_matrix(src, dst)
    missing = [n for n in _REQUIRED if n in dst.names and not M[dst.index(n)].any()]
    if missing:
        raise ValueError(f"the regressor reads {dst.name!r} keypoints; layout {src.name!r} has no points "
                         f"corresponding to {missing[:4]}{'...' if len(missing) > 4 else ''}: convert them first "
                         f"(fitlib.convert_keypoints) or fit without the regressor")


def network_keypoints(keypoints: np.ndarray, layout, network_layout: str, min_confidence: float = 0.01) -> np.ndarray:
    """[P, J_net, 3] ``keypoints`` [P, J, 3] of ``layout`` converted to the network's layout
    (:func:`fitlib.convert_keypoints`), with a person's foot points all or none: someone missing any of them
    (below ``min_confidence``, the network's threshold, or not given by the layout: MediaPipe-33 has heels but
    no toes, BlazePose's ``coco17_feet`` no small toes) gives the network none, as from a COCO-17 detector.
    The network learned feet from detectors that give all six: heels alone made its estimates 1.5 mm worse than
    no feet on the synthetic set (benchmarks/RESULTS.md). The fit still uses every point the caller gave."""
    src, dst = get_layout(layout), get_layout(network_layout)
    out = convert_keypoints(keypoints, src, dst)
    feet = [dst.index(n) for n in FEET_NAMES if n in dst.names]
    if feet:
        f = out[:, feet]
        seen = np.isfinite(f).all(-1) & (np.nan_to_num(f[..., 2]) >= min_confidence) & (np.nan_to_num(f[..., 2]) > 0)
        out[np.ix_(~seen.all(-1), feet)] = np.nan
    return out


class KeypointRegressor:
    """A trained regressor and the body model its parameters are posed with."""

    def __init__(self, net: Regressor, body_model: BodyModel, header: dict | None = None) -> None:
        self.net, self.body_model, self.header = net.eval(), body_model, header or {}
        self.layout = net.config.layout
        self.device = next(net.parameters()).device

    @property
    def needs_images(self) -> bool:
        """True for an image network (``predict`` then needs ``images``)."""
        return self.net.config.encoder == "image"

    @property
    def reads_world(self) -> bool:
        """True for a network with the world-landmark branch (``predict`` then uses ``world`` where given)."""
        return bool(self.net.config.world_landmarks)

    @torch.no_grad()
    def predict(self, keypoints, K, layout: str = "coco17", images: Sequence[np.ndarray] | None = None,
                world=None) -> Prediction:
        """Args:
            keypoints: [P, J, 3] (x px, y px, confidence) in ``layout`` (array or tensor; NaN / confidence 0: missing).
            K: [P, 3, 3] or [3, 3] intrinsics.
            images: for an image network, person p's image (H x W x 3 uint8 RGB) as ``images[p]`` (the same array
                for the people of one image).
            world: [P, 33, 3] BlazePose world landmarks (m, ``mediapipe33`` order, :attr:`fitlib.Keypoints.world`;
                NaN rows: none for that person) for a network that reads them (:attr:`reads_world`); others
                ignore them.
        """
        lay = get_layout(layout)
        kp = np.asarray(keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else keypoints,
                        dtype=np.float64)
        if kp.ndim != 3 or kp.shape[1:] != (len(lay), 3):
            raise ValueError(f"keypoints for layout {lay.name!r} must have shape [P, {len(lay)}, 3], got {kp.shape}")
        check_layout(lay.name, self.layout)
        net_kp = network_keypoints(kp, lay, self.layout, self.net.config.min_confidence)
        P = len(kp)
        dev, dtype = self.device, torch.float32
        Kt = torch.as_tensor(np.asarray(K.cpu() if isinstance(K, torch.Tensor) else K, dtype=np.float64), dtype=dtype)
        Kt = Kt.to(dev).expand(P, 3, 3) if Kt.ndim == 2 else Kt.to(dev)
        if Kt.shape != (P, 3, 3) or not torch.isfinite(Kt).all():
            raise ValueError(f"K must be finite [3, 3] or [{P}, 3, 3], got shape {tuple(Kt.shape)}")
        x = torch.as_tensor(net_kp, dtype=dtype, device=dev)
        vis = self.net.visible(x)
        net_lay = get_layout(self.layout)
        torso = vis[:, [net_lay.index(n) for n in _TORSO]].sum(-1)
        fitted = (vis.sum(-1) >= MIN_POINTS) & (torso >= 2)
        centre = size = crops = None
        if self.needs_images:
            if images is None or len(images) != P:
                raise ValueError(f"an image regressor needs each person's image: got "
                                 f"{'none' if images is None else len(images)} for {P} people")
            crops, centre, size = self._crops(x, vis, images)
        out = self.net(x, Kt, crops, centre, size, world=self._world(world, P) if self.reads_world else None)
        hyp = out.params(self.body_model)  # [P, H] (last iteration)
        H = hyp.betas.shape[1]
        flat = hyp.map(lambda t: t.reshape(P * H, -1))
        body = self.body_model(flat.pose.reshape(-1, 24, 3), flat.betas, flat.transl, layout=lay)
        proj = project(body.keypoints, Kt.repeat_interleave(H, 0)).view(P, H, len(lay), 2)
        src = torch.as_tensor(kp, dtype=dtype, device=dev)
        use = torch.isfinite(src).all(-1) & (src[..., 2] > 0) & body.keypoint_mask[None]
        w = torch.where(use, src[..., 2].nan_to_num().clamp(0, 1), torch.zeros_like(src[..., 2]))
        d = (proj - src[:, None, :, :2].nan_to_num()).norm(dim=-1)
        err = (d * w[:, None]).sum(-1) / w.sum(-1, keepdim=True).clamp_min(1e-9)  # [P, H] px
        best = err.argmin(-1)
        rows = torch.arange(P, device=dev)
        params = hyp.map(lambda t: t[rows, best])
        joints = body.joints.view(P, H, 24, 3)[rows, best]
        return Prediction(params, hyp, best, err, proj[rows, best], joints, err[rows, best], fitted)


    def _world(self, world, P: int) -> torch.Tensor | None:
        """[P, W, 3] the network's world points (:data:`~fitlib.body.layouts.WORLD_POINTS`) of ``world``
        [P, 33, 3], or None."""
        from fitlib.body.layouts import WORLD19_FROM_MEDIAPIPE33

        if world is None:
            return None
        w = torch.as_tensor(np.asarray(world.detach().cpu() if isinstance(world, torch.Tensor) else world,
                                       dtype=np.float64), dtype=torch.float32)
        if w.shape != (P, 33, 3):
            raise ValueError(f"world landmarks must be [{P}, 33, 3] (mediapipe33 order, metres), got {tuple(w.shape)}")
        return w[:, list(WORLD19_FROM_MEDIAPIPE33)].to(self.device)

    def _crops(self, x: torch.Tensor, vis: torch.Tensor, images: Sequence[np.ndarray]):
        """Crops [P, 3, S, S] of the people's keypoint boxes, and the boxes (centre [P, 2], size [P] px)."""
        from fitlib.datasets.crops import crop_image, crop_matrix
        from fitlib.regression.camera import keypoint_box

        S = self.net.config.image_size
        centre, size = keypoint_box(torch.nan_to_num(x[..., :2]), vis)
        c, b = centre.double().cpu().numpy(), size.double().cpu().numpy()
        crops = np.stack([crop_image(np.asarray(img), crop_matrix(c[p], float(b[p]), S), S)
                          for p, img in enumerate(images)]) if len(images) else np.zeros((0, 3, S, S), np.float32)
        return torch.as_tensor(crops, dtype=x.dtype, device=x.device), centre, size


def shared_regressor(checkpoint: str | Path | None = None, model: str | Path = "open",
                     device: str | torch.device | None = None) -> KeypointRegressor:
    """The process's :class:`KeypointRegressor` for a checkpoint (default: the shipped weights), body model and
    device, loaded on first use and reused after."""
    path = Path(checkpoint) if checkpoint is not None else shipped_path()
    stamp = path.stat().st_mtime_ns if path.is_file() else None
    return _shared(str(path.resolve()), stamp, model_key(model), str(resolve_device(device)))


@functools.lru_cache(maxsize=8)
def _shared(path: str, stamp, model: tuple, device: str) -> KeypointRegressor:
    net, header = load_regressor(path, device)
    return KeypointRegressor(net, shared_body_model(model[0], device), header)
