"""EasyMocap's per-frame SMPL JSON (``<out>/smpl/000000.json``): a list with one object per person,
``{"id": int, "Rh": [[3]], "Th": [[3]], "poses": [[72]], "shapes": [[10]]}``.

EasyMocap separates the global rotation and translation from SMPL's parameters: ``poses[:3]`` is zero and
its body model places the vertices as ``V = X @ R(Rh)^T + Th``, where ``X`` is the mesh posed by ``poses``
and ``shapes`` with no global rotation, in the model's own coordinates. ``Rh`` thus turns the body about the
model's origin, while SMPL's (smplx's) ``global_orient`` turns it about the pelvis joint and ``transl`` moves it
after: ``V = R (X - j0) + j0 + transl``, with ``j0`` the rest-pose pelvis of the shaped body (it depends on the
betas). The two agree when ``Rh = global_orient`` and

    ``Th = transl + j0 - R(Rh) j0``

which is what :func:`easymocap_people` writes (EasyMocap's own ``convert_from_standard_smpl`` does the same).
``Rh`` / ``Th`` are meant in EasyMocap's world frame; fitlib's fits are in the camera frame (OpenCV: x right,
y down, z forward, metres), so here that "world" is the camera: render them with identity extrinsics.
``shapes`` are the betas of the body model the fit used (for the open model, not SMPL's: same layout,
other shapes).

Checked against EasyMocap's ``doc/02_output.md`` and ``easymocap/smplmodel/body_model.py`` (``forward``,
``convert_from_standard_smpl``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from fitlib.interop._common import as_array, number_list, read_json, write_json

MAX_EASYMOCAP_FILE_BYTES = 64 * 2**20


def _rotmat(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues: [N, 3] axis-angle (radians) -> [N, 3, 3]."""
    theta = np.linalg.norm(rotvec, axis=1, keepdims=True)
    axis = np.where(theta > 1e-12, rotvec / np.maximum(theta, 1e-300), 0.0)
    x, y, z = axis.T
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).reshape(-1, 3, 3)
    s, c = np.sin(theta)[:, :, None], np.cos(theta)[:, :, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def rest_pelvis(betas: Any, body_model: Any = "open") -> np.ndarray:
    """The rest-pose pelvis (joint 0) [N, 3] in metres of the shaped body, for betas [N, 10], of ``body_model``
    (a :class:`~fitlib.BodyModel`, ``"open"`` or a model path)."""
    from fitlib.body.model import BodyModel, shared_body_model

    bm = body_model if isinstance(body_model, BodyModel) else shared_body_model(body_model)
    b = torch.as_tensor(np.asarray(betas, np.float64), dtype=bm.joint_template.dtype, device=bm.joint_template.device)
    with torch.no_grad():
        return bm.rest_joints(b)[:, 0].cpu().numpy().astype(np.float64)


def easymocap_people(*, pose: Any, betas: Any, transl: Any, pelvis: Any, ids: Sequence[int] | None = None) -> list[dict]:
    """SMPL parameters of P people as EasyMocap's per-person dicts (see the module doc).

    Args:
        pose: [P, 72] axis-angle (radians), joint 0 the global orientation; betas: [P, 10];
        transl: [P, 3] SMPL translation (metres); pelvis: [P, 3] each body's rest-pose pelvis
            (:func:`rest_pelvis`).
        ids: [P] person ids (track ids); default 0..P-1.
    Returns:
        ``[{"id", "Rh": [[3]], "Th": [[3]], "poses": [[72]] (first 3 zero), "shapes": [[10]]}, ...]``.
    """
    pose_a = as_array("pose", pose, (None, 72))
    P = len(pose_a)
    betas_a, transl_a, j0 = as_array("betas", betas, (P, 10)), as_array("transl", transl, (P, 3)), as_array("pelvis", pelvis, (P, 3))
    if ids is None:
        ids = range(P)
    ids = list(ids)
    if len(ids) != P or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"ids must be {P} whole numbers")
    R = _rotmat(pose_a[:, :3])
    Th = transl_a + j0 - np.einsum("nij,nj->ni", R, j0)
    poses = pose_a.copy()
    poses[:, :3] = 0.0
    return [{"id": int(ids[p]), "Rh": [pose_a[p, :3].tolist()], "Th": [Th[p].tolist()], "poses": [poses[p].tolist()],
             "shapes": [betas_a[p].tolist()]} for p in range(P)]


