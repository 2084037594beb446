"""fitlib.regress: the shipped network alone on a real photo, batched, and its bad-input errors."""
import numpy as np
import pytest
import torch

import fitlib
from fitlib.regression.predict import check_layout


@pytest.fixture(scope="module")
def messi(data_dir):
    return fitlib.detect(data_dir / "messi5.jpg")


def test_regress_real_photo(data_dir, messi):
    res = fitlib.regress(data_dir / "messi5.jpg", messi)
    assert len(res) == 1 and res.fitted.all()
    h, w = res.image_size
    assert np.isfinite(res.reprojection_error).all() and res.reprojection_error[0] < 0.06 * max(h, w)
    assert res.transl[0, 2] > 0.5 and np.isfinite(res.pose).all()  # in front of the camera
    head, ankles = res.joints[0, 15, 1], res.joints[0, [7, 8], 1].mean()
    assert head < ankles  # upright (camera y points down)
    assert res.hypotheses.betas.shape[:1] == (1,) and res.hypotheses.betas.ndim == 3
    # a refine can start from it
    assert fitlib.SMPLParams.from_numpy({"pose": res.pose, "betas": res.betas, "transl": res.transl}).transl.shape == (1, 3)


def test_regress_batch_matches_single_images(data_dir, messi):
    img = fitlib.load_image(data_dir / "messi5.jpg")
    kp = messi.keypoints
    a, b = fitlib.regress_batch([img, img], [kp, kp[:, :, :] * np.array([1, 1, 1.0])])
    one = fitlib.regress(img, kp)
    np.testing.assert_allclose(a.pose, one.pose, atol=1e-5)
    np.testing.assert_allclose(b.transl, one.transl, atol=1e-5)
    # another layout with the same points (converted by name) gives the same answer
    body25 = fitlib.convert_keypoints(kp, "coco17", "body25")
    c = fitlib.regress(img, body25, layout="body25")
    np.testing.assert_allclose(c.pose, one.pose, atol=1e-4)
    assert c.layout == "body25" and c.projected.shape == (1, 25, 2)


def test_regress_bad_input(data_dir, messi):
    img = np.zeros((480, 640, 3), np.uint8)
    empty = fitlib.regress(img, np.zeros((0, 17, 3)))
    assert len(empty) == 0
    few = np.full((2, 17, 3), np.nan)
    few[1, :3] = [[100, 100, 0.9], [110, 100, 0.9], [90, 100, 0.9]]  # nobody visible enough
    res = fitlib.regress(img, few)
    assert not res.fitted.any() and np.isnan(res.reprojection_error).all() and np.isnan(res.pose).all()
    assert torch.isnan(res.hypotheses.betas).all()
    with pytest.raises(ValueError, match="layout 'smpl24'"):
        fitlib.regress(img, np.zeros((1, 24, 3)), layout="smpl24")
    with pytest.raises(ValueError, match="shape"):
        fitlib.regress(img, np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="K must be"):
        fitlib.regress(img, messi.keypoints, K=np.full((3, 3), np.nan))
    check_layout("mediapipe33", "coco17")  # has every COCO body point
    with pytest.raises(ValueError, match="damaged|not a"):
        bad = data_dir.parent / "regression" / "_bad_ckpt.pt"
        try:
            bad.write_bytes(b"not a checkpoint")
            fitlib.regress(img, messi.keypoints, checkpoint=bad)
        finally:
            bad.unlink(missing_ok=True)


def test_the_network_reads_a_persons_feet_all_or_none(data_dir):
    """BlazePose's foot points reach the network only when all six are there: its MediaPipe-33 output (heels, no
    toes) and its coco17_feet output (no small toes) regress as their COCO-17 part; six given feet are read."""
    img = fitlib.load_image(data_dir / "messi5.jpg")
    mp = fitlib.detect(img, layout="mediapipe33")
    coco = fitlib.convert_keypoints(mp.keypoints, "mediapipe33", "coco17")
    one = fitlib.regress(img, coco)
    feet = fitlib.detect(img, layout="coco17_feet").keypoints
    assert (feet[:, [18, 21], 2] == 0).all() and (feet[:, [17, 19, 20, 22], 2] > 0).all()  # no small toes
    for kp, lay in ((mp.keypoints, "mediapipe33"), (feet, "coco17_feet")):
        np.testing.assert_allclose(fitlib.regress(img, kp, layout=lay).pose, one.pose, atol=1e-5)
    feet = feet.copy()
    feet[:, [18, 21]] = feet[:, [17, 20]] + np.array([-8.0, 0.0, 0.0])  # small toes beside the big ones
    assert np.isfinite(feet).all() and (feet[..., 2] > 0).all()
    assert np.abs(fitlib.regress(img, feet, layout="coco17_feet").pose - one.pose).max() > 1e-3
