"""Fitting SMPL to 2D keypoints: :class:`Fitter` (model, config and priors held once), its
configs (:func:`load_config`), stages' optimisers and starts."""
from fitlib.fitting.config import Convergence, FitConfig, Stage, load_config
from fitlib.fitting.fitter import Fitter, FitOutput

__all__ = ["Fitter", "FitOutput", "FitConfig", "Stage", "Convergence", "load_config"]
