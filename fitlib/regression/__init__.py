"""The learned init: HMR-style regressors (iterative error feedback, CLIFF camera, 6D rotations) reading 2D
keypoints (the shipped one) or the person crop (HMR / SPIN's ResNet-50).

* :mod:`~fitlib.regression.model`: :class:`Regressor` (pluggable encoder + IEF head) and its config;
* :mod:`~fitlib.regression.encoders`: encoders producing the head's feature (2D keypoints, or the image crop);
* :mod:`~fitlib.regression.resnet`: ResNet-50 with torchvision's parameter names (torchvision's where installed);
* :mod:`~fitlib.regression.heads`: the IEF head;
* :mod:`~fitlib.regression.camera`: person boxes, CLIFF's ``bbox_info``, crop camera -> full-image translation,
  SPIN's camera;
* :mod:`~fitlib.regression.checkpoint`: weight files (header + state dict) and the shipped weights;
* :mod:`~fitlib.regression.spin`: SPIN's ``model_checkpoint.pt`` and ``smpl_mean_params.npz`` read into a regressor;
* :mod:`~fitlib.regression.predict`: running a trained network on keypoints and, for an image network, the
  image's crops (:func:`fitlib.regress` uses it).

Training lives in :mod:`fitlib.training` (``fitlib train-regressor``).
"""
from fitlib.regression.checkpoint import load_regressor, save_regressor, shipped_path
from fitlib.regression.model import Regressor, RegressorConfig, RegressorOutput
from fitlib.regression.predict import KeypointRegressor, Prediction, shared_regressor

__all__ = ["Regressor", "RegressorConfig", "RegressorOutput", "load_regressor", "save_regressor", "shipped_path",
           "KeypointRegressor", "Prediction", "shared_regressor"]