def write_easymocap(path: str | os.PathLike, *, pose: Any, betas: Any, transl: Any, pelvis: Any = None,
                    body_model: Any = "open", ids: Sequence[int] | None = None) -> Path:
    """Write one frame's people as an EasyMocap SMPL JSON, atomically.

    Args as for :func:`easymocap_people`; ``pelvis`` defaults to :func:`rest_pelvis` of ``body_model``.
    People whose parameters are not finite (not fitted) are refused: leave them out.
    """
    if pelvis is None:
        pelvis = rest_pelvis(as_array("betas", betas, (None, 10)), body_model)
    return write_json(path, easymocap_people(pose=pose, betas=betas, transl=transl, pelvis=pelvis, ids=ids))


def export_easymocap(results: Sequence[Any], folder: str | os.PathLike, names: Sequence[str] | None = None,
                     body_model: Any = None) -> list[Path]:
    """Write ``folder/<name>.json`` per :class:`~fitlib.FitResult` (frame), its fitted people with ids = their
    index in the result; ``names`` default ``000000``, ``000001``, ... (EasyMocap's naming). ``body_model``:
    the model of the fits (default: each result's ``model``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}" for i in range(len(results))] if names is None else list(names)
    if len(names) != len(results):
        raise ValueError(f"{len(names)} names for {len(results)} results")
    paths = []
    for r, name in zip(results, names):
        rows = np.flatnonzero(r.fitted)
        bm = body_model if body_model is not None else r.model
        pelvis = rest_pelvis(r.betas[rows], bm) if rows.size else np.zeros((0, 3))
        paths.append(write_easymocap(folder / f"{name}.json", pose=r.pose[rows], betas=r.betas[rows],
                                     transl=r.transl[rows], pelvis=pelvis, ids=[int(i) for i in rows]))
    return paths


def read_easymocap(path: str | os.PathLike | list | dict, *, pelvis: Any = None, body_model: Any = "open") -> dict[str, np.ndarray]:
    """Read an EasyMocap SMPL JSON (or its parsed list, or the ``{"annots": [...]}`` form) back into SMPL parameters.

    Returns:
        ``{"ids": [P], "pose": [P, 72] (joint 0 = Rh), "betas": [P, 10], "transl": [P, 3]}`` with
        ``transl = Th - j0 + R(Rh) j0`` (the inverse of :func:`easymocap_people`); ``pelvis`` [P, 3] as there,
        default :func:`rest_pelvis` of ``body_model``. SMPL-H / SMPL-X poses (78 / 87 numbers) are refused.
    Raises:
        ValueError naming the file and the field.
    """
    if isinstance(path, (list, dict)):
        data, source = path, "<data>"
    else:
        data, source = read_json(path, max_bytes=MAX_EASYMOCAP_FILE_BYTES, what="EasyMocap file"), str(path)
    if isinstance(data, dict) and isinstance(data.get("annots"), list):  # newer EasyMocap writes {"annots": [...]}
        data = data["annots"]
    if not isinstance(data, list):
        raise ValueError(f"EasyMocap file {source}: expected a list of people, got {type(data).__name__}")
    sizes = {"Rh": 3, "Th": 3, "poses": 72, "shapes": 10}
    ids, cols = [], {k: [] for k in sizes}
    for i, person in enumerate(data):
        where = f"EasyMocap file {source}: [{i}]"
        if not isinstance(person, dict):
            raise ValueError(f"{where} must be an object, got {type(person).__name__}")
        for key, size in sizes.items():
            value = person.get(key)
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                value = value[0]
            cols[key].append(number_list(value, f"{where}.{key}", size))
        pid = person.get("id", i)
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise ValueError(f"{where}.id must be a whole number, got {pid!r:.40}")
        ids.append(pid)
    arr = {k: np.stack(v) if v else np.zeros((0, sizes[k])) for k, v in cols.items()}
    if pelvis is None:
        pelvis = rest_pelvis(arr["shapes"], body_model) if len(ids) else np.zeros((0, 3))
    j0 = as_array("pelvis", pelvis, (len(ids), 3))
    if np.any(np.abs(arr["poses"][:, :3]) > 1e-6):
        bad = int(np.flatnonzero(np.abs(arr["poses"][:, :3]).max(1) > 1e-6)[0])
        raise ValueError(f"EasyMocap file {source}: [{bad}].poses starts with a non-zero rotation; fitlib reads "
                         "files whose global rotation is in Rh only (poses[:3] = 0, as EasyMocap writes them)")
    R = _rotmat(arr["Rh"])
    pose = arr["poses"].copy()
    pose[:, :3] = arr["Rh"]
    transl = arr["Th"] - j0 + np.einsum("nij,nj->ni", R, j0)
    return {"ids": np.array(ids, dtype=np.int64), "pose": pose, "betas": arr["shapes"], "transl": transl}
