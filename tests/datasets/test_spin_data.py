"""SPIN npz files read as augmented crop batches, on real photos with the bundled detector's people as 2D-only
samples and real fits (a label job's) as SMPL samples: the batch's fields, its frames (keypoints in the augmented
full image relate to the crop through the box; the augmented pose projects onto the augmented 2D), determinism,
bad files."""
import shutil

import numpy as np
import pytest
import torch

from fitlib.body.layouts import convert_keypoints, get_layout
from fitlib.camera import project
from fitlib.datasets.crops import (AugmentConfig, augment_matrix, augment_points3d, augment_pose, crop_image,
                                   crop_keypoints, crop_matrix, draw_augmentation, full_to_crop)
from fitlib.datasets.spin_data import SpinDataset
from fitlib.io import load_image, save_image

COCO = get_layout("coco17")




def test_batch_fields_and_frames(photo_set, detections_npz, open_model):
    ds = SpinDataset(detections_npz, photo_set.root, open_model, augment=AugmentConfig())
    n = len(ds)
    assert n == len(photo_set.imgname) and ds.imgname == photo_set.imgname
    b = ds.batch(range(n), np.random.default_rng(0))
    shapes = dict(keypoints=(n, 17, 3), gt_keypoints2d=(n, 17, 3), K=(n, 3, 3), image_size=(n, 2), pose=(n, 24, 3),
                  betas=(n, 10), transl=(n, 3), joints=(n, 24, 3), has_smpl=(n,), has_3d=(n,), has_detections=(n,),
                  has_gt2d=(n,), images=(n, 3, 224, 224), centre=(n, 2), size=(n,))
    for key, shape in shapes.items():
        value = getattr(b, key)
        assert tuple(value.shape) == shape, key
        assert value.dtype == (torch.bool if key.startswith("has_") else torch.float32), key
    assert b.images.min() >= 0 and b.images.max() <= 1
    assert b.has_detections.all() and b.has_gt2d.all() and not b.has_smpl.any() and not b.has_3d.any()
    assert not b.pose.any() and not b.joints.any() and not b.transl.any()
    # the same draws, made here: crops, boxes and keypoints
    rng = np.random.default_rng(0)
    augs = [draw_augmentation(rng, ds.augment) for _ in range(n)]
    assert any(a.flip for a in augs) and any(not a.flip for a in augs) and any(a.rotation_deg for a in augs)
    for i, a in enumerate(augs):
        image = load_image(photo_set.root / ds.imgname[i])
        h, w = image.shape[:2]
        assert b.image_size[i].tolist() == [h, w]
        f = np.hypot(w, h)
        np.testing.assert_allclose(b.K[i].numpy(), [[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], rtol=1e-6)
        size = 200 * ds.scale[i] * a.scale
        M = crop_matrix(ds.center[i], size, 224, a.rotation_deg, a.flip)
        np.testing.assert_allclose(b.images[i].numpy(), crop_image(image, M, 224, a.colour), atol=1e-6)
        centre = augment_matrix(a.rotation_deg, a.flip, [w / 2, h / 2]) @ np.append(ds.center[i], 1.0)
        np.testing.assert_allclose(b.centre[i].numpy(), centre, rtol=1e-6)
        assert b.size[i].item() == pytest.approx(size, rel=1e-6)
        # keypoints in the augmented full image map into the crop through the box (centre, size) alone
        for key, src, value in (("openpose", "body25", b.keypoints[i]), ("part", "spin24", b.gt_keypoints2d[i])):
            want = convert_keypoints(crop_keypoints(getattr(ds, key)[i], M, a.flip, src), src, "coco17")
            got = value.double().numpy()
            present = want[:, 2] > 0
            assert (present == (got[:, 2] > 0)).all() and present.sum() >= 10
            np.testing.assert_allclose(full_to_crop(got[present, :2], b.centre[i].double(), b.size[i].double(), 224),
                                       want[present, :2], atol=0.01)
            assert np.isnan(got[~present, :2]).all()
    # deterministic given the rng, whatever the threads
    again = ds.batch(range(n), np.random.default_rng(0), threads=1)
    for key in shapes:
        assert torch.equal(getattr(b, key), getattr(again, key)) or torch.allclose(
            getattr(b, key), getattr(again, key), equal_nan=True), key
    other = ds.batch(range(n), np.random.default_rng(1))
    assert not torch.equal(other.images, b.images)


def test_unaugmented_batch_is_the_detections(photo_set, detections_npz, open_model):
    ds = SpinDataset(detections_npz, photo_set.root, open_model)
    b = ds.batch([4, 0, 2], np.random.default_rng(0))
    for row, i in enumerate([4, 0, 2]):
        np.testing.assert_allclose(b.centre[row].numpy(), ds.center[i], rtol=1e-6)
        assert b.size[row].item() == pytest.approx(200 * ds.scale[i], rel=1e-6)
        det = photo_set.keypoints[i]
        for value in (b.keypoints[row], b.gt_keypoints2d[row]):
            kp = value.double().numpy()
            np.testing.assert_array_equal(kp[:, 2] > 0, det[:, 2] > 0)
            np.testing.assert_allclose(kp[det[:, 2] > 0], det[det[:, 2] > 0], rtol=1e-6, atol=1e-3)


def test_a_dot_at_the_left_wrist_is_the_mirrored_persons_right_wrist(photo_set, tmp_path, open_model, write_photo_npz):
    """End to end: a dot drawn on the photo at a detected wrist is found in the batch's crop where the box maps
    the batch's keypoint of the other wrist, for a rotated, scaled, mirrored sample."""
    i = photo_set.imgname.index("messi5.jpg")
    kp = photo_set.keypoints[i]
    j = COCO.index("left_wrist")
    assert kp[j, 2] > 0.5
    image = load_image(photo_set.root / "messi5.jpg") // 2
    size = 1.2 * (photo_set.boxes[i, 2:] - photo_set.boxes[i, :2]).max()
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
    sigma = 1.5 * size / 224
    dot = 120 * np.exp(-((xx - kp[j, 0]) ** 2 + (yy - kp[j, 1]) ** 2) / (2 * sigma ** 2))
    for folder, img in (("plain", image), ("dot", np.clip(np.rint(image + dot[..., None]), 0, 255).astype(np.uint8))):
        (tmp_path / folder).mkdir()
        save_image(img, tmp_path / folder / "messi.png")
    npz = write_photo_npz(tmp_path / "one.npz", photo_set, imgname=["messi.png"], pose=np.zeros((1, 72)),
                 betas=np.zeros((1, 10)), keypoints=kp[None], boxes=photo_set.boxes[i:i + 1], has_smpl=[False])
    cfg = AugmentConfig(rotation_prob=1.0, flip=1.0, colour_noise=0.0)
    plain, dotted = (SpinDataset(npz, tmp_path / f, open_model, augment=cfg).batch([0], np.random.default_rng(5))
                     for f in ("plain", "dot"))
    assert plain.centre.tolist() == dotted.centre.tolist()
    wgt = np.clip((dotted.images[0] - plain.images[0]).sum(0).numpy(), 0, None)
    yy, xx = np.mgrid[0:224, 0:224]
    found = np.array([(wgt * xx).sum(), (wgt * yy).sum()]) / wgt.sum()
    right = COCO.index("right_wrist")
    where = full_to_crop(dotted.keypoints[0, [right], :2].double().numpy(), dotted.centre[0].double(),
                         dotted.size[0].double(), 224)[0]
    np.testing.assert_allclose(found, where, atol=0.1)




@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_smpl_samples_pose_joints_and_reprojection(photo_set, label_store, tmp_path, open_model, flip, fits_as_spin_npz):
    """Augmented SMPL samples: pose = augment_pose of the fit, joints = the body model's, and the augmented
    body (pelvis moved with augment_points3d) projects through the batch's K onto the batch's augmented 2D."""
    _, labels = label_store
    npz = fits_as_spin_npz(tmp_path / "fits.npz", labels)
    cfg = AugmentConfig(rotation_prob=1.0, flip=flip, colour_noise=0.0)
    ds = SpinDataset(npz, photo_set.root, open_model, augment=cfg)
    n = len(ds)
    b = ds.batch(range(n), np.random.default_rng(2))
    rng = np.random.default_rng(2)
    augs = [draw_augmentation(rng, cfg) for _ in range(n)]
    assert all(a.flip == bool(flip) and a.rotation_deg != 0 for a in augs)
    assert b.has_smpl.all() and b.has_3d.all() and b.has_gt2d.all()
    rot, flip = np.array([a.rotation_deg for a in augs]), np.array([a.flip for a in augs])
    pose = augment_pose(np.stack([lab.pose for lab in labels]), rot, flip)
    np.testing.assert_allclose(b.pose.view(n, 72).numpy(), pose, atol=1e-6)
    with torch.no_grad():
        joints = open_model(b.pose, b.betas).joints
    np.testing.assert_allclose(b.joints.numpy(), joints.numpy(), atol=1e-6)
    model = open_model
    for i, (lab, a) in enumerate(zip(labels, augs)):
        np.testing.assert_allclose(b.K[i].numpy(), lab.K, rtol=1e-6)  # the label job's default intrinsics
        J0 = model.rest_joints(torch.as_tensor(lab.betas, dtype=torch.float32)[None])[0, 0].double().numpy()
        transl = augment_points3d(J0 + lab.transl, a.rotation_deg, a.flip) - J0
        with torch.no_grad():
            out = model(b.pose[i:i + 1], b.betas[i:i + 1], torch.as_tensor(transl, dtype=torch.float32)[None],
                        layout="coco17")
        xy = project(out.keypoints, b.K[i:i + 1])[0].numpy()
        err = np.linalg.norm(xy - b.gt_keypoints2d[i, :, :2].numpy(), axis=-1)
        assert err.max() < 0.5, (i, a, err)  # px (measured: 0.2)


def _bad_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_bad_files_and_images(photo_set, detections_npz, tmp_path, open_model):
    good = dict(np.load(detections_npz))
    with pytest.raises(ValueError, match=r"entry 'imgname' row 0: .* leaves the image folder"):
        SpinDataset(_bad_npz(tmp_path / "a.npz", **{**good, "imgname": np.array(["../photos/messi5.jpg"] +
                                                                                 good["imgname"][1:].tolist())}),
                    photo_set.root, open_model)
    with pytest.raises(ValueError, match="absolute"):
        SpinDataset(_bad_npz(tmp_path / "b.npz", **{**good, "imgname": np.array([str(photo_set.root / "bus.jpg")]
                                                                                + good["imgname"][1:].tolist())}),
                    photo_set.root, open_model)
    with pytest.raises(ValueError, match=r"b2.npz: entry 'part' must have shape \[N, 24, 3\]"):
        SpinDataset(_bad_npz(tmp_path / "b2.npz", **{**good, "part": good["part"][:, :17]}), photo_set.root, open_model)
    with pytest.raises(ValueError, match=r"entry 'center' must have shape"):
        SpinDataset(_bad_npz(tmp_path / "b3.npz", **{**good, "center": good["center"][:-1]}), photo_set.root, open_model)
    with pytest.raises(ValueError, match=r"c.npz: entry 'gender' .*Python objects"):
        SpinDataset(_bad_npz(tmp_path / "c.npz", **good, gender=np.array([{"m": 1}] * len(good["scale"]), dtype=object)),
                    photo_set.root, open_model)
    with pytest.raises(ValueError, match="no entry 'center'"):
        SpinDataset(_bad_npz(tmp_path / "d.npz", **{k: v for k, v in good.items() if k != "center"}), photo_set.root,
                    open_model)
    with pytest.raises(ValueError, match="'pose' and 'shape' go together"):
        SpinDataset(_bad_npz(tmp_path / "e.npz", **{k: v for k, v in good.items() if k != "shape"}), photo_set.root,
                    open_model)
    with pytest.raises(ValueError, match="'scale' must be positive"):
        SpinDataset(_bad_npz(tmp_path / "f.npz", **{**good, "scale": good["scale"] * 0}), photo_set.root, open_model)
    pose = good["pose"].copy()
    pose[1, 5] = np.nan
    with pytest.raises(ValueError, match="'pose' has non-finite values in a row with has_smpl"):
        SpinDataset(_bad_npz(tmp_path / "g.npz", **{**good, "pose": pose, "has_smpl": np.ones(len(pose))}),
                    photo_set.root, open_model)
    with pytest.raises(FileNotFoundError):
        SpinDataset(tmp_path / "none.npz", photo_set.root, open_model)
    with pytest.raises(FileNotFoundError, match="image folder"):
        SpinDataset(detections_npz, tmp_path / "nowhere", open_model)
    # missing and corrupt images: found when a batch reads them, named with the sample
    root = tmp_path / "imgs"
    root.mkdir()
    shutil.copy(photo_set.root / "messi5.jpg", root / "messi5.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all" * 10)
    names = np.array(["messi5.jpg", "gone.jpg", "broken.jpg"])
    small = {k: v[:3] for k, v in good.items()}
    ds = SpinDataset(_bad_npz(tmp_path / "h.npz", **{**small, "imgname": names}), root, open_model)
    assert ds.batch([0], np.random.default_rng(0)).images.shape == (1, 3, 224, 224)
    with pytest.raises(FileNotFoundError, match=r"h.npz: sample 1 \(imgname 'gone.jpg'\).*not found"):
        ds.batch([0, 1], np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"sample 2 \(imgname 'broken.jpg'\).*cannot decode"):
        ds.batch([2], np.random.default_rng(0))
    with pytest.raises(IndexError):
        ds.batch([3], np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one"):
        ds.batch([], np.random.default_rng(0))
