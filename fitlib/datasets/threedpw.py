"""3DPW in fitlib: reading its sequence files and turning their world-frame SMPL ground truth into the
camera frame (the same files the synthetic stand-in :mod:`fitlib.datasets.synthetic` writes).

Reads 3DPW's ``sequenceFiles/<split>/*.pkl`` (latin-1 pickles; fields ``poses``, ``betas``,
``trans``, ``genders``, ``cam_poses``, ``cam_intrinsics``, ``poses2d``, ``campose_valid``,
``img_frame_ids``).

Ground truth: each person's gendered SMPL model (``genders`` 'm' / 'f') posed with the
dataset's world-frame ``poses`` / ``betas`` / ``trans`` and moved into the camera with
``cam_poses``; only frames with ``campose_valid`` are kept.  With ``smpl_dir="open"`` every
gender maps to fitlib's open model (the synthetic set is built with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from fitlib.body.layouts import convert_keypoints
from fitlib.body.model import load_body_model
from fitlib.io.safe_load import load_pickle, read_regular_file
from fitlib.params import SMPLParams

LAYOUT = "coco17"
"""The layout of :attr:`Sequence.keypoints`."""


def openpose18_to_coco17(kp: np.ndarray) -> np.ndarray:
    """3DPW ``poses2d`` points [..., 18, 3] to COCO-17 [..., 17, 3] by joint name (the neck is dropped;
    undetected points, confidence 0, become (nan, nan, 0))."""
    kp = np.asarray(kp, dtype=np.float64)
    if kp.shape[-2:] != (18, 3):
        raise ValueError(f"OpenPose-18 keypoints must have shape [..., 18, 3], got {kp.shape}")
    return convert_keypoints(kp, "openpose18", LAYOUT)


@dataclass
class Sequence:
    """One sequence's scored person-frames, concatenated over people (N rows)."""

    name: str
    person: np.ndarray  # [N] person index
    frame: np.ndarray  # [N] image frame index
    keypoints: torch.Tensor  # [N, J, 3] in ``layout`` (x px, y px, confidence)
    K: torch.Tensor  # [3, 3]
    image_size: tuple[int, int]  # (height, width)
    gt_joints: torch.Tensor  # [N, 24, 3] camera frame, metres
    gt_vertices: torch.Tensor  # [N, V, 3] camera frame, metres
    gt_keypoints: torch.Tensor  # [N, J, 3] camera frame, metres (the GT model's points of ``layout``)
    gt_params: SMPLParams  # [N] people, camera frame
    layout: str = LAYOUT  # the keypoints' layout (COCO-17, or a detections file's own)


MAX_SEQUENCE_BYTES = 1 << 30
"""Largest sequence file read (3DPW's are at most a few tens of MB)."""


def load_sequence_file(path: str | Path) -> dict:
    """Read a 3DPW sequence pickle (latin-1, Python 2 era) with fitlib's allow-list unpickler (numpy arrays,
    lists, dicts, text: nothing in the file can run; :func:`fitlib.io.safe_load.load_pickle`) and check the
    fields the benchmark needs. Raises FileNotFoundError or ValueError naming the file."""
    data = load_pickle(read_regular_file(path, max_bytes=MAX_SEQUENCE_BYTES, what="3DPW sequence file"), str(path))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a 3DPW sequence file (it holds a {type(data).__name__}, not a dict)")
    need = ("sequence", "poses", "betas", "trans", "cam_poses", "cam_intrinsics", "campose_valid", "poses2d")
    missing = [k for k in need if k not in data]
    if "genders" not in data and "gender" not in data:
        missing.append("genders")
    if missing:
        raise ValueError(f"{path}: not a 3DPW sequence file, missing fields {missing}")
    return data


def _gender(g) -> str:
    g = str(g).lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(g, "neutral")


def _select(valid: np.ndarray, max_frames: int | None) -> np.ndarray:
    idx = np.nonzero(valid)[0]
    if max_frames and len(idx) > max_frames:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int)]
    return idx


