"""fitlib: recover SMPL bodies (pose, shape, camera) from single images and videos.

Main entry points: :func:`fit`, :func:`fit_video`, :func:`detect`, :func:`load_body_model`, :class:`FitResult`,
:class:`Fitter` (a reusable fitter), :class:`SMPLParams` (the parameter record); subpackages
:mod:`fitlib.render`, :mod:`fitlib.interop`, :mod:`fitlib.labels`.
"""
from fitlib import interop, render
from fitlib.api import fit, fit_batch, regress, regress_batch
from fitlib.body import LAYOUTS, BodyModel, BodyOutput, KeypointLayout, convert_keypoints, get_layout, load_body_model
from fitlib.detection import Keypoints, detect
from fitlib.fitting import FitConfig, Fitter, FitOutput, load_config
from fitlib.io import load_image
from fitlib.params import SMPLParams
from fitlib.result import FitResult
from fitlib.result import fitlib_version as _fitlib_version
from fitlib.video.fit import VideoResult, fit_video

__version__ = _fitlib_version()

__all__ = ["fit", "fit_batch", "fit_video", "regress", "regress_batch", "detect", "load_body_model", "load_image",
           "load_config", "BodyModel", "BodyOutput", "FitConfig", "Fitter", "FitOutput", "FitResult", "Keypoints",
           "KeypointLayout", "LAYOUTS", "SMPLParams", "VideoResult", "convert_keypoints", "get_layout", "interop",
           "render"]
