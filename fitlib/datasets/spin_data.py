"""SPIN's preprocessed training files (COCO, MPII, LSP, H36M, MPI-INF-3DHP, 3DPW as the field ships them, and the
files :func:`fitlib.interop.write_spin_npz` writes) read as batches of augmented person crops for the image
regressor (:class:`SpinDataset`). Pseudo-labels from a label store are attached to its samples without SMPL
ground truth by :func:`fitlib.training.image_samples.attach_pseudo_labels`.

The npz (read without unpickling, :func:`fitlib.io.safe_load.load_npz`), N samples:

* ``imgname`` [N] image paths relative to the image folder (required; absolute paths and ``..`` are refused);
* ``center`` [N, 2] px and ``scale`` [N] (box side / 200 px) the person's square box (required);
* ``part`` [N, 24, 3] x px, y px, confidence in SPIN's 24-point order (layout ``spin24``; default: none);
* ``openpose`` [N, 25, 3] the same in OpenPose BODY_25's order (detections; default: none);
* ``pose`` [N, 72] axis-angle (radians, camera frame) and ``shape`` [N, 10] betas, together or not at all;
  ``has_smpl`` [N] 0 / 1 (default: 1 where pose is given, as SPIN reads it);
* ``S`` [N, 24, 4] 3D points (metres, confidence) in ``spin24`` order: checked and kept as :attr:`SpinDataset.S`,
  not batched (the batch's 3D joints come from the SMPL parameters);
* any other entry (``gender``, ``maskname``, ...) is ignored.

Frames (see :mod:`fitlib.datasets.crops` for the pixel, rotation and flip conventions): a batch's keypoints are in
the pixels of the "augmented full image": the original image turned by the sample's rotation about the principal
point and mirrored about the principal point's vertical line (:func:`~fitlib.datasets.crops.augment_matrix`). The
crop is the unrotated box (``centre``, ``size``) of that image, so ``crop_to_full`` / ``full_to_crop`` relate the
keypoints to the crop exactly; and the augmented pose (:func:`~fitlib.datasets.crops.augment_pose`) seen through
the image's intrinsics ``K`` projects where the augmented keypoints are, whatever the box's place in the image
(SPIN turns and mirrors about the box instead, which is exact only for a box at the principal point; the crops are
the same, only ``centre`` differs). Unaugmented samples are in the original image's pixels.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

import numpy as np
import torch

from fitlib.body.layouts import convert_keypoints, get_layout
from fitlib.body.model import BodyModel
from fitlib.camera import default_intrinsics
from fitlib.datasets.batch import Batch
from fitlib.datasets.crops import (AugmentConfig, Augmentation, augment_matrix, augment_pose, crop_image,
                                   crop_keypoints, crop_matrix, crop_to_full, draw_augmentation)
from fitlib.detection.keypoints import keypoint_boxes
from fitlib.io.images import load_image
from fitlib.io.safe_load import load_npz, read_regular_file

__all__ = ["SpinDataset", "safe_relative_path", "MAX_NPZ_BYTES"]

MAX_NPZ_BYTES = 1 << 32
"""Largest SPIN npz read (bytes, and bytes unpacked): 4 GiB (SPIN's largest, H36M's, is a few hundred MB)."""

_KEYPOINTS = {"part": ("spin24", 24), "openpose": ("body25", 25)}


def safe_relative_path(name: str) -> str:
    """``name`` as a relative POSIX path that stays inside its folder (``\\`` counts as a separator), or
    ValueError: empty, absolute (``/x``, ``C:\\x``, ``\\\\server``), a ``..`` component or a NUL byte."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"image path {name!r} is empty or not text")
    posix = name.replace("\\", "/")
    win = PureWindowsPath(name)
    if posix.startswith("/") or win.drive or win.is_absolute():
        raise ValueError(f"image path {name!r} is absolute: it must be relative to the image folder")
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise ValueError(f"image path {name!r} leaves the image folder ('..')")
    return PurePosixPath(*parts).as_posix()


