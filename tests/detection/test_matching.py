"""Matching detected people to known ones by 2D keypoints."""
import numpy as np

from fitlib.detection.matching import associate


def test_associate_matches_by_2d_distance():
    ref = np.zeros((2, 17, 3))
    ref[0, :, :2] = np.stack([np.linspace(100, 200, 17), np.linspace(100, 400, 17)], -1)
    ref[1, :, :2] = ref[0, :, :2] + [500, 0]
    ref[..., 2] = 1.0
    dets = np.stack([ref[1] + [3, -2, 0], ref[0] + [2, 2, 0], ref[0] + [900, 900, 0]])
    assert associate(dets, ref).tolist() == [1, 0]
    assert associate(dets[2:], ref).tolist() == [-1, -1]  # too far from both
    assert associate(np.zeros((0, 17, 3)), ref).tolist() == [-1, -1]
