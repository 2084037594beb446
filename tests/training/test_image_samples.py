"""The image sets of an image regressor's training: seeded mixed batches, shards of data-parallel workers, and
pseudo-labels from a real label store attached to the same people (real photos, the bundled detector's people)."""
import numpy as np
import pytest
import torch

from fitlib.datasets.spin_data import SpinDataset
from fitlib.labels import LabelStore
from fitlib.training.config import ImageSet
from fitlib.training.image_samples import ImageSamples, attach_pseudo_labels


def test_pseudo_labels_attach_to_the_same_person(photo_set, detections_npz, label_store, tmp_path, open_model,
                                                 fits_as_spin_npz):
    store, labels = label_store
    ds = SpinDataset(detections_npz, photo_set.root, open_model)
    attached = attach_pseudo_labels(ds, store)
    labelled = {i for i, name in enumerate(ds.imgname) if name in ("messi5.jpg", "bus.jpg")}
    assert attached == len(labels) == int(ds.pseudo.sum()) and set(np.nonzero(ds.pseudo)[0]) <= labelled
    assert (ds.has_smpl == ds.pseudo).all()
    used = []
    for i in np.nonzero(ds.pseudo)[0]:
        match = [k for k, lab in enumerate(labels) if lab.item == ds.imgname[i] and np.array_equal(lab.pose, ds.pose[i])]
        assert len(match) == 1
        used.append(match[0])
        # the label's keypoints are this person's detections (same detector, same image)
        lab = labels[match[0]]
        conf = photo_set.keypoints[i, :, 2] > 0.5
        assert np.abs(lab.keypoints[conf, :2] - photo_set.keypoints[i, conf, :2]).max() < 5
    assert sorted(used) == list(range(len(labels)))
    b = ds.batch(sorted(labelled), np.random.default_rng(0))
    assert b.has_smpl.all() and b.joints.abs().sum((1, 2)).gt(0).all()
    assert attach_pseudo_labels(ds, store) == attached  # again: replaced, not added
    assert attach_pseudo_labels(ds, store, label_dataset="another") == 0 and not ds.has_smpl.any()
    with pytest.raises(ValueError, match="min_iou"):
        attach_pseudo_labels(ds, store, min_iou=1.5)
    # ground truth wins: a sample with SMPL keeps it and takes its own label away from nobody else
    gt = fits_as_spin_npz(tmp_path / "fits.npz", [lab for lab in labels if lab.item == "messi5.jpg"])
    ds_gt = SpinDataset(gt, photo_set.root, open_model)
    assert attach_pseudo_labels(ds_gt, store) == 0 and ds_gt.has_smpl.all() and not ds_gt.pseudo.any()
    # a store of another body model is refused
    other = tmp_path / "other.sqlite"
    LabelStore(other, {"model": "SMPL_NEUTRAL", "file": "SMPL_NEUTRAL.pkl", "sha256": "0" * 64}).close()
    with pytest.raises(ValueError, match="body model"):
        attach_pseudo_labels(ds, other)


@pytest.fixture(scope="module")
def sets(photo_set, detections_npz):
    return [ImageSet(npz=str(detections_npz), image_root=str(photo_set.root), weight=1.0)]


def test_batches_are_seeded_and_shards_split_the_same_draw(sets, open_model):
    aug = {"colour_noise": 0.0}
    src = ImageSamples(sets, open_model, "coco17", 64, aug, seed=3, split="train", threads=2)
    a, b, c = src.batch(5, 6), src.batch(5, 6), src.batch(6, 6)
    assert a.images.shape == (6, 3, 64, 64) and a.keypoints.shape == (6, 17, 3)
    assert torch.equal(a.images, b.images) and torch.equal(a.centre, b.centre)
    assert not torch.equal(a.centre, c.centre)
    # two workers' shards are the rows 0::2 and 1::2 of the same draw (unaugmented, so the crops are equal too)
    plain = ImageSamples(sets, open_model, "coco17", 64, {"enabled": False}, seed=3, split="train")
    full = plain.batch(5, 6)
    for rank in (0, 1):
        part = plain.batch(5, 6, shard=(rank, 2))
        assert torch.equal(part.centre, full.centre[rank::2]) and torch.equal(part.images, full.images[rank::2])
    val = ImageSamples(sets, open_model, "coco17", 64, None, seed=0, split="val")
    n = len(val)
    v = val.batch(0, n)
    boxes = SpinDataset(sets[0].npz, sets[0].image_root, open_model).center
    assert np.allclose(v.centre.numpy(), boxes, atol=1e-3)  # in order, unaugmented: the files' boxes
    assert torch.equal(val.batch(1, n).centre, v.centre)  # wraps around
