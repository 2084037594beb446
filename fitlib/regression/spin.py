"""SPIN's network (``HMR`` of nkolot/SPIN's ``models/hmr.py``) as a fitlib :class:`~fitlib.regression.model.Regressor`.

SPIN's ``HMR`` holds a ResNet-50 at its top level (``conv1``, ``bn1``, ``layer1``..``layer4``, no ``fc``),
then the IEF head: ``fc1 = Linear(2048 + 144 + 10 + 3, 1024)`` over ``cat([feature, pose6d, betas, cam])``,
dropout, ``fc2 = Linear(1024, 1024)``, dropout, ``decpose`` (144), ``decshape`` (10), ``deccam`` (3), no
activations, 3 iterations from the buffers ``init_pose`` [1, 144], ``init_shape`` [1, 10], ``init_cam`` [1, 3]
(``smpl_mean_params.npz``). That is fitlib's image regressor with :func:`spin_config`: ``encoder.backbone`` is
:func:`fitlib.regression.resnet.resnet50`, ``head`` the :class:`~fitlib.regression.heads.IEFHead` (no box
condition), and the weights only need renaming (:data:`SPIN_KEY_MAP`).

Conventions (SPIN's): input 224 x 224 RGB crops of the person box (the regressor normalises them with
ImageNet's mean and standard deviation); pose as 6D rotations, joint j's entries ``6j..6j+5`` being its
rotation matrix's first two columns read row by row (``x.view(-1, 3, 2)``: columns ``a1 = x[:, :, 0]``,
``a2 = x[:, :, 1]``), made a rotation by Gram-Schmidt (``b1 = a1 / |a1|``, ``b2`` = ``a2`` minus its ``b1``
part, normalised, ``b3 = b1 x b2``), which is :func:`roma.special_gramschmidt`; the camera ``(s, tx, ty)``
is SPIN's crop camera: scale and offset of SMPL's origin (not the pelvis), seen by a perspective camera of
focal length 5000 px on the 224 px crop (``camera: spin``, :func:`fitlib.regression.camera.spin_project`).

* :func:`read_spin_mean_params`: ``smpl_mean_params.npz``, read without pickles;
* :func:`spin_to_fitlib_state_dict`: SPIN's names to fitlib's;
* :func:`load_spin_checkpoint`: ``model_checkpoint.pt`` (weights only) to a :class:`Regressor` in eval mode.

Every problem is a ValueError naming the file (or the state dict) and the keys or entries at fault.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fitlib.regression.resnet import load_weights_file, state_dict_of

if TYPE_CHECKING:
    from fitlib.regression.model import Regressor

MAX_BYTES = 1 << 30
"""SPIN checkpoints larger than this (1 GiB) are refused before reading (``model_checkpoint.pt``, with its
Adam state, is about 0.3 GiB)."""
MEAN_PARAMS_MAX_BYTES = 1 << 20
"""Mean-parameter files larger than this (1 MiB; SPIN's is about 2 kB) are refused before reading."""
POSE_DIM, SHAPE_DIM, CAM_DIM = 24 * 6, 10, 3

SPIN_KEY_MAP: dict[str, str] = {
    **{f"{name}.": f"encoder.backbone.{name}." for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")},
    **{f"{name}.": f"head.{name}." for name in ("fc1", "fc2", "decpose", "decshape", "deccam")},
    "init_pose": "head.init_pose", "init_shape": "head.init_betas", "init_cam": "head.init_cam",
}
"""SPIN ``HMR`` name -> fitlib ``Regressor`` name. Entries ending in ``.`` rename every key under that module
(``layer3.2.bn1.weight`` -> ``encoder.backbone.layer3.2.bn1.weight``); the others are whole keys (the mean
buffers, whose leading dimension of 1 is dropped: [1, 144] -> [144])."""
SPIN_DROPPED = ("fc.",)
"""SPIN key prefixes that are dropped: ResNet-50's ImageNet classifier, which ``HMR`` does not use."""
_BUFFERS = ("init_pose", "init_shape", "init_cam")
_MEAN_KEYS = ("head.init_pose", "head.init_betas", "head.init_cam")


def spin_config() -> dict:
    """The :class:`~fitlib.regression.model.RegressorConfig` settings of SPIN's network (a new dict per call)."""
    return {"encoder": "image", "camera": "spin", "hypotheses": 1, "head_hidden": 1024, "iterations": 3,
            "dropout": 0.5, "activation": "none", "layout": "coco17", "image_size": 224}


def read_spin_mean_params(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SPIN's ``smpl_mean_params.npz``: the IEF start.

    Read without unpickling (:func:`fitlib.io.safe_load.load_npz`); entries other than the three are ignored.

    Returns:
        pose6d [144] (24 joints' 6D rotations, SPIN's layout: see the module doc), betas [10], cam [3]
        (SPIN's crop camera s, tx, ty), float32. Entries stored as [1, n] are accepted.
    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not a regular file, too large, not an ``.npz``, an entry missing, not
            numeric, of another size, non-finite, or a 6D rotation whose columns are zero or parallel.
    """
    from fitlib.io.safe_load import load_npz, read_regular_file

    raw = read_regular_file(path, max_bytes=MEAN_PARAMS_MAX_BYTES, what="SPIN mean parameters file")
    arrays = load_npz(raw, str(path), max_bytes=MEAN_PARAMS_MAX_BYTES)
    out = []
    for key, n in (("pose", POSE_DIM), ("shape", SHAPE_DIM), ("cam", CAM_DIM)):
        if key not in arrays:
            raise ValueError(f"{path}: no {key!r} entry (SPIN's mean parameters are 'pose' [144], 'shape' [10], "
                             f"'cam' [3]); it holds {sorted(arrays)}")
        a = arrays[key]
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{path}: entry {key!r} is of type {a.dtype}, not numbers")
        if a.shape not in ((n,), (1, n)):
            raise ValueError(f"{path}: entry {key!r} has shape {a.shape}, expected ({n},)")
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: entry {key!r} has non-finite values")
        out.append(torch.as_tensor(a.reshape(n).astype(np.float32)))
    pose6d, betas, cam = out
    cols = pose6d.double().view(24, 3, 2)
    a1, a2 = cols[..., 0], cols[..., 1]
    n1 = a1.norm(dim=-1)
    rest = a2 - (a2 * a1).sum(-1, keepdim=True) * a1 / n1.clamp_min(1e-12)[..., None] ** 2
    bad = torch.nonzero((n1 < 1e-6) | (rest.norm(dim=-1) < 1e-6 * a2.norm(dim=-1).clamp_min(1.0))).flatten()
    if len(bad):
        raise ValueError(f"{path}: entry 'pose' has 6D rotations with zero or parallel columns for joints "
                         f"{bad.tolist()[:5]} (no rotation is defined there)")
    return pose6d, betas, cam


def _rename(key: str) -> str | None:
    for src, dst in SPIN_KEY_MAP.items():
        if src.endswith("."):
            if key.startswith(src):
                return dst + key[len(src):]
        elif key == src:
            return dst
    return None


def spin_to_fitlib_state_dict(sd: Mapping[str, torch.Tensor],
                              source: str = "SPIN state dict") -> dict[str, torch.Tensor]:
    """Rename SPIN ``HMR`` weights to a fitlib :class:`Regressor`'s (:data:`SPIN_KEY_MAP`).

    A ``module.`` prefix on every key (``DataParallel``) is removed first; ``fc.*`` (:data:`SPIN_DROPPED`)
    is dropped; the mean buffers ``init_pose`` [1, 144], ``init_shape`` [1, 10], ``init_cam`` [1, 3] become
    ``head.init_pose`` [144], ``head.init_betas`` [10], ``head.init_cam`` [3]. Shapes are otherwise kept as
    they are (:func:`load_spin_checkpoint` checks them against the network).

    Args:
        sd: SPIN's state dict (``checkpoint["model"]``).
        source: how error messages name it (e.g. the file).
    Returns:
        a new dict (the tensors are shared, not copied).
    Raises:
        ValueError: naming ``source`` and the first few keys that are not SPIN's (or values that are not tensors).
    """
    items = dict(sd)
    if items and all(isinstance(k, str) and k.startswith("module.") for k in items):
        items = {k[len("module."):]: v for k, v in items.items()}
    out: dict[str, torch.Tensor] = {}
    unknown, not_tensor = [], []
    for key, value in items.items():
        if not isinstance(key, str):
            unknown.append(repr(key))
            continue
        if key.startswith(SPIN_DROPPED):
            continue
        new = _rename(key)
        if new is None:
            unknown.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            not_tensor.append(key)
            continue
        if key in _BUFFERS and value.ndim == 2 and value.shape[0] == 1:
            value = value[0]
        out[new] = value
    if unknown:
        unknown.sort()
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ValueError(f"{source}: keys that SPIN's HMR does not have: {unknown[:5]}{more} (expected "
                         f"{sorted(SPIN_KEY_MAP)} and nothing else but {list(SPIN_DROPPED)})")
    if not_tensor:
        raise ValueError(f"{source}: values that are not tensors: {sorted(not_tensor)[:5]}")
    return out


def _placeholder_means() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Identity rotations, zero betas and camera: the head's start until the file's (or the caller's) is loaded
    (spares the regressor's default, which averages the training mocap)."""
    return torch.eye(3)[:, :2].reshape(6).repeat(24), torch.zeros(SHAPE_DIM), torch.zeros(CAM_DIM)


def load_spin_checkpoint(path: str | os.PathLike, mean_params: str | os.PathLike | None = None,
                         device: str | torch.device | None = None) -> Regressor:
    """SPIN's trained network as a fitlib :class:`Regressor` (:func:`spin_config`) in eval mode.

    Call it as ``net(None, K, images=crops, centre=centre, size=size)`` with ``crops`` [B, 3, 224, 224] RGB in
    [0, 1] of the square boxes ``centre`` [B, 2], ``size`` [B] px in the image of intrinsics ``K`` [B, 3, 3].

    Args:
        path: SPIN's ``model_checkpoint.pt``: a dict whose ``"model"`` entry is ``HMR``'s state dict (beside
            ``"optimizer"`` and counters), or that state dict itself; read with ``torch.load(weights_only=True)``
            (regular files up to :data:`MAX_BYTES`). ``module.`` prefixes are removed.
        mean_params: ``smpl_mean_params.npz`` (:func:`read_spin_mean_params`), replacing the checkpoint's
            ``init_pose`` / ``init_shape`` / ``init_cam`` (which the checkpoint may then lack).
        device: where to put the network (default CPU).
    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: unreadable, no state dict, keys SPIN's network does not have, keys
            missing, shapes that differ from SPIN's network, non-finite weights.
    """
    from fitlib.regression.model import Regressor

    path = Path(path)
    source = f"SPIN checkpoint {path}"
    obj = load_weights_file(path, what="SPIN checkpoint", max_bytes=MAX_BYTES)
    sd = spin_to_fitlib_state_dict(state_dict_of(obj, source), source)
    means = read_spin_mean_params(mean_params) if mean_params is not None else None
    model = Regressor(spin_config(), mean_params=_placeholder_means())
    expected = model.state_dict()
    optional = set(_MEAN_KEYS) if means is not None else set()
    missing = [k for k in expected if k not in sd and k not in optional and not k.endswith(".num_batches_tracked")]
    extra = sorted(k for k in sd if k not in expected)
    shapes = [f"{k}: {tuple(sd[k].shape)} in the file, {tuple(v.shape)} in SPIN's network"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        def first(keys: list[str], n: int = 5) -> str:
            return f"{keys[:n]}{f' (and {len(keys) - n} more)' if len(keys) > n else ''}"

        parts = ([f"missing {first(missing)}"] if missing else []) + ([f"unexpected {first(extra)}"] if extra else []) \
            + ([f"shape mismatch {first(shapes, 3)}"] if shapes else [])
        raise ValueError(f"{source}: weights do not fit SPIN's network (names as in fitlib): " + "; ".join(parts))
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{source}: damaged weights (non-finite values in {sorted(bad)[:5]})")
    model.load_state_dict(sd, strict=False)
    if means is not None:
        with torch.no_grad():
            for key, value in zip(_MEAN_KEYS, means):
                model.get_buffer(key).copy_(value)
    return model.to(device or "cpu").eval()
