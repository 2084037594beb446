"""``fitlib.fit``: from an image and (optionally) its 2D keypoints to SMPL fits."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fitlib.body_model import load_body_model
from fitlib.camera import default_intrinsics, project
from fitlib.config import FitConfig, load_config
from fitlib.detect import Keypoints, detect
from fitlib.fitter import fit_keypoints
from fitlib.image_io import load_image
from fitlib.layouts import get_layout
from fitlib.result import FitResult


def _as_keypoints(keypoints: Any, layout: str, image_size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """[P, J, 3] array and layout name from an array, a Keypoints, or mmpose output."""
    if isinstance(keypoints, Keypoints):
        return np.asarray(keypoints.keypoints, dtype=np.float64), keypoints.layout
    if isinstance(keypoints, torch.Tensor):
        keypoints = keypoints.detach().cpu().numpy()
    try:
        arr = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim not in (2, 3):
        from fitlib.mmpose_io import keypoints_from_mmpose

        kp = keypoints_from_mmpose(keypoints)
        return np.asarray(kp.keypoints, dtype=np.float64), kp.layout
    if arr.ndim == 2:
        arr = arr[None]
    n = len(get_layout(layout))
    if arr.ndim != 3 or arr.shape[1:] != (n, 3):
        raise ValueError(f"keypoints for layout {layout!r} must have shape [P, {n}, 3] (x, y, confidence), "
                         f"got {arr.shape}")
    return arr, layout


def _as_init(init: Any, P: int) -> dict | None:
    if init is None:
        return None
    if isinstance(init, FitResult):
        init = {"pose": init.pose, "betas": init.betas, "transl": init.transl}
    out = {}
    for key, size in (("pose", 72), ("betas", 10), ("transl", 3)):
        if init.get(key) is not None:
            v = np.asarray(init[key], dtype=np.float64).reshape(P, -1) if np.size(init[key]) == P * size else None
            if v is None:
                raise ValueError(f"init {key!r} must hold {size} numbers per person for {P} people, "
                                 f"got shape {np.shape(init[key])}")
            out[key] = torch.as_tensor(v)
    return out


def fit(image: str | Path | np.ndarray, keypoints: Any = None, *, layout: str = "coco17",
        K: np.ndarray | None = None, init: Any = None, config: str | Path | dict | FitConfig | None = None,
        device: str | torch.device | None = None, model: str | Path = "open") -> FitResult:
    """Fit SMPL bodies to the people in one image.

    Args:
        image: a path or an HxW / HxWx3 / HxWx4 uint8 array (RGB); used for its
            size, the default intrinsics and overlays.
        keypoints: [P, J, 3] (x px, y px, confidence) in ``layout``, a
            :class:`fitlib.detect.Keypoints`, or mmpose's output (result dicts,
            ``PoseDataSample``s, saved JSON); None runs the bundled detector.
        layout: layout of a plain keypoint array (ignored for the other forms).
        K: [3, 3] intrinsics in pixels; default focal ``sqrt(w² + h²)``, centred.
        init: starting SMPL parameters (a :class:`FitResult` or a dict with
            ``pose`` [P, 72], ``betas`` [P, 10], ``transl`` [P, 3]), e.g. from a
            regressor or the previous video frame.
        config: fitting config name, YAML path, dict or :class:`FitConfig`.
        device: torch device (default CPU).
        model: body model (``"open"`` or an SMPL file/folder).
    Returns:
        :class:`FitResult`; nobody in the image gives an empty result.
    """
    img = load_image(image)
    h, w = img.shape[:2]
    if keypoints is None:
        keypoints = detect(img)
    kps, layout = _as_keypoints(keypoints, layout, (h, w))
    P = kps.shape[0]
    bm = load_body_model(model, device=device)
    dtype = bm.joint_template.dtype
    Kt = default_intrinsics(h, w, dtype=dtype) if K is None else torch.as_tensor(np.asarray(K, dtype=np.float64), dtype=dtype)
    if Kt.shape != (3, 3):
        raise ValueError(f"K must be a 3x3 intrinsics matrix, got shape {tuple(Kt.shape)}")
    cfg = load_config(config)
    J = len(get_layout(layout))
    if P == 0:
        e = np.zeros((0,))
        return FitResult(np.zeros((0, 72)), np.zeros((0, 10)), np.zeros((0, 3)), Kt.cpu().numpy().astype(np.float64),
                         (h, w), layout, np.zeros((0, J, 3)), np.zeros((0, J, 2)), np.zeros((0, 24, 3)), e, e,
                         e.astype(bool), e.astype(bool), str(model))
    out = fit_keypoints(bm, torch.as_tensor(kps, dtype=dtype, device=bm.joint_template.device), Kt.to(bm.joint_template.device),
                        layout, cfg, _as_init(init, P), image_size=(h, w))
    with torch.no_grad():
        body = bm(out.pose, out.betas, out.transl, layout=layout)
        proj = project(body.keypoints, Kt.to(body.keypoints.device))
        proj[:, ~body.keypoint_mask] = float("nan")
    np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return FitResult(pose=np_(out.pose).reshape(P, 72).astype(np.float64), betas=np_(out.betas).astype(np.float64),
                     transl=np_(out.transl).astype(np.float64), K=np_(Kt).astype(np.float64), image_size=(h, w),
                     layout=layout, keypoints=kps, projected=np_(proj).astype(np.float64),
                     joints=np_(body.joints).astype(np.float64),
                     reprojection_error=np_(out.reprojection_error).astype(np.float64),
                     loss=np_(out.loss).astype(np.float64), converged=np_(out.converged),
                     fitted=np_(out.fitted), model=str(model))
