"""The learned init: an HMR-style keypoint regressor (iterative error feedback, CLIFF camera, 6D rotations).

* :mod:`~fitlib.regression.model`: :class:`Regressor` (pluggable encoder + IEF head) and its config;
* :mod:`~fitlib.regression.encoders`: encoders producing the head's feature (2D keypoints today);
* :mod:`~fitlib.regression.heads`: the IEF head;
* :mod:`~fitlib.regression.camera`: person boxes, CLIFF's ``bbox_info``, crop camera -> full-image translation;
* :mod:`~fitlib.regression.checkpoint`: weight files (header + state dict) and the shipped weights;
* :mod:`~fitlib.regression.predict`: running a trained network on keypoints (:func:`fitlib.regress` uses it).

Training lives in :mod:`fitlib.training` (``fitlib train-regressor``).
"""
from fitlib.regression.checkpoint import load_regressor, save_regressor, shipped_path
from fitlib.regression.model import Regressor, RegressorConfig, RegressorOutput
from fitlib.regression.predict import KeypointRegressor, Prediction, shared_regressor

__all__ = ["Regressor", "RegressorConfig", "RegressorOutput", "load_regressor", "save_regressor", "shipped_path",
           "KeypointRegressor", "Prediction", "shared_regressor"]
