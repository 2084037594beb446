"""Keypoints records and the boxes around keypoints (shared by mmpose input, the exports and the tracker)."""
import numpy as np

from fitlib.detection.keypoints import keypoint_boxes


def test_keypoint_boxes():
    kp = np.array([[[10.0, 20.0, 0.9], [50.0, 100.0, 0.25], [np.nan, np.nan, 0.0], [300.0, 5.0, 0.0]],
                   [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [3.0, 3.0, 0.0]]])
    np.testing.assert_array_equal(keypoint_boxes(kp), [[10, 20, 50, 100], [0, 0, 0, 0]])  # confidence > 0
    strict = keypoint_boxes(kp, min_confidence=0.3, margin=0.5, missing=np.nan)
    np.testing.assert_array_equal(strict[0], [10, 20, 10, 20])  # one point: no size, no margin
    assert np.isnan(strict[1]).all()
    wide = keypoint_boxes(kp, min_confidence=0.25, margin=0.1)  # >= min_confidence
    np.testing.assert_allclose(wide[0], [10 - 8, 20 - 8, 50 + 8, 100 + 8])  # 10 % of the longer side (80 px)
    assert keypoint_boxes(np.zeros((0, 17, 3))).shape == (0, 4)
