"""``fitlib.fit_video``: the people of a video, tracked, fitted with warm starts, one shape per track,
smoothed; :class:`VideoResult` holds per-frame :class:`~fitlib.FitResult` s and per-track parameter
sequences and saves them (per-frame JSON, AMASS-style npz per track, an overlay video with track ids).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.io.atomic import atomic_write
from fitlib.io.images import DEFAULT_MAX_PIXELS
from fitlib.video.decode import frames_from_arrays, read_video, video_info, write_video
from fitlib.video.temporal import SequenceSettings, Step, StepFit, fit_sequence, track_rows
from fitlib.detection.keypoints import keypoint_boxes
from fitlib.video.tracking import Tracker

VIDEO_SCHEMA = "fitlib.VideoResult"
VIDEO_SCHEMA_VERSION = 1
SUMMARY_NAME = "video.json"
"""The file :meth:`VideoResult.save` writes last: a folder holding it is a complete result."""
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


@dataclass
class TrackSequence:
    """One person's fitted frames (T of them), in time order.

    Attributes:
        id: the track id (as in :attr:`VideoResult.track_ids`).
        frames: [T] positions in :attr:`VideoResult.frames` of the frames the person was fitted in.
        frame_indices: [T] the source video's frame indices.
        times: [T] seconds from the video's start.
        poses: [T, 72] axis-angle (radians; joint 0 the orientation in the camera frame).
        trans: [T, 3] translation (metres, camera frame: x right, y down, z forward).
        betas: [10] the track's shape (the median of its frames' betas, which ``track_betas`` sets them to).
        rows: [T] the person's row in each frame's :class:`~fitlib.FitResult`.
    """

    id: int
    frames: np.ndarray
    frame_indices: np.ndarray
    times: np.ndarray
    poses: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class VideoResult:
    """What :func:`fit_video` returns.

    Attributes:
        frames: one :class:`~fitlib.FitResult` per decoded frame (people in detection order).
        track_ids: per frame, [P] int track id of each person.
        frame_indices: [F] source frame index of each decoded frame.
        times: [F] seconds from the video's start (the stream's timestamps, or ``index / fps`` for arrays).
        fps: the source's frame rate (frames per second; the decoded ones are ``every``-th).
        every: the decoding step.
        tracks: per track id, its :class:`TrackSequence`.
        source: the video's path (None for frames given as arrays).
        detections: per frame, the detector's :class:`~fitlib.Keypoints` (boxes, scores), or None where the
            keypoints were given.
        settings: how it was made (sequence settings, config hash, body model).
        model: the body model's name (``"open"`` or the file as given).
    """

    frames: list
    track_ids: list[np.ndarray]
    frame_indices: np.ndarray
    times: np.ndarray
    fps: float
    every: int
    tracks: dict[int, TrackSequence]
    source: str | None = None
    detections: list | None = None
    settings: dict = field(default_factory=dict)
    model: str = "open"

    def __len__(self) -> int:
        return len(self.frames)

    def save(self, out_dir: str | os.PathLike, *, overlay: bool = True, images: Sequence[np.ndarray] | None = None,
             name: str | None = None, body_model: Any = None) -> dict:
        """Write the result into ``out_dir`` (created), every file atomically, the summary last:

        * ``frames/frame_<index>.json``: each frame's :class:`~fitlib.FitResult` (its ``provenance["video"]``
          holds the frame index, time and track ids);
        * ``tracks/track_<id>.npz``: per track an AMASS-style npz (:func:`fitlib.interop.amass.write_amass_npz`:
          ``poses`` [T, 72], ``trans`` [T, 3], ``betas`` [10], ``mocap_framerate``, ``frame_indices``,
          ``timestamps``);
        * ``tracks/track_<id>.bvh``: the same motion as an animated skeleton for animation tools
          (:func:`fitlib.interop.bvh.write_bvh`: y-up, metres, at the output frame rate);
        * ``<name>_overlay.mp4`` (H.264 with PyAV, ``fitlib[video]``) or ``.webm`` (VP9) without it: the
          fitted meshes over the frames with each person's track id (``overlay=False``: none);
        * ``video.json``: the summary (frames, tracks, files, settings); a folder with it is complete.

        ``images``: the decoded frames, for a result made from arrays (a video file is decoded again).
        ``name``: the overlay's name (default: the video's stem, or ``video``). Returns the summary dict.
        """
        from fitlib.body.model import BodyModel, shared_body_model
        from fitlib.interop.amass import write_amass_npz
        from fitlib.interop.bvh import write_bvh

        out = Path(out_dir)
        (out / "frames").mkdir(parents=True, exist_ok=True)
        (out / "tracks").mkdir(parents=True, exist_ok=True)
        name = name or (Path(self.source).stem if self.source else "video")
        frame_files = []
        for k, (res, ids) in enumerate(zip(self.frames, self.track_ids)):
            res.provenance["video"] = {"source": self.source, "frame_index": int(self.frame_indices[k]),
                                       "time": float(self.times[k]), "track_ids": [int(i) for i in ids]}
            path = out / "frames" / f"frame_{int(self.frame_indices[k]):06d}.json"
            res.save(path)
            frame_files.append(path.relative_to(out).as_posix())
        track_files, bvh_files = {}, {}
        bm = None
        for tid, tr in self.tracks.items():
            path = out / "tracks" / f"track_{tid:03d}.npz"
            write_amass_npz(path, tr.poses, tr.trans, tr.betas, self.fps / self.every, frame_indices=tr.frame_indices,
                            timestamps=tr.times, body_model=self.model, track_id=np.array(tid))
            track_files[tid] = path.relative_to(out).as_posix()
            if bm is None:
                bm = body_model if isinstance(body_model, BodyModel) else shared_body_model(body_model or self.model)
            with torch.no_grad():
                rest = bm.rest_joints(torch.as_tensor(np.asarray(tr.betas)[None], dtype=bm.joint_template.dtype,
                                                      device=bm.joint_template.device))[0].cpu().double().numpy()
            bvh = write_bvh(path.with_suffix(".bvh"), tr.poses, tr.trans, rest, self.fps / self.every)
            bvh_files[tid] = bvh.relative_to(out).as_posix()
        overlay_file = None
        if overlay and len(self.frames):
            overlay_file = write_video(out / f"{name}_overlay.mp4", self.overlay_frames(images, body_model),
                                       self.fps / self.every).name
        summary = {"schema": VIDEO_SCHEMA, "schema_version": VIDEO_SCHEMA_VERSION, "source": self.source,
                   "fps": self.fps, "every": self.every, "model": self.model, "settings": self.settings,
                   "frames": [{"index": int(i), "time": float(t), "file": f, "track_ids": [int(x) for x in ids]}
                              for i, t, f, ids in zip(self.frame_indices, self.times, frame_files, self.track_ids)],
                   "tracks": [{"id": int(tid), "file": track_files[tid], "bvh": bvh_files[tid], "frames": len(tr),
                               "first_frame": int(tr.frame_indices[0]), "last_frame": int(tr.frame_indices[-1])}
                              for tid, tr in self.tracks.items()],
                   "overlay": overlay_file}
        with atomic_write(out / SUMMARY_NAME) as fh:
            fh.write(json.dumps(summary, indent=1, allow_nan=False).encode())
        return summary

    def overlay_frames(self, images: Sequence[np.ndarray] | None = None, body_model: Any = None):
        """Yield each frame with the fits drawn (:meth:`fitlib.FitResult.render_overlay`, without its per-frame
        person indices) and each person's track id at the top of their box; ``images`` as for :meth:`save`."""
        if images is None:
            if self.source is None:
                raise ValueError("this result was made from arrays: pass the frames as images=")
            wanted = set(int(i) for i in self.frame_indices)
            first = int(self.frame_indices[0]) if len(self.frame_indices) else 0
            source = (f.image for f in read_video(self.source, self.every, start=first, max_pixels=None)
                      if f.index in wanted)
        else:
            if len(images) != len(self.frames):
                raise ValueError(f"{len(images)} images for {len(self.frames)} frames")
            source = iter(images)
        for res, ids, img in zip(self.frames, self.track_ids, source):
            canvas = res.render_overlay(img, body_model=body_model, ids=False)  # track ids instead of indices
            draw_track_ids(canvas, res.keypoints, ids, res.fitted)
            yield canvas


