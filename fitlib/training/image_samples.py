"""Training samples of an image regressor: SPIN-format sets mixed with fixed shares, cropped and augmented.

:class:`ImageSamples` has the interface of :class:`~fitlib.training.data.SampleGenerator`: batch ``step``
is a pure function of ``(seed, step)``, so a resumed run sees the batches an uninterrupted one would.
Training batches draw each sample's set by the sets' weights (SPIN mixes its datasets so) and a sample of it
uniformly, with SPIN's augmentation (:mod:`fitlib.datasets.crops`); validation batches go through the sets'
samples in order, unaugmented. With ``shard=(rank, world)`` a worker of a data-parallel run gets its share of
the batch (rows ``rank::world`` of the same draw): the samples seen do not depend on the worker count (their
random augmentation does).

:func:`attach_pseudo_labels` gives a set's samples without SMPL ground truth the store's fits of their person.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from fitlib.body.model import BodyModel
from fitlib.datasets.batch import Batch
from fitlib.datasets.spin_data import SpinDataset
from fitlib.detection.keypoints import box_iou, keypoint_boxes
from fitlib.labels.store import LabelStore


class ImageSamples:
    """Args:
        sets: :class:`~fitlib.training.config.ImageSet` entries (``npz``, ``image_root``, ``weight``).
        model: the body model GT joints are posed with.
        layout: the network's keypoint layout; res: crop side (px).
        augment: :class:`~fitlib.datasets.crops.AugmentConfig` settings (a dict), or None: no augmentation.
        seed: the stream's seed; split: ``"train"`` (random draws) or ``"val"`` (in order).
        threads: image decoding / cropping threads.
        pseudo_labels: a label store whose valid fits supervise samples without ``has_smpl``.
    """

    def __init__(self, sets: Sequence, model: BodyModel, layout: str, res: int, augment: dict | None, seed: int,
                 split: str, threads: int = 2, pseudo_labels: str | None = None) -> None:
        from fitlib.datasets.crops import AugmentConfig

        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        aug = AugmentConfig(**augment) if augment is not None else AugmentConfig(enabled=False)
        self.datasets = [SpinDataset(s.npz, s.image_root, model, layout=layout, res=res, augment=aug) for s in sets]
        self.attached = [attach_pseudo_labels(d, pseudo_labels) if pseudo_labels else 0 for d in self.datasets]
        w = np.array([s.weight for s in sets], np.float64)
        self.weights = w / w.sum()
        self.sizes = np.array([len(d) for d in self.datasets])
        if (self.sizes == 0).any():
            empty = [s.npz for s, n in zip(sets, self.sizes) if n == 0]
            raise ValueError(f"image sets without samples: {empty}")
        self.seed, self.split, self.threads = seed, split, threads

    def __len__(self) -> int:
        return int(self.sizes.sum())

    def batch(self, step: int, batch_size: int, shard: tuple[int, int] = (0, 1)) -> Batch:
        """Batch number ``step`` of ``batch_size`` samples (this worker's rows ``rank::world`` of it)."""
        rank, world = shard
        stream = 0 if self.split == "train" else 1
        rng = np.random.default_rng([self.seed, stream, step])
        if self.split == "train":
            which = rng.choice(len(self.datasets), size=batch_size, p=self.weights)
            index = (rng.random(batch_size) * self.sizes[which]).astype(np.int64)
        else:  # in order through the concatenated sets (wrapping)
            flat = (step * batch_size + np.arange(batch_size)) % len(self)
            starts = np.cumsum(self.sizes) - self.sizes
            which = np.searchsorted(starts, flat, side="right") - 1
            index = flat - starts[which]
        mine = np.arange(batch_size)[rank::world]
        parts, order = [], []
        for d in np.unique(which[mine]):
            rows = mine[which[mine] == d]
            sub = np.random.default_rng([self.seed, stream, step, int(d), rank])
            parts.append(self.datasets[d].batch(index[rows], sub, threads=self.threads))
            order.append(rows)
        batch = Batch.cat(parts)
        back = np.argsort(np.concatenate(order), kind="stable")  # the draw's order
        return batch.rows(back)


def attach_pseudo_labels(dataset: SpinDataset, store_path: str | os.PathLike, min_iou: float = 0.5,
                         label_dataset: str | None = None) -> int:
    """Use a label store's valid fits as SMPL supervision of the samples without SMPL ground truth.

    A label of the store (:class:`fitlib.labels.store.LabelStore`) belongs to a sample when its item is the
    sample's ``imgname`` (the path relative to ``image_root``, as a label job keys the images of a folder source:
    run the job on ``image_root`` itself) in the store dataset ``label_dataset`` (default: the name of
    ``image_root``, the dataset name a folder source gets), and the box around its keypoints overlaps the
    sample's box (:meth:`SpinDataset.boxes`) with an IoU >= ``min_iou``. Labels and samples of an image are paired
    one to one, best IoU first, samples with ground truth included (they take their own person's label away
    from their neighbours but keep their ground truth). Only valid labels with SMPL parameters are used; the
    pose is the label's (camera frame of the same image, so valid whatever the intrinsics it was fitted with).

    Attached samples get ``has_smpl`` True, the label's pose and betas, and ``pseudo`` True. Pseudo-labels
    attached before are removed first, so calling it again (e.g. after a new labelling round) replaces them.

    Returns:
        How many samples got a pseudo-label.
    Raises:
        FileNotFoundError: no such store. ValueError: not a label store, labels of another body model than the
        dataset's, or ``min_iou`` outside (0, 1].
    """
    if not (isinstance(min_iou, (int, float)) and 0 < min_iou <= 1):
        raise ValueError(f"min_iou must be in (0, 1], got {min_iou!r}")
    ds = dataset
    drop = ds.pseudo.copy()
    ds.has_smpl[drop], ds.pose[drop], ds.betas[drop], ds.pseudo[:] = False, 0.0, 0.0, False
    name = label_dataset if label_dataset is not None else ds.image_root.resolve().name
    by_image: dict[str, list[int]] = {}
    for i, n in enumerate(ds.imgname):
        by_image.setdefault(n, []).append(i)
    with LabelStore(store_path) as store:
        model = store.body_model.get("model")
        if model != ds.body_model.name:
            raise ValueError(f"{store_path}: the labels are fits of body model {model!r}, the dataset uses "
                             f"{ds.body_model.name!r}")
        labels: dict[str, list] = {}
        for lab in store.labels(valid_only=True, dataset=name):
            if lab.has_smpl and lab.item in by_image and np.isfinite(lab.pose).all() and np.isfinite(lab.betas).all():
                labels.setdefault(lab.item, []).append(lab)
    boxes = ds.boxes()
    attached = 0
    for item, labs in labels.items():
        rows = by_image[item]
        lab_boxes = np.concatenate([keypoint_boxes(lab.keypoints[None], missing=np.nan) for lab in labs])
        iou = box_iou(boxes[rows], lab_boxes)  # NaN boxes (no keypoints) give 0
        while True:
            r, c = np.unravel_index(np.argmax(iou), iou.shape)
            if iou[r, c] < min_iou:
                break
            i = rows[r]
            if not ds._gt_smpl[i]:
                ds.pose[i], ds.betas[i] = labs[c].pose, labs[c].betas
                ds.has_smpl[i] = ds.pseudo[i] = True
                attached += 1
            iou[r, :], iou[:, c] = -1.0, -1.0
    return attached
