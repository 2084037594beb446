"""Reading videos (every frame or every n-th, with the frames' real timestamps) and writing overlay videos.

Decoding uses OpenCV's ``VideoCapture`` (its FFmpeg backend, already a dependency of fitlib): on this
machine it decoded ``vtest.avi`` at 550 frames/s against PyAV's 434, ``demo.mp4`` at 104 against 95, and
gave the same presentation timestamps as PyAV on a variable-frame-rate H.264 file
(``.parts/video_RESULTS.md``), so PyAV is not needed to read.

Encoding: OpenCV's wheel has no software H.264 encoder (fourcc ``avc1`` fails to open; only ``mp4v``,
MPEG-4 part 2, which browsers do not play, and VP8/VP9 in WebM). :func:`write_video` therefore writes
H.264 ``.mp4`` (yuv420p, ``+faststart``) through PyAV when it is installed (``pip install fitlib[video]``;
its wheels bundle FFmpeg with libx264), and otherwise falls back to VP9 in ``.webm`` through OpenCV,
which every current browser plays too.

Images are RGB ``uint8`` ``(H, W, 3)`` arrays (as :func:`fitlib.io.images.load_image` gives them);
timestamps are seconds from the start of the stream.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from fitlib.io.atomic import atomic_write
from fitlib.io.images import DEFAULT_MAX_PIXELS, load_image

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
"""File suffixes ``fitlib fit`` treats as videos."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says: ``fps`` (frames per second, nominal), ``frame_count`` (may be an
    estimate, 0 if unknown), ``width`` and ``height`` in pixels."""

    fps: float
    frame_count: int
    width: int
    height: int


@dataclass
class Frame:
    """One decoded frame: ``index`` in the stream (0-based, counting every frame, also skipped ones),
    ``time`` in seconds from the stream's start, ``image`` (H, W, 3) uint8 RGB."""

    index: int
    time: float
    image: np.ndarray


def _check_path(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"video file not found: {path}")
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"video path is not a regular file (a folder, FIFO or device): {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"video file is empty (0 bytes): {path}")


def _open(path: Path) -> cv2.VideoCapture:
    _check_path(path)
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"cannot decode video file (corrupt or unsupported format): {path}")
    return cap


def video_info(path: str | os.PathLike) -> VideoInfo:
    """The container's frame rate, frame count and size of the video at ``path``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a regular file, empty, or not a video OpenCV can open.
    """
    path = Path(path)
    cap = _open(path)
    try:
        return VideoInfo(float(cap.get(cv2.CAP_PROP_FPS) or 0.0), max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)),
                         int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        cap.release()


