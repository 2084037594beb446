"""``fitlib fit VIDEO --out DIR`` (and the videos of a folder): :func:`fitlib.video.fit_video` per video, each
into ``DIR/<video stem>/`` (:meth:`fitlib.video.VideoResult.save`).

A video is done when its ``video.json`` (written last, every file before it atomically) records this run's
settings and its files exist: a resumed run skips it; a killed run leaves no partial file, and the video is
fitted again. A video that cannot be read is reported and skipped (exit status 1).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from fitlib.video.decode import VIDEO_SUFFIXES
from fitlib.video.fit import SUMMARY_NAME, VIDEO_SCHEMA


def video_targets(target: Path, out: Path | None = None, image_suffixes=()) -> tuple[list[Path], bool]:
    """(the videos to fit, whether there is nothing else to fit): the file itself if it has a video suffix
    (:data:`VIDEO_SUFFIXES`), or a folder's regular video files (subfolders too, the output folder ``out``
    excluded), sorted; the flag is True when ``target`` is a video or a folder without files of
    ``image_suffixes``."""
    if not target.is_dir():
        is_video = target.suffix.lower() in VIDEO_SUFFIXES
        return ([target], True) if is_video else ([], False)
    skip = out.resolve() if out is not None and out.exists() else None
    videos, images = [], False
    for p in sorted(target.rglob("*")):
        if skip is not None and (p.resolve() == skip or skip in p.resolve().parents):
            continue
        suffix = p.suffix.lower()
        if suffix in VIDEO_SUFFIXES and p.is_file():
            videos.append(p)
        elif suffix in image_suffixes:
            images = True
    return videos, bool(videos) and not images


def _settings(args) -> dict:
    from fitlib.body.model import model_identity
    from fitlib.result import config_hash

    return {"config_hash": config_hash(args.config), "body_model": model_identity(args.model),
            "every": int(getattr(args, "every", 1) or 1), "max_frames": getattr(args, "max_frames", None),
            "keypoints": "detector"}


def _done(folder: Path, settings: dict, overlay: bool) -> bool:
    summary = folder / SUMMARY_NAME
    if not summary.is_file():
        return False
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("schema") != VIDEO_SCHEMA:
        return False
    recorded = data.get("settings") or {}
    if any(recorded.get(k) != v for k, v in settings.items()):
        return False
    files = [f.get("file") for f in data.get("frames", [])] + [t.get("file") for t in data.get("tracks", [])]
    if overlay:
        files.append(data.get("overlay"))
    return all(isinstance(f, str) and (folder / f).is_file() for f in files)


def run_videos(args, videos: list[Path], out: Path) -> int:
    """Fit ``videos`` into ``out/<stem>/`` with the ``fitlib fit`` arguments ``args`` (``config``, ``model``,
    ``device``, ``overwrite``, ``every``, ``max_frames``, ``no_overlay``, ``max_pixels`` where present).
    Returns the exit status: 0, 1 if a video could not be read or written."""
    from fitlib.video.fit import fit_video

    if getattr(args, "keypoints", None):
        raise SystemExit("fitlib: --keypoints goes with images; for a video pass per-frame keypoints in Python "
                         "(fitlib.fit_video(path, keypoints))")
    stems: dict[str, list[str]] = {}
    for v in videos:
        stems.setdefault(v.stem, []).append(str(v))
    clashes = [names for names in stems.values() if len(names) > 1]
    if clashes:
        raise SystemExit(f"fitlib: videos with the same name would write the same outputs: {clashes}; rename them")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"fitlib: cannot create the output folder {out}: {exc.strerror or exc}") from None
    if args.model == "open":
        from fitlib.body.open_model import ensure_open_model

        ensure_open_model()
    settings = _settings(args)
    overlay = not getattr(args, "no_overlay", False)
    status = 0
    for video in videos:
        folder = out / video.stem
        if not getattr(args, "overwrite", False) and _done(folder, settings, overlay):
            print(f"{video.name}: already fitted in {folder}: skipped")
            continue
        try:
            result = fit_video(video, every=settings["every"], max_frames=settings["max_frames"],
                               config=args.config, model=args.model, device=getattr(args, "device", None),
                               max_pixels=getattr(args, "max_pixels", None), progress=sys.stderr.isatty())
        except (ValueError, FileNotFoundError) as exc:
            print(f"fitlib: skipped {video.name}: {exc}", file=sys.stderr)
            status = 1
            continue
        result.settings.update(settings)
        try:
            summary = result.save(folder, overlay=overlay)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"fitlib: could not write the outputs of {video.name} in {folder}: {reason}", file=sys.stderr)
            status = 1
            continue
        people = sum(int(r.fitted.sum()) for r in result.frames)
        print(f"{video.name}: {len(result)} frames, {len(result.tracks)} tracks, {people} person-frames fitted; "
              f"results in {folder}" + (f" (overlay {summary['overlay']})" if summary["overlay"] else ""))
    return status
