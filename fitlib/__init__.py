"""fitlib: recover SMPL bodies (pose, shape, camera) from single images.

Main entry points: :func:`fit`, :func:`detect`, :func:`load_body_model`, :class:`FitResult`,
:class:`Fitter` (a reusable fitter), :class:`SMPLParams` (the parameter record).
"""
from fitlib.api import fit, fit_batch, regress, regress_batch
from fitlib.body import LAYOUTS, BodyModel, BodyOutput, KeypointLayout, convert_keypoints, get_layout, load_body_model
from fitlib.detection import Keypoints, detect
from fitlib.fitting import FitConfig, Fitter, FitOutput, load_config
from fitlib.io import load_image
from fitlib.params import SMPLParams
from fitlib.result import FitResult

__all__ = ["fit", "fit_batch", "regress", "regress_batch", "detect", "load_body_model", "load_image", "load_config", "BodyModel", "BodyOutput",
           "FitConfig", "Fitter", "FitOutput", "FitResult", "Keypoints", "KeypointLayout", "LAYOUTS", "SMPLParams",
           "convert_keypoints", "get_layout"]
