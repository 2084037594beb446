"""Body models in SMPL's layout (the open model built from anny, or a real SMPL file), their
skeleton, keypoint layouts and the pose and shape priors."""
from fitlib.body.layouts import LAYOUTS, KeypointLayout, convert_keypoints, get_layout
from fitlib.body.model import BodyModel, BodyOutput, load_body_model

__all__ = ["BodyModel", "BodyOutput", "load_body_model", "LAYOUTS", "KeypointLayout", "convert_keypoints",
           "get_layout"]
