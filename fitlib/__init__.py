"""fitlib: recover SMPL bodies (pose, shape, camera) from single images.

Main entry points: :func:`fit`, :func:`detect`, :func:`load_body_model`, :class:`FitResult`.
"""
from fitlib.api import fit, fit_batch
from fitlib.body_model import BodyModel, BodyOutput, load_body_model
from fitlib.config import FitConfig, load_config
from fitlib.detect import Keypoints, detect
from fitlib.image_io import load_image
from fitlib.layouts import LAYOUTS, KeypointLayout, convert_keypoints, get_layout
from fitlib.result import FitResult

__all__ = ["fit", "fit_batch", "detect", "load_body_model", "load_image", "load_config", "BodyModel", "BodyOutput", "FitConfig",
           "FitResult", "Keypoints", "KeypointLayout", "LAYOUTS", "convert_keypoints", "get_layout"]