class SpinDataset:
    """The samples of one SPIN npz, arrays in memory, images read when a batch needs them.

    Args:
        npz: the SPIN ``.npz`` (see the module doc for its entries).
        image_root: the folder ``imgname`` is relative to.
        body_model: the model the batch's 3D joints come from (and whose labels :func:`fitlib.training.image_samples.attach_pseudo_labels`
            accepts).
        layout: the network's keypoint layout; ``openpose`` and ``part`` are converted to it by point name
            (:func:`fitlib.body.layouts.convert_keypoints`).
        res: the crop side (px).
        augment: SPIN's augmentation (:class:`~fitlib.datasets.crops.AugmentConfig`), or None: none.
        focal: the intrinsics' focal length: ``"diagonal"`` (the image diagonal, CLIFF's default and
            :func:`fitlib.camera.default_intrinsics`) or a number of pixels; the principal point is the image
            centre ``(W / 2, H / 2)``.
    Attributes:
        imgname: N image paths (relative, ``/``-separated). center [N, 2] px, scale [N]; part [N, 24, 3],
        openpose [N, 25, 3] (zeros where absent); pose [N, 72], betas [N, 10] (zeros without SMPL); has_smpl
        [N] bool; pseudo [N] bool (SMPL from a pseudo-label, :func:`fitlib.training.image_samples.attach_pseudo_labels`); S [N, 24, 4] or None.
    Raises:
        FileNotFoundError: no npz or image folder. ValueError naming the file and the entry: a pickle in the
        npz, a missing required entry, a wrong shape or dtype, non-finite values where they are used, a
        non-positive scale, an image path leaving the image folder; or a bad argument.
    """

    def __init__(self, npz: str | os.PathLike, image_root: str | os.PathLike, body_model: BodyModel,
                 layout: str = "coco17", res: int = 224, augment: AugmentConfig | None = None,
                 focal: str | float = "diagonal") -> None:
        self.npz, self.image_root = Path(npz), Path(image_root)
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"image folder not found (or not a folder): {self.image_root}")
        if not isinstance(body_model, BodyModel):
            raise ValueError(f"body_model must be a fitlib BodyModel, got {type(body_model).__name__}")
        self.body_model = body_model
        self.layout = get_layout(layout).name
        if isinstance(res, bool) or not isinstance(res, (int, np.integer)) or res < 8:
            raise ValueError(f"res must be an integer of at least 8 px, got {res!r}")
        self.res = int(res)
        if augment is not None and not isinstance(augment, AugmentConfig):
            raise ValueError(f"augment must be an AugmentConfig or None, got {type(augment).__name__}")
        self.augment = augment
        if not (focal == "diagonal" or (isinstance(focal, (int, float)) and not isinstance(focal, bool)
                                        and np.isfinite(focal) and focal > 0)):
            raise ValueError(f"focal must be 'diagonal' or a positive number of pixels, got {focal!r}")
        self.focal = focal
        self._read(load_npz(read_regular_file(self.npz, max_bytes=MAX_NPZ_BYTES, what="SPIN npz"), str(self.npz),
                            max_bytes=MAX_NPZ_BYTES))

    # ------------------------------------------------------------------------------------------ reading
    def _error(self, key: str, problem: str) -> ValueError:
        return ValueError(f"{self.npz}: entry {key!r} {problem}")

    def _numeric(self, data: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
        a = data[key]
        if a.dtype.kind not in "biuf":
            raise self._error(key, f"must hold numbers, got dtype {a.dtype}")
        if a.shape != shape:
            want = "[" + ", ".join(["N"] + [str(s) for s in shape[1:]]) + "]"
            raise self._error(key, f"must have shape {want} = {list(shape)}, got {list(a.shape)}")
        return a.astype(np.float64)

    def _read(self, data: dict) -> None:
        for key in ("imgname", "center", "scale"):
            if key not in data:
                raise ValueError(f"{self.npz}: no entry {key!r} (a SPIN npz has imgname, center and scale)")
        names = data["imgname"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise self._error("imgname", f"must be [N] text, got {names.dtype} of shape {list(names.shape)}")
        n = len(names)
        self.imgname: list[str] = []
        for i, raw in enumerate(names.tolist()):
            try:
                text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                self.imgname.append(safe_relative_path(text))
            except (UnicodeDecodeError, ValueError) as exc:
                raise self._error("imgname", f"row {i}: {exc}") from None
        self.center = self._numeric(data, "center", (n, 2))
        self.scale = self._numeric(data, "scale", (n,))
        if not (np.isfinite(self.center).all() and np.isfinite(self.scale).all()):
            raise self._error("center" if not np.isfinite(self.center).all() else "scale", "has non-finite values")
        if (self.scale <= 0).any():
            raise self._error("scale", f"must be positive (row {int(np.argmax(self.scale <= 0))})")
        for key, (_, J) in _KEYPOINTS.items():
            kp = self._numeric(data, key, (n, J, 3)) if key in data else np.zeros((n, J, 3))
            conf = kp[..., 2]
            if not np.isfinite(conf).all() or (conf < 0).any():
                raise self._error(key, "has confidences that are negative or not finite")
            if not np.isfinite(kp[..., :2][conf > 0]).all():
                raise self._error(key, "has non-finite coordinates at points with a confidence > 0")
            kp[conf <= 0] = 0.0
            setattr(self, key, kp)
        if ("pose" in data) != ("shape" in data):
            raise ValueError(f"{self.npz}: entries 'pose' and 'shape' go together (got only "
                             f"{'pose' if 'pose' in data else 'shape'!r})")
        if "pose" in data:
            pose, betas = self._numeric(data, "pose", (n, 72)), self._numeric(data, "shape", (n, 10))
            has = self._numeric(data, "has_smpl", (n,)) if "has_smpl" in data else np.ones(n)
            if not np.isin(has, (0.0, 1.0)).all():
                raise self._error("has_smpl", "must be 0 or 1")
            has = has > 0.5
            for key, a in (("pose", pose), ("shape", betas)):
                if not np.isfinite(a[has]).all():
                    raise self._error(key, f"has non-finite values in a row with has_smpl (row "
                                           f"{int(np.nonzero(~np.isfinite(a).all(1) & has)[0][0])})")
            self.pose, self.betas = np.where(has[:, None], pose, 0.0), np.where(has[:, None], betas, 0.0)
        else:
            if "has_smpl" in data and (np.asarray(data["has_smpl"]) != 0).any():
                raise ValueError(f"{self.npz}: entry 'has_smpl' marks samples with SMPL but there is no 'pose'")
            has = np.zeros(n, bool)
            self.pose, self.betas = np.zeros((n, 72)), np.zeros((n, 10))
        self.has_smpl = has
        self._gt_smpl = has.copy()
        self.pseudo = np.zeros(n, bool)
        self.S = None
        if "S" in data:
            S = self._numeric(data, "S", (n, 24, 4))
            if not np.isfinite(S[..., 3]).all() or not np.isfinite(S[..., :3][S[..., 3] > 0]).all():
                raise self._error("S", "has non-finite values at points with a confidence > 0")
            self.S = S

    def __len__(self) -> int:
        return len(self.imgname)

    # ------------------------------------------------------------------------------------------ batches
    def intrinsics(self, height: int, width: int) -> np.ndarray:
        """[3, 3] the intrinsics of an image of this size (see ``focal``)."""
        K = default_intrinsics(height, width, dtype=torch.float64).numpy()
        if self.focal != "diagonal":
            K[0, 0] = K[1, 1] = float(self.focal)
        return K

    def _sample(self, i: int, image: np.ndarray, aug: Augmentation) -> dict:
        h, w = image.shape[:2]
        K = self.intrinsics(h, w)
        size = 200.0 * self.scale[i] * aug.scale
        A = augment_matrix(aug.rotation_deg, aug.flip, K[:2, 2])
        centre = A[:, :2] @ self.center[i] + A[:, 2]
        M = crop_matrix(self.center[i], size, self.res, aug.rotation_deg, aug.flip)
        crop = crop_image(image, M, self.res, None if np.all(aug.colour == 1) else aug.colour)
        out = {"images": crop, "centre": centre, "size": size, "K": K, "image_size": (h, w)}
        for key, target in (("openpose", "keypoints"), ("part", "gt_keypoints2d")):
            src, _ = _KEYPOINTS[key]
            kp = crop_keypoints(getattr(self, key)[i], M, aug.flip, src)
            present = kp[:, 2] > 0
            kp[present, :2] = crop_to_full(kp[present, :2], centre, size, self.res)
            out[target] = convert_keypoints(kp, src, self.layout)
        return out

    def _load(self, i: int) -> np.ndarray:
        path = self.image_root / self.imgname[i]
        try:
            return load_image(path)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.npz}: sample {i} (imgname {self.imgname[i]!r}): {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{self.npz}: sample {i} (imgname {self.imgname[i]!r}): {exc}") from None

    def batch(self, indices: Sequence[int], rng: np.random.Generator, threads: int = 2):
        """The samples ``indices`` as a :class:`fitlib.datasets.batch.Batch` (float32 / bool tensors, B samples):

        * ``images`` [B, 3, res, res] the augmented crops (RGB in [0, 1]); ``centre`` [B, 2] px, ``size`` [B] px
          the box each crop shows, in the augmented full image (see the module doc; ``size`` is
          ``200 * scale`` times the scale augmentation);
        * ``keypoints`` [B, J, 3] ``openpose`` and ``gt_keypoints2d`` [B, J, 3] ``part``, in the network's
          ``layout`` and the augmented full image's pixels (missing points (NaN, NaN, 0));
        * ``K`` [B, 3, 3] the image's intrinsics, ``image_size`` [B, 2] (height, width) of the decoded image;
        * ``pose`` [B, 24, 3] augmented (zeros without SMPL), ``betas`` [B, 10], ``transl`` [B, 3] zeros,
          ``joints`` [B, 24, 3] metres, the SMPL joints of ``pose`` and ``betas`` (transl 0) through the body
          model (zeros without SMPL);
        * ``has_smpl`` (ground truth or pseudo-label), ``has_3d`` (= has_smpl), ``has_detections`` / ``has_gt2d``
          (a point with confidence > 0 in ``keypoints`` / ``gt_keypoints2d``).

        The augmentation is drawn from ``rng`` in the order of ``indices`` before any image is read, so a batch is
        a function of (indices, the rng's state); images are read and cropped on ``threads`` threads (each image
        once per batch).

        Raises:
            IndexError / ValueError: bad indices. FileNotFoundError (missing image) / ValueError (corrupt image)
            naming the npz, the sample and the path.
        """

        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("a batch needs at least one sample")
        if any(i < 0 or i >= len(self) for i in idx):
            raise IndexError(f"sample indices must be in [0, {len(self)}), got {[i for i in idx if not 0 <= i < len(self)]}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        augs = [draw_augmentation(rng, self.augment) for _ in idx]
        groups: dict[str, list[int]] = {}
        for pos, i in enumerate(idx):
            groups.setdefault(self.imgname[i], []).append(pos)

        def work(positions: list[int]) -> list[tuple[int, dict]]:
            image = self._load(idx[positions[0]])
            return [(p, self._sample(idx[p], image, augs[p])) for p in positions]

        jobs = list(groups.values())
        if threads == 1 or len(jobs) == 1:
            done = [work(j) for j in jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(threads, len(jobs))) as pool:
                done = list(pool.map(work, jobs))
        samples: list[dict] = [None] * len(idx)  # type: ignore[list-item]
        for part in done:
            for p, s in part:
                samples[p] = s
        f32 = lambda key: torch.as_tensor(np.stack([np.asarray(s[key], np.float64) for s in samples]),  # noqa: E731
                                          dtype=torch.float32)
        ia = np.array(idx)
        has = self.has_smpl[ia]
        pose = np.zeros((len(idx), 72))
        rot = np.array([a.rotation_deg for a in augs])
        flip = np.array([a.flip for a in augs])
        if has.any():
            pose[has] = augment_pose(self.pose[ia[has]], rot[has], flip[has])
        pose_t = torch.as_tensor(pose, dtype=torch.float32).view(-1, 24, 3)
        betas = torch.as_tensor(self.betas[ia], dtype=torch.float32)
        joints = torch.zeros(len(idx), 24, 3)
        if has.any():
            model = self.body_model
            dev, dt = model.joint_template.device, model.joint_template.dtype
            rows = torch.as_tensor(np.nonzero(has)[0])
            with torch.no_grad():
                out = model(pose_t[rows].to(dev, dt), betas[rows].to(dev, dt))
            joints[rows] = out.joints.to("cpu", torch.float32)
        kp, gt = f32("keypoints"), f32("gt_keypoints2d")
        has_t = torch.as_tensor(has)
        return Batch(keypoints=kp, gt_keypoints2d=gt, K=f32("K"), image_size=f32("image_size"), pose=pose_t,
                     betas=betas, transl=torch.zeros(len(idx), 3), joints=joints, has_smpl=has_t, has_3d=has_t.clone(),
                     has_detections=(kp[..., 2] > 0).any(-1), has_gt2d=(gt[..., 2] > 0).any(-1),
                     images=torch.from_numpy(np.stack([s["images"] for s in samples])), centre=f32("centre"),
                     size=f32("size"))

    # ------------------------------------------------------------------------------------------ boxes
    def boxes(self) -> np.ndarray:
        """[N, 4] each sample's person box in the original image (x1, y1, x2, y2 px): around its keypoints
        (``openpose`` and ``part``, confidence > 0), or its square (``center``, ``scale``) box without any."""
        kp = np.concatenate([self.openpose, self.part], axis=1)
        out = keypoint_boxes(kp, missing=np.nan)
        half = 100.0 * self.scale[:, None]
        square = np.concatenate([self.center - half, self.center + half], axis=1)
        return np.where(np.isnan(out), square, out)