def build_sequence(data: dict, smpl_dir: str, keypoints: dict | None = None, max_frames: int | None = None,
                   dtype: torch.dtype = torch.float32, layout: str = LAYOUT) -> Sequence:
    """Ground truth (gendered models, camera frame) and input keypoints of one sequence.

    Args:
        data: a sequence dict (:func:`load_sequence_file`).
        smpl_dir: folder with SMPL_{MALE,FEMALE,NEUTRAL}.pkl, or ``"open"``.
        keypoints: ``{"<sequence>/<person>": [T, J, 3]}`` detections in ``layout`` replacing ``poses2d``.
        max_frames: score at most this many valid frames per person (evenly spaced).
        layout: the layout of ``keypoints`` (without them: COCO-17, ``poses2d`` converted).
    """
    if keypoints is None:
        layout = LAYOUT
    name = str(data["sequence"])
    genders = data.get("genders", data.get("gender"))
    cam = np.asarray(data["cam_poses"], dtype=np.float64)  # [T, 4, 4] world -> camera
    K = torch.as_tensor(np.asarray(data["cam_intrinsics"], dtype=np.float64), dtype=dtype)
    image_size = (int(round(2 * float(K[1, 2]))), int(round(2 * float(K[0, 2]))))
    rows: dict[str, list] = {k: [] for k in ("person", "frame", "kp", "joints", "verts", "gtkp", "pose", "betas",
                                             "transl")}
    for p in range(len(data["poses"])):
        poses = np.asarray(data["poses"][p], dtype=np.float64)
        T = len(poses)
        valid = np.asarray(data["campose_valid"][p]).astype(bool).reshape(-1)[:T]
        idx = _select(valid, max_frames)
        if not len(idx):
            continue
        if keypoints is not None:
            key = f"{name}/{p}"
            if key not in keypoints:
                raise ValueError(f"keypoints file has no entry {key!r}")
            kp = np.asarray(keypoints[key], dtype=np.float64)[idx]
        else:
            kp = openpose18_to_coco17(np.asarray(data["poses2d"][p], dtype=np.float64).transpose(0, 2, 1)[idx])
        model = load_body_model(smpl_dir, gender=_gender(genders[p]), dtype=dtype)
        betas = torch.as_tensor(np.asarray(data["betas"][p], dtype=np.float64)[:10], dtype=dtype).expand(len(idx), 10)
        pose = torch.as_tensor(poses[idx], dtype=dtype).reshape(-1, 24, 3)
        trans = torch.as_tensor(np.asarray(data["trans"][p], dtype=np.float64)[idx], dtype=dtype)
        R = torch.as_tensor(cam[idx, :3, :3], dtype=dtype)
        t = torch.as_tensor(cam[idx, :3, 3], dtype=dtype)
        with torch.no_grad():
            out = model(pose, betas, trans, layout=layout, vertices=True)
            to_cam = lambda x: torch.einsum("nij,nkj->nki", R, x) + t[:, None]  # noqa: E731
            # the same body as camera-frame SMPL parameters: orientation R @ R_g, and a translation
            # such that the pelvis (rotation centre) lands where the camera sees it
            j0 = model.rest_joints(betas)[:, 0]
            glob = roma.rotmat_to_rotvec(R @ roma.rotvec_to_rotmat(pose[:, 0]))
            pose_cam = torch.cat([glob[:, None], pose[:, 1:]], 1)
            transl_cam = torch.einsum("nij,nj->ni", R, j0 + trans) + t - j0
        rows["person"].append(np.full(len(idx), p))
        rows["frame"].append(idx)
        rows["kp"].append(torch.as_tensor(kp, dtype=dtype))
        rows["joints"].append(to_cam(out.joints))
        rows["verts"].append(to_cam(out.vertices))
        rows["gtkp"].append(to_cam(out.keypoints))
        rows["pose"].append(pose_cam)
        rows["betas"].append(betas)
        rows["transl"].append(transl_cam)
    if not rows["person"]:
        raise ValueError(f"sequence {name}: no valid frames")
    cat = lambda k: torch.cat(rows[k])  # noqa: E731
    return Sequence(name, np.concatenate(rows["person"]), np.concatenate(rows["frame"]), cat("kp"), K, image_size,
                    cat("joints"), cat("verts"), cat("gtkp"),
                    SMPLParams.from_pose(cat("pose"), cat("betas"), cat("transl")), layout)