def draw_track_ids(canvas: np.ndarray, keypoints: np.ndarray, ids: np.ndarray, fitted: np.ndarray | None = None
                   ) -> np.ndarray:
    """Write each person's track id (in the track's colour) above the box of their keypoints [P, J, 3], in
    place on the RGB image ``canvas``; people not fitted get their id in grey."""
    boxes = keypoint_boxes(keypoints, 0.2, 0.05, np.nan)
    h = canvas.shape[0]
    scale = max(0.5, h / 720)
    for i, (box, tid) in enumerate(zip(boxes, ids)):
        if not np.isfinite(box).all():
            continue
        color = _PALETTE[int(tid) % len(_PALETTE)] if fitted is None or fitted[i] else (160, 160, 160)
        x, y = int(box[0]), max(int(box[1]) - 6, int(22 * scale))
        cv2.rectangle(canvas, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), color, max(1, int(scale)))
        cv2.putText(canvas, f"id {int(tid)}", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0),
                    int(4 * scale), cv2.LINE_AA)
        cv2.putText(canvas, f"id {int(tid)}", (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, color,
                    max(1, int(2 * scale)), cv2.LINE_AA)
    return canvas


def _frames(video, fps, every: int, start: int, max_frames: int | None, max_pixels) -> tuple:
    """(iterator of Frame, source path or None, fps, (h, w) or None)."""
    if isinstance(video, (str, os.PathLike)):
        info = video_info(video)
        rate = float(fps) if fps is not None else info.fps
        if not (rate > 0):
            raise ValueError(f"the video {video} does not say its frame rate: pass fps=")
        return read_video(video, every, start=start, max_frames=max_frames, max_pixels=max_pixels), str(video), rate
    if isinstance(video, np.ndarray) and video.ndim in (3, 4) and video.dtype == np.uint8:
        video = list(video) if video.ndim == 4 else [video]
    if not isinstance(video, (list, tuple)):
        raise ValueError(f"fit_video takes a video file path or a list of frames (uint8 arrays), got "
                         f"{type(video).__name__}")
    if not len(video):
        raise ValueError("fit_video: the list of frames is empty")
    frames = frames_from_arrays(video, fps, every, start=start, max_frames=max_frames)  # checks fps
    return frames, None, float(fps) if isinstance(fps, (int, float, np.number)) and not isinstance(fps, bool) else fps


def fit_video(video: str | os.PathLike | Sequence[np.ndarray], keypoints: Sequence[Any] | None = None, *,
              fps: float | None = None, every: int = 1, start: int = 0, max_frames: int | None = None,
              model: str | Path = "open", config: Any = None, device: str | torch.device | None = None,
              layout: str = "coco17", K: np.ndarray | None = None, warm: str = "best", smoothing: str = "savgol",
              track_betas: bool = True, max_gap: int = 10, min_similarity: float = 0.2,
              settings: SequenceSettings | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
              detect_options: dict | None = None, progress: bool = False) -> VideoResult:
    """Fit SMPL bodies to the people of a video, tracked over time.

    Args:
        video: a video file (mp4, avi, mov, mkv, webm...; decoded with OpenCV, :mod:`fitlib.video.decode`) or
            a list of frames (uint8 (H, W, 3) RGB arrays, one size) with ``fps``.
        keypoints: per decoded frame (after ``every``/``start``/``max_frames``), the people's keypoints as
            :func:`fitlib.fit` takes them ([P, J, 3] in ``layout``, a :class:`~fitlib.Keypoints`, mmpose
            output); None runs the bundled detector (:func:`fitlib.detect`) on every decoded frame.
        fps: frames per second: needed for frames given as arrays; overrides a file's nominal rate.
        every: decode every ``every``-th frame; ``start``: the first frame; ``max_frames``: at most this many.
        model, config, device: as for :func:`fitlib.fit` (the default config: regressor -> refine).
        layout: the layout of plain keypoint arrays.
        K: [3, 3] intrinsics (pixels) of the camera, default ``sqrt(w² + h²)`` focal, centred.
        warm: how frames warm-start from the previous ones (:class:`fitlib.video.temporal.SequenceSettings`):
            ``"best"`` (default), ``"reseed"``, ``"warm"`` or ``"scratch"``.
        smoothing: ``"savgol"`` (default), ``"one_euro"``, ``"one_euro2"`` or ``"none"``.
        track_betas: one shape per track (the median of its frames' betas replaces them; a refit with it
            held is ``SequenceSettings(betas_refit=True)``).
        max_gap: frames a person may be missed and keep their track id (and warm start).
        min_similarity: the tracker's threshold (:class:`fitlib.video.tracking.Tracker`).
        settings: a full :class:`SequenceSettings` (overrides ``warm``, ``smoothing``, ``track_betas``, ``max_gap``).
        max_pixels: refuse frames above this many pixels.
        detect_options: keyword arguments of :func:`fitlib.detect` (e.g. ``{"levels": 3}``: BlazePose also on
            windows of a third of the frame, for small people; about 3x the detection time).
        progress: show a progress bar.
    Returns:
        :class:`VideoResult`.
    Raises:
        FileNotFoundError: no such video file.
        ValueError: an unreadable or corrupt video, frames without fps, keypoints for another number of
            frames, bad settings.
    """
    from fitlib.api import _as_K, _as_people, shared_fitter
    from fitlib.body.model import model_identity
    from fitlib.result import FitResult, config_hash

    seq_settings = settings or SequenceSettings(warm=warm, smoothing=smoothing, track_betas=track_betas,
                                                max_gap=max_gap)
    tracker = Tracker(max_gap=seq_settings.max_gap, min_similarity=min_similarity)
    frames, source, rate = _frames(video, fps, every, start, max_frames, max_pixels)
    keypoints = None if keypoints is None else list(keypoints)
    fitter = shared_fitter(model, config, device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="detecting" if keypoints is None else "tracking", unit="frame")
    steps, items, detections, frame_people = [], [], [], []  # frame_people: (boxes [P, 4], scores [P]) or Nones
    lay = layout
    size = None
    Kt = None
    for k, frame in enumerate(frames):
        if size is None:
            size = frame.image.shape[:2]
            Kt = _as_K(K, *size)
        if keypoints is None:
            from fitlib.detection import detect

            det = detect(frame.image, **(detect_options or {}))
            detections.append(det)
            kps, lay, world = np.asarray(det.keypoints, np.float64), det.layout, det.world
            people = (np.asarray(det.boxes, np.float64), np.asarray(det.scores, np.float64))
        else:
            if k >= len(keypoints):
                raise ValueError(f"keypoints are given for {len(keypoints)} frames but the video has more decoded "
                                 f"frames (pass keypoints for every decoded frame, after every={every})")
            kps, lay, *people, world = _as_people(keypoints[k], layout)  # boxes, scores, world landmarks
            detections.append(None)
        boxes = None  # tracked on boxes around the keypoints: BlazePose's own boxes are its looser crops
        P = len(kps)
        kps = kps.reshape(P, len(get_layout(lay)), 3)  # also a frame with nobody: [0, J, 3]
        ids = tracker.update(kps, boxes)
        steps.append(Step(torch.as_tensor(kps, dtype=torch.float64), Kt.expand(P, 3, 3).clone(),
                          torch.tensor([list(size)] * P, dtype=torch.float64).reshape(P, 2), ids, frame.time,
                          None if world is None else torch.as_tensor(world, dtype=torch.float64).reshape(P, 33, 3)))
        items.append((frame.index, frame.time))
        frame_people.append(people)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not steps:
        raise ValueError(f"no frame was decoded from {source or 'the frames'} (start={start}, every={every})")
    if keypoints is not None and len(keypoints) != len(steps):
        raise ValueError(f"keypoints are given for {len(keypoints)} frames but {len(steps)} frames were decoded")
    fits = _fit_steps(fitter, steps, lay, seq_settings, progress)
    provenance = {"config_hash": config_hash(fitter.config), "body_model": model_identity(model),
                  "topology": {"vertices": int(fitter.model.num_vertices), "faces": int(len(fitter.model.faces))}}
    results, track_ids = [], []
    for step, fit, (frame_boxes, frame_scores) in zip(steps, fits, frame_people):
        P = len(step.ids)
        nan = lambda a: np.where(fit.fitted.reshape(-1, *([1] * (a.ndim - 1))), a, np.nan)  # noqa: E731
        pose = fit.params.pose.reshape(P, 72).numpy() if P else np.zeros((0, 72))
        results.append(FitResult(
            pose=nan(pose), betas=nan(fit.params.betas.numpy()), transl=nan(fit.params.transl.numpy()),
            K=Kt.numpy(), image_size=tuple(int(s) for s in size), layout=lay, keypoints=step.keypoints.numpy(),
            projected=nan(fit.projected), joints=nan(fit.joints), reprojection_error=nan(fit.reprojection_error),
            loss=nan(fit.loss), converged=fit.converged & fit.fitted, fitted=fit.fitted, model=str(model),
            provenance=dict(provenance), boxes=frame_boxes, scores=frame_scores))
        track_ids.append(step.ids.astype(np.int64))
    tracks = {}
    for tid, rows in sorted(track_rows(steps, fits).items()):
        ts = [t for t, _ in rows]
        rs = [i for _, i in rows]
        tracks[tid] = TrackSequence(
            tid, np.array(ts), np.array([items[t][0] for t in ts]), np.array([items[t][1] for t in ts]),
            np.stack([results[t].pose[i] for t, i in rows]), np.stack([results[t].transl[i] for t, i in rows]),
            np.median(np.stack([results[t].betas[i] for t, i in rows]), 0), np.array(rs))
    settings_record = {"warm": seq_settings.warm, "smoothing": seq_settings.smoothing,
                       "track_betas": seq_settings.track_betas, "max_gap": seq_settings.max_gap,
                       "every": every, "start": start, "max_frames": max_frames,
                       "keypoints": "detector" if keypoints is None else "given", **provenance}
    return VideoResult(results, track_ids, np.array([i for i, _ in items]), np.array([t for _, t in items]),
                       rate, every, tracks, source, detections if keypoints is None else None, settings_record,
                       str(model))


def _fit_steps(fitter, steps: list[Step], layout: str, settings: SequenceSettings, progress: bool) -> list[StepFit]:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(steps), desc="fitting", unit="frame")
    try:
        return fit_sequence(fitter, steps, layout, settings, progress=(lambda t: bar.update(1)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
