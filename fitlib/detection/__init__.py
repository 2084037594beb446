"""2D keypoints from images: :func:`detect` (bundled BlazePose or a local mmpose model) returns
:class:`Keypoints`; :func:`keypoints_from_mmpose` reads mmpose's results as they come."""
from fitlib.detection.detector import detect
from fitlib.detection.keypoints import Keypoints
from fitlib.detection.mmpose_results import keypoints_from_mmpose

__all__ = ["detect", "Keypoints", "keypoints_from_mmpose"]
