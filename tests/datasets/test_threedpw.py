"""Reading 3DPW's sequence files: keypoint conversion, the camera-frame ground truth, bad files."""
import pickle

import numpy as np
import pytest
import torch

from fitlib.datasets import threedpw


def test_openpose18_to_coco17_by_name():
    kp = np.ones((18, 3))
    kp[:, 0] = np.arange(18)
    coco = threedpw.openpose18_to_coco17(kp)
    # COCO: nose, l_eye, r_eye, l_ear, r_ear, l_sho, r_sho, ... ; OpenPose-18 indices of those
    assert coco[:, 0].tolist() == [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
    with pytest.raises(ValueError, match="18, 3"):
        threedpw.openpose18_to_coco17(np.zeros((17, 3)))
    kp[3, 2] = 0.0  # an undetected OpenPose point (right elbow) is missing in COCO too
    coco = threedpw.openpose18_to_coco17(kp)
    assert np.isnan(coco[8, :2]).all() and coco[8, 2] == 0.0


def test_ground_truth_in_the_camera_frame(tiny_3dpw, open_model):
    """The camera-frame parameters pose the same body that the world-frame ones put in front of the camera."""
    root, paths = tiny_3dpw
    seq = threedpw.build_sequence(threedpw.load_sequence_file(paths[0]), "open")
    gt = seq.gt_params
    with torch.no_grad():
        joints = open_model(gt.pose, gt.betas, gt.transl).joints
    assert torch.allclose(joints, seq.gt_joints, atol=1e-4)
    assert (seq.gt_joints[..., 2] > 1.0).all()


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"sequence": "x"}))
    with pytest.raises(ValueError, match="not a 3DPW sequence file"):
        threedpw.load_sequence_file(bad)