def _check_every(every: int, start: int, max_frames: int | None) -> None:
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be a positive integer (keep every n-th frame), got {every!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative frame index, got {start!r}")
    if max_frames is not None and (not isinstance(max_frames, (int, np.integer)) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive integer or None, got {max_frames!r}")


def read_video(path: str | os.PathLike, every: int = 1, *, start: int = 0, max_frames: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[Frame]:
    """Decode a video file lazily, keeping every ``every``-th frame from frame ``start``.

    Args:
        path: a video file (anything OpenCV's FFmpeg backend reads: mp4, avi, mov, mkv, webm...).
        every: keep frames ``start, start + every, ...`` (indices count every frame of the stream).
        start: first frame index kept.
        max_frames: stop after this many kept frames (None: to the end).
        max_pixels: refuse frames larger than this (width x height); None for no limit.
    Yields:
        :class:`Frame` (index, time in seconds from the stream's presentation timestamps, RGB image).
    Raises:
        FileNotFoundError: no such file.
        ValueError: not a regular file, empty, not decodable (corrupt or unsupported), or a video whose
            first frame cannot be decoded, or frames above ``max_pixels``.
    """
    path = Path(path)
    _check_every(every, start, max_frames)
    cap = _open(path)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if max_pixels is not None and w * h > max_pixels:
            raise ValueError(f"video {path} is {w}x{h} px per frame, more than the limit of {max_pixels / 1e6:g} "
                             "megapixels")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        index, kept, last_time = -1, 0, -np.inf
        while max_frames is None or kept < max_frames:
            keep = (index + 1) >= start and (index + 1 - start) % every == 0
            ok = cap.grab()
            if not ok:
                break
            index += 1
            msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            time = msec / 1000.0 if np.isfinite(msec) and msec >= 0 else (index / fps if fps > 0 else float(index))
            if time <= last_time:  # a container without timestamps: fall back to the nominal rate
                time = index / fps if fps > 0 else last_time + 1.0
            last_time = time
            if not keep:
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None or bgr.size == 0:
                if index == 0:
                    raise ValueError(f"cannot decode video file (corrupt or unsupported format): {path}")
                break
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            yield Frame(index, time, cv2.cvtColor(bgr[:, :, :3], cv2.COLOR_BGR2RGB))
            kept += 1
        if index < 0:
            raise ValueError(f"cannot decode video file (no frame could be read; corrupt or unsupported): {path}")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if max_frames is None and count > 0 and index + 1 < 0.95 * count:
            log.warning("video %s ended after %d of the %d frames its container announces (truncated or damaged?)",
                        path, index + 1, count)
    finally:
        cap.release()


def frames_from_arrays(frames: Sequence[np.ndarray], fps: float, every: int = 1, *, start: int = 0,
                       max_frames: int | None = None) -> Iterator[Frame]:
    """:class:`Frame` records from in-memory images taken at a constant ``fps`` (frame ``i`` at ``i / fps`` s).

    Args:
        frames: images as :func:`fitlib.io.images.load_image` takes them (uint8 (H, W), (H, W, 3) RGB, ...),
            all of one size.
        fps: frames per second (> 0).
        every, start, max_frames: as for :func:`read_video`.
    Raises:
        ValueError: no fps, frames of different sizes, or images that are not uint8 arrays.
    """
    if fps is None or isinstance(fps, bool) or not np.isfinite(float(fps)) or float(fps) <= 0:
        raise ValueError(f"frames given as arrays need their frame rate: fps must be a positive number, got {fps!r}")
    _check_every(every, start, max_frames)
    size = None
    kept = 0
    for i in range(start, len(frames), every):
        if max_frames is not None and kept >= max_frames:
            break
        img = load_image(frames[i])
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise ValueError(f"video frames must all have one size: frame {i} is {img.shape[1]}x{img.shape[0]} px, "
                             f"frame {start} {size[1]}x{size[0]} px")
        yield Frame(i, i / float(fps), img)
        kept += 1


def h264_available() -> bool:
    """True if PyAV with an H.264 encoder (libx264) is installed (``pip install fitlib[video]``)."""
    try:
        import av
        av.Codec("libx264", "w")
    except Exception:  # ImportError, or a PyAV built without libx264
        return False
    return True


def video_path(path: str | os.PathLike) -> Path:
    """The file :func:`write_video` writes for ``path``: ``.mp4`` with H.264 when PyAV is installed, else
    the same name with ``.webm`` (VP9)."""
    path = Path(path)
    return path.with_suffix(".mp4") if h264_available() else path.with_suffix(".webm")


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Encode RGB frames into a video a browser plays, atomically (the target appears complete or not at all).

    Args:
        path: target; its suffix is replaced by :func:`video_path`'s (``.mp4`` H.264 through PyAV, else
            ``.webm`` VP9 through OpenCV).
        frames: (H, W, 3) uint8 RGB images of one size (odd sizes are padded by one pixel for yuv420p).
        fps: frames per second (> 0).
    Returns:
        the path written.
    Raises:
        ValueError: no frames, frames of different sizes, a bad fps, or an encoder that cannot open.
        OSError: as the file system raises it.
    """
    if not (isinstance(fps, (int, float, np.floating)) and np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    target = video_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as tmp:
        tmp_file = Path(tmp) / f"video{target.suffix}"
        n = (_encode_pyav if target.suffix == ".mp4" else _encode_opencv)(tmp_file, frames, float(fps))
        if n == 0:
            raise ValueError(f"write_video: no frames to write to {target}")
        with open(tmp_file, "rb") as src, atomic_write(target) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


def _even(img: np.ndarray, size: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"video frames must be (H, W, 3) uint8 RGB, got {img.dtype} {img.shape}")
    if size is None:
        size = img.shape[:2]
    elif img.shape[:2] != size:
        raise ValueError(f"video frames must all have one size, got {img.shape[1]}x{img.shape[0]} after "
                         f"{size[1]}x{size[0]}")
    h, w = size
    if h % 2 or w % 2:
        img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return img, size


def _encode_pyav(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    import fractions

    import av

    n, size = 0, None
    rate = fractions.Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = None
        for img in frames:
            img, size = _even(img, size)
            if stream is None:
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = img.shape[1], img.shape[0]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "23", "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return n


def _encode_opencv(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    n, size, writer = 0, None, None
    try:
        for img in frames:
            img, size = _even(img, size)
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP90"), fps, (img.shape[1], img.shape[0]))
                if not writer.isOpened():
                    raise ValueError(f"OpenCV cannot open a VP9 encoder for {path}; install fitlib[video] (PyAV) "
                                     "for H.264")
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n
