"""Video: decoding with real timestamps, tracking people across frames, warm-started and smoothed fits.

:func:`fit_video` (also ``fitlib.fit_video``) runs the whole chain and returns a :class:`VideoResult`;
:mod:`~fitlib.video.decode` reads and writes videos, :mod:`~fitlib.video.tracking` follows people,
:mod:`~fitlib.video.temporal` fits tracked sequences, :mod:`~fitlib.video.smoothing` filters them.
"""
from fitlib.video.decode import (VIDEO_SUFFIXES, Frame, VideoInfo, frames_from_arrays, read_video, video_info,
                                 write_video)
from fitlib.video.fit import TrackSequence, VideoResult, fit_video
from fitlib.video.smoothing import smooth_params
from fitlib.video.temporal import SequenceSettings
from fitlib.video.tracking import Tracker, track_people

__all__ = ["VIDEO_SUFFIXES", "Frame", "SequenceSettings", "TrackSequence", "Tracker", "VideoInfo", "VideoResult",
           "fit_video", "frames_from_arrays", "read_video", "smooth_params", "track_people", "video_info",
           "write_video"]
