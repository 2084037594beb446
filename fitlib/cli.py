"""The ``fitlib`` command line: ``fitlib fit``, ``detect``, ``build-model``, ``train-prior``, ``extract-mocap``,
``train-regressor``."""
from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import stat
import sys
from pathlib import Path

from fitlib.io.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES


CHUNK_PIXELS = 200_000_000
"""Most pixels ``fitlib fit`` holds decoded at once (a chunk closes early when its images reach it; about
600 MB as RGB), whatever ``--batch-images`` says."""

MAX_KEYPOINT_FILE_BYTES = 64 * 2**20

_log = logging.getLogger(__name__)

MESH_FRAME = "world"
"""The frame of the meshes ``fitlib fit`` writes (y up, standing on y = 0: :meth:`FitResult.export_meshes`);
recorded with them, so meshes written in the camera frame by older versions are written again."""

_DISK_ERRORS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS}
"""Write errors after which every further write fails too: the run stops."""


def _images(target: Path, exclude: Path | None = None) -> tuple[list[Path], list[str]]:
    """The images to fit (a folder's regular files with an image suffix, in its subfolders too, sorted, or
    the one file given) and the names skipped because they are not regular files (a FIFO, a device, a folder
    named ``x.jpg``), each reported as a warning. ``exclude`` (the output folder, when it lies inside the
    folder) is not searched; symbolic links to folders are not followed. SystemExit for a missing target, a
    folder without images, or two images whose outputs would share a name."""
    if target.is_dir():
        images, skipped = [], []
        skip_dir = exclude.resolve() if exclude is not None else None
        found = []
        for root, dirs, files in os.walk(target):
            dirs[:] = sorted(d for d in dirs if skip_dir is None or (Path(root) / d).resolve() != skip_dir)
            found += [Path(root) / f for f in files]
            found += [Path(root) / d for d in dirs if d.lower().endswith(IMAGE_SUFFIXES)]
        for p in sorted(found, key=lambda q: q.relative_to(target).as_posix()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                regular = stat.S_ISREG(p.stat().st_mode)
            except OSError:
                regular = False
            rel = p.relative_to(target).as_posix()
            if regular:
                images.append(p)
            else:
                skipped.append(rel)
                _log.warning("fitlib: skipped %s: not a regular file (a FIFO, device, folder or broken link)", rel)
        by_stem: dict[str, list[str]] = {}
        for p in images:
            by_stem.setdefault(_output_name(p, target), []).append(p.relative_to(target).as_posix())
        clashes = [names for names in by_stem.values() if len(names) > 1]
        if clashes:  # outputs are named by stem: x.jpg and x.png would overwrite each other's
            raise SystemExit(f"fitlib: images with the same name would write the same outputs: {clashes}; "
                             f"rename or move them")
        if not images:
            raise SystemExit(f"fitlib: no images to fit in {target} or its subfolders (looked for regular files "
                             f"ending in {', '.join(sorted(IMAGE_SUFFIXES))})")
        return images, skipped
    if not target.exists():
        raise SystemExit(f"fitlib: {target} does not exist")
    return [target], []


def _output_name(path: Path, target: Path) -> str:
    """The name an image's outputs take under ``--out``: its path relative to the folder given, without the
    suffix (``sub/x`` for ``FOLDER/sub/x.jpg``: subfolders are mirrored), or its stem for a single file."""
    if target.is_dir():
        return path.relative_to(target).with_suffix("").as_posix()
    return path.stem


def _previous(result_file: Path, settings: dict, wanted: dict):
    """What a previous run left for an image: ``("done", result)`` when its result loads, was made with
    these settings (config, body model, keypoints) and all the outputs ``wanted`` (:func:`_wanted`) exist
    (meshes in this format); ``("outputs", result)`` when the fit can be reused but outputs are missing or
    in another format; ``("fit", None)`` otherwise (no result, a damaged one, or other settings). Outputs
    are recorded relative to the result's folder."""
    from fitlib.result import FitResult

    if not result_file.exists():
        return "fit", None
    try:
        result = FitResult.load(result_file)
    except (ValueError, FileNotFoundError):
        return "fit", None
    if any(result.provenance.get(k) != v for k, v in settings.items()):
        return "fit", None
    outputs, folder = result.outputs, result_file.parent
    meshes = outputs.get("meshes")
    overlay = outputs.get("overlay")
    complete = True
    if wanted["meshes"]:
        complete = (outputs.get("mesh_format") == wanted["mesh_format"] and outputs.get("mesh_frame") == MESH_FRAME
                    and isinstance(meshes, list)
                    and len(meshes) == int(result.fitted.sum())
                    and all(isinstance(m, str) and (folder / m).is_file() for m in meshes))
    if wanted["overlay"]:
        complete = complete and isinstance(overlay, str) and (folder / overlay).is_file()
    return ("done" if complete else "outputs"), result


def _wanted(args) -> dict:
    """The outputs ``fitlib fit`` is asked for: meshes (and their format), overlay (with a side view or
    not), the result file's format."""
    return {"meshes": not args.no_meshes, "mesh_format": args.mesh_format, "overlay": not args.no_overlay,
            "side_view": not args.no_side_view, "result_format": args.result_format}


def _write_outputs(name: str, image, result, out: Path, wanted: dict, settings: dict, body_model) -> None:
    """Write an image's meshes and overlay (those ``wanted``) and, last, marking it done, its result
    (``out/<name>.json`` or ``.npz``), each atomically; the result records the settings that made it and the
    outputs written, relative to its folder. Raises OSError as the disk does."""
    from fitlib.io.images import save_image

    folder, base = (out / name).parent, Path(name).name
    folder.mkdir(parents=True, exist_ok=True)
    written: dict = {}
    if wanted["meshes"]:
        meshes = result.export_meshes(folder / f"{base}_meshes", fmt=wanted["mesh_format"], body_model=body_model,
                                      frame=MESH_FRAME)
        written.update(mesh_format=wanted["mesh_format"], mesh_frame=MESH_FRAME,
                       meshes=[m.relative_to(folder).as_posix() for m in meshes])
    if wanted["overlay"]:
        picture = result.render_overlay(image, body_model=body_model, side_view=wanted["side_view"])
        written["overlay"] = save_image(picture, folder / f"{base}_overlay.png").name
    result.provenance.update(settings)
    result.outputs = written
    result.save(folder / f"{base}.{wanted['result_format']}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _keypoints_source(path: str | None, image: Path | None = None):
    """The ``--keypoints`` file's predictions (a one-image list for ``fit_batch``, or None to detect) and how
    results record them (its name and SHA-256, or ``"detector"``). The file may be mmpose / fitlib detection
    JSON, an OpenPose JSON frame or COCO keypoint annotations (``image`` picks its entry by file name)."""
    import hashlib

    from fitlib.detection import keypoints_from_mmpose
    from fitlib.io.safe_load import read_regular_file

    if not path:
        return None, "detector"
    raw = read_regular_file(path, max_bytes=MAX_KEYPOINT_FILE_BYTES, what="--keypoints file")
    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"--keypoints file {path} is not JSON ({exc})") from None
    from fitlib.interop.keypoint_files import foreign_keypoints

    found = foreign_keypoints(data, image=image, source=str(path))
    return ([found if found is not None else keypoints_from_mmpose(data)],
            {"file": Path(path).name, "sha256": hashlib.sha256(raw).hexdigest()})


def _cmd_fit(args) -> int:
    """Fit images in chunks of ``--batch-images`` (their people in one optimiser batch; a chunk also closes
    at :data:`CHUNK_PIXELS` decoded pixels). An image is done when its result JSON, written last, loads and
    records this run's settings and outputs; a resumed run skips done images, completes missing outputs of
    reusable fits, and refits images made with another config, body model or keypoints. An image that
    cannot be read is reported and skipped (exit status 1 at the end), the others are fitted; a write error
    is reported, the image stays not done (a full disk stops the run). Ctrl-C stops quietly with a summary
    (exit status 130)."""
    from tqdm import tqdm

    from fitlib.api import fit_batch
    from fitlib.body.model import model_identity, resolve_device, shared_body_model
    from fitlib.io.images import load_image
    from fitlib.result import config_hash

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"fitlib: --out {out} is a file, not a folder (results, meshes and overlays go into a "
                         "folder)")
    resolve_device(args.device)  # an unknown or absent device is refused before anything is read
    target = Path(args.image)
    from fitlib.video.cli import run_videos, video_targets  # videos: fitlib/video/cli.py

    videos, only_videos = video_targets(Path(args.image), out, IMAGE_SUFFIXES)
    if videos and args.regressor:
        raise SystemExit("fitlib: --regressor starts image fits; videos are fitted with the config's regressor "
                         "(--config) and their tracks")
    video_status = run_videos(args, videos, out) if videos else 0
    if only_videos:
        return video_status
    images, unreadable = _images(target, exclude=out)
    wanted = _wanted(args)

    def shown(path: Path) -> str:  # an image's name in messages: its path under the folder given
        return path.relative_to(target).as_posix() if target.is_dir() else path.name

    if args.keypoints and len(images) != 1:
        raise SystemExit("fitlib: --keypoints goes with a single image")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"fitlib: cannot create the output folder {out}: {exc.strerror or exc}") from None
    keypoints, kp_source = _keypoints_source(args.keypoints, images[0] if args.keypoints else None)
    if args.model == "open":
        from fitlib.body.open_model import ensure_open_model

        ensure_open_model()  # verified (or built) now, so that its identity is the one the fits use
    settings = {"config_hash": config_hash(args.config), "body_model": model_identity(args.model),
                "keypoints": kp_source, "init_regressor": None}
    if args.regressor:  # its estimate starts the fits: results of another (or no) regressor are refitted
        from fitlib.io.safe_load import file_sha256

        settings["init_regressor"] = file_sha256(args.regressor)
    todo: list[Path] = []
    finish = []  # (path, reusable result) whose outputs are missing or in another format
    for p in images:
        status, previous = ("fit", None) if args.overwrite else \
            _previous(out / f"{_output_name(p, target)}.{args.result_format}", settings, wanted)
        if status == "outputs":
            finish.append((p, previous))
        elif status == "fit":
            todo.append(p)
    already = len(images) - len(todo) - len(finish)
    if already:
        print(f"{already} of {len(images)} images already fitted in {out}: skipped")
    failed, unwritable = list(unreadable), []
    written = 0
    body_model = shared_body_model(args.model) if todo or finish else None

    def write(path: Path, image, result) -> bool:
        nonlocal written
        try:
            _write_outputs(_output_name(path, target), image, result, out, wanted, settings, body_model)
        except (OSError, ValueError) as exc:  # ValueError: an overlay OpenCV could not encode
            unwritable.append(shown(path))
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            _log.error("fitlib: could not write the outputs of %s in %s: %s; it is not marked done", shown(path),
                       out, reason)
            if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
                raise _StopRun(f"the disk of {out} is full or read-only") from None
            return False
        written += 1
        return True

    try:
        # miniters=1: every image moves the bar (tqdm's adaptive miniters would skip the quick writes that
        # follow a batch's long fit, leaving the bar at 0 % until the next batch)
        with tqdm(total=len(todo) + len(finish), desc="fitting", unit="image", miniters=1, mininterval=0,
                  disable=len(todo) + len(finish) < 2) as bar:
            for path, result in finish:
                try:
                    image = load_image(path, max_pixels=args.max_pixels)
                except (ValueError, FileNotFoundError) as exc:
                    failed.append(shown(path))
                    _log.warning("fitlib: skipped %s: %s", shown(path), exc)
                else:
                    if write(path, image, result):
                        tqdm.write(f"{shown(path)}: outputs completed from the previous fit")
                bar.update(1)
            queue = list(todo)
            while queue:
                chunk, pixels, held = [], [], 0
                while queue and len(chunk) < args.batch_images and held < CHUNK_PIXELS:
                    path = queue.pop(0)
                    try:
                        image = load_image(path, max_pixels=args.max_pixels)
                    except (ValueError, FileNotFoundError) as exc:
                        failed.append(shown(path))
                        _log.warning("fitlib: skipped %s: %s", shown(path), exc)
                        bar.update(1)
                        continue
                    chunk.append(path)
                    pixels.append(image)
                    held += image.shape[0] * image.shape[1]
                if not chunk:
                    continue
                bar.set_postfix_str(f"fitting {len(chunk)} image(s) in one batch")
                results = fit_batch(pixels, keypoints, config=args.config, model=args.model, device=args.device,
                                    regressor=args.regressor)
                bar.set_postfix_str("writing")
                for path, image, result in zip(chunk, pixels, results):
                    if write(path, image, result):
                        errs = ", ".join(f"{e:.1f}" if math.isfinite(e) else "-" for e in result.reprojection_error)
                        tqdm.write(f"{shown(path)}: {int(result.fitted.sum())}/{len(result)} people fitted; "
                                   f"reprojection error px [{errs}]")
                    bar.update(1)
                del pixels, results
    except KeyboardInterrupt:
        _log.error("\nfitlib: interrupted: %d of %d images done in %s (%d in this run); run the same command again "
                   "to resume", already + written, len(images), out, written)
        return 130
    except _StopRun as stop:
        _log.error("fitlib: stopped: %s; %d of %d images done in %s; free some space and run the same command again "
                   "to resume", stop, already + written, len(images), out)
        return 1
    status = 0
    if failed:
        _log.error("fitlib: %d image(s) could not be read and were skipped: %s", len(failed), failed)
        status = 1
    if unwritable:
        _log.error("fitlib: the outputs of %d image(s) could not be written: %s", len(unwritable), unwritable)
        status = 1
    return max(status, video_status)


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("fitlib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _TqdmHandler(logging.Handler):
    """Log records as lines on (the current) ``sys.stderr``, through ``tqdm.write`` so that a progress bar
    stays intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must not raise
            self.handleError(record)


def _log_to_stderr() -> None:
    """Show fitlib's log records (INFO and up, unless the ``fitlib`` logger was given a level) on stderr, once
    per process: the command line's reporting. The library itself only logs."""
    logger = logging.getLogger("fitlib")
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


class _StopRun(Exception):
    """Raised inside ``fitlib fit`` when no further image can be written (a full or read-only disk)."""


def _cmd_detect(args) -> int:
    from fitlib.detection import detect
    from fitlib.io.atomic import atomic_write

    kw = {}
    if args.backend == "mmpose":
        if not (args.config and args.checkpoint):
            raise SystemExit("fitlib: --backend mmpose needs --config and --checkpoint (a local mmpose model)")
        for name, value in (("config", args.config), ("checkpoint", args.checkpoint)):
            if not Path(value).is_file():
                raise SystemExit(f"fitlib: the mmpose {name} {value} does not exist (or is not a file)")
        kw = {"config": args.config, "checkpoint": args.checkpoint, "trust_checkpoint": args.trust_checkpoint}
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir() or args.out.endswith(("/", "\\")):
            raise SystemExit(f"fitlib: --out {args.out} is a folder; give the JSON file to write, e.g. "
                             f"{out / (Path(args.image).stem + '.json')}")
        if not out.parent.is_dir():
            raise SystemExit(f"fitlib: the folder of --out {out} does not exist")
    kp = detect(args.image, backend=args.backend, **kw)
    data = {"layout": kp.layout, "keypoints": kp.keypoints.tolist(), "boxes": kp.boxes.tolist(),
            "scores": kp.scores.tolist(), "image_size": list(kp.image_size)}
    text = json.dumps(data)
    if out is not None:
        with atomic_write(out) as fh:
            fh.write(text.encode())
    else:
        print(text)
    return 0


def _cmd_build_model(args) -> int:
    from fitlib.body.open_model import (BuildConfig, build_open_model, cache_problem, check_cache_writable,
                                        open_model_path, save_model_file)

    path = open_model_path(BuildConfig())
    if not args.force:
        problem = cache_problem(path)
        if problem is None:
            print(f"open model already built: {path}")
            return 0
        if path.exists():
            print(f"cached open model {path} {problem}: building it again")
    check_cache_writable(path.parent)  # before the 3-minute build, not after it
    data, report = build_open_model(BuildConfig())
    save_model_file(data, path)
    print(f"open model written to {path}: shape variance explained {report.variance_explained:.4%}, "
          f"joint regressor error {report.regressor_error_mean * 1000:.2f} mm, {report.seconds:.0f} s")
    return 0


def _save_npz(arrays: dict, out: str) -> Path:
    import numpy as np

    from fitlib.io.atomic import atomic_write

    path = Path(out)
    with atomic_write(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def _cmd_train_prior(args) -> int:
    from fitlib.body import prior_training
    from fitlib.datasets import mocap

    joints = {"observed": mocap.OBSERVED_JOINTS, "all": prior_training.BODY_JOINTS}.get(args.gmm_joints) \
        or tuple(args.gmm_joints.split(","))
    arrays = prior_training.train(args.amass, joints, k=args.components, step=args.step)
    path = _save_npz(arrays, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    print("\n".join(str(r) for r in arrays["training_data"]))
    return 0


def _cmd_extract_mocap(args) -> int:
    import tempfile

    from fitlib.datasets import mocap_extract as mx

    with tempfile.TemporaryDirectory() as tmp:
        arrays = mx.extract(mx.wheel(args.pybullet_wheel, mx.PYBULLET, Path(tmp)),
                            mx.wheel(args.holosoma_wheel, mx.HOLOSOMA, Path(tmp)))
    path = _save_npz(arrays, args.out)
    frames = {k.split("/")[0]: len(v) for k, v in arrays.items() if k.endswith("/poses")}
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB): {frames}")
    return 0


def _cmd_train_regressor(args) -> int:
    from fitlib.training.trainer import train

    if args.loop:
        from fitlib.training.loop import train_loop

        if not args.store or not args.unlabelled:
            raise ValueError("--loop needs --store and --unlabelled SOURCE...")
        rows = train_loop(args.config, args.out, args.store, args.unlabelled, init_weights=args.init,
                          ray=None if args.ray is None else (True if args.ray == "" else args.ray),
                          progress=not args.quiet, body_model=args.model)
        for r in rows:
            val = r["val"]["val_pa_mpjpe14"] if r.get("val") else float("nan")
            print(f"round {r['round']}: val PA-MPJPE-14 {val:.1f} mm" +
                  (f"; labels {r['labels']}, {r['pseudo_labels']} valid" if "labels" in r else "") + f"; {r['weights']}")
        return 0
    info = {"command": f"fitlib train-regressor --config {args.config} --out {args.out}"}
    if args.ray is not None:
        from fitlib.training.ray_train import train_on_ray

        res = train_on_ray(args.config, args.out, address=args.ray or None, workers=args.workers, use_gpu=args.gpu,
                           model=args.model, info=info, init_weights=args.init, encoder_weights=args.encoder_weights)
    else:
        res = train(args.config, args.out, args.model, progress=not args.quiet, info=info, init_weights=args.init,
                    encoder_weights=args.encoder_weights)
    with_3d = math.isfinite((res.get("last") or {}).get("val_pa_mpjpe14", math.nan))
    what = "PA-MPJPE-14" if with_3d else "2D error"
    print(f"trained {res['step']} steps in {res['seconds'] / 60:.1f} min; best validation {what} "
          f"{res['best_val']:.1f} {'mm' if with_3d else 'px'}; weights in {Path(args.out) / 'regressor.pt'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fitlib", description="Fit SMPL bodies to people in images.")
    parser.add_argument("--version", action="version", version=f"fitlib {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit an image or a folder of images (detects people when no keypoints are given)")
    p.add_argument("image", help="an image or video file (.mp4 .avi .mov .mkv .webm), or a folder of them")
    p.add_argument("--keypoints", help="keypoints for the image: mmpose predictions, an OpenPose frame or COCO "
                   "keypoint annotations (JSON)")
    p.add_argument("--out", required=True, help="output folder: result JSON, meshes, overlay PNG")
    p.add_argument("--config", default=None, help="fitting config name or YAML path (default: default)")
    p.add_argument("--regressor", default=None, help="a regressor checkpoint whose estimate starts the fits: fitlib's "
                   "(keypoint or image network) or SPIN's model_checkpoint.pt")
    p.add_argument("--model", default="open", help="'open' or an SMPL model file/folder")
    p.add_argument("--mesh-format", default="obj", choices=["obj", "ply", "glb"])
    p.add_argument("--no-meshes", action="store_true", help="write no meshes")
    p.add_argument("--no-overlay", action="store_true", help="write no overlay picture")
    p.add_argument("--no-side-view", action="store_true",
                   help="overlay without the side view beside the photo (the people turned 90 degrees)")
    p.add_argument("--result-format", default="json", choices=["json", "npz"],
                   help="file format of each image's result (default json; same schema, docs/RESULT_SCHEMA.md)")
    p.add_argument("--device", default=None, help="torch device to fit on, e.g. cpu, cuda, cuda:1 (default cpu)")
    p.add_argument("--batch-images", type=_positive_int, default=16,
                   help="images whose people are fitted in one batch")
    p.add_argument("--overwrite", action="store_true", help="refit images that already have a result")
    p.add_argument("--every", type=_positive_int, default=1, help="videos: fit every n-th frame")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="videos: fit at most this many frames")
    p.add_argument("--max-pixels", type=_positive_int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images with more pixels than this (default {DEFAULT_MAX_PIXELS:,})")
    p.set_defaults(run=_cmd_fit)
    p = sub.add_parser("detect", help="detect people's 2D keypoints (bundled detector or mmpose)")
    p.add_argument("image")
    p.add_argument("--backend", default="default", choices=["default", "mmpose"])
    p.add_argument("--config", help="mmpose model config (with --backend mmpose)")
    p.add_argument("--checkpoint", help="mmpose checkpoint (with --backend mmpose)")
    p.add_argument("--out", help="JSON file (default: print)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle the mmpose checkpoint in full if torch's safe loader refuses it (it can run "
                        "code: only for files you trust)")
    p.set_defaults(run=_cmd_detect)
    p = sub.add_parser("build-model", help="build and cache the open body model from anny")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.set_defaults(run=_cmd_build_model)
    p = sub.add_parser("train-prior", help="train a pose prior from mocap (the shipped clips or AMASS files)")
    p.add_argument("--amass", nargs="*", help="AMASS-style .npz files with 'poses' (default: the shipped mocap)")
    p.add_argument("--gmm-joints", default="observed",
                   help="'observed' (joints the shipped mocap measures), 'all', or comma-separated joint names")
    p.add_argument("--components", type=_positive_int, default=12, help="mixture components")
    p.add_argument("--step", type=_positive_int, default=1, help="keep every step-th frame")
    p.add_argument("--out", default="pose_prior.npz", help="output .npz (the shipped one: priors/pose_prior.npz)")
    p.set_defaults(run=_cmd_train_prior)
    p = sub.add_parser("extract-mocap", help="extract the shipped mocap clips from the pybullet and holosoma wheels")
    p.add_argument("--pybullet-wheel", help="path to the pybullet 3.2.7 wheel (default: pip download)")
    p.add_argument("--holosoma-wheel", help="path to the holosoma-retargeting 0.1.0 wheel (default: pip download)")
    p.add_argument("--out", default="mocap_poses.npz", help="output .npz (the shipped one: priors/mocap_poses.npz)")
    p.set_defaults(run=_cmd_extract_mocap)
    p = sub.add_parser("train-regressor", help="train a regressor: keypoints on synthetic samples, or images on "
                                                "SPIN-format sets (resumes a killed run in --out)")
    p.add_argument("--config", default="regressor", help="training config name (configs/train/) or YAML path")
    p.add_argument("--out", required=True, help="run folder: checkpoint, log.jsonl, loss_curve.png, regressor.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--loop", action="store_true", help="training in the loop: label --unlabelled with the regressor, "
                                                        "train on the store's pseudo-labels, repeat (loop: in the config)")
    p.add_argument("--store", help="with --loop: the label store")
    p.add_argument("--unlabelled", nargs="+", help="with --loop: label sources with 2D only (see fitlib label)")
    p.add_argument("--init", help="start from these weights (with --loop: instead of a first run)")
    p.add_argument("--encoder-weights", help="an image regressor's ResNet-50 start: torchvision ImageNet or SPIN weights")
    p.add_argument("--model", default="open", help="the body model trained for: 'open' or an SMPL file/folder (SPIN-format "
                                                   "sets' SMPL ground truth is SMPL's)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="train data-parallel on Ray Train (with --loop: label on Ray); no ADDRESS: this machine's cluster "
                        "or a new local one")
    p.add_argument("--workers", type=_positive_int, default=2, help="with --ray: data-parallel workers")
    p.add_argument("--gpu", action="store_true", help="with --ray: one GPU per worker")
    p.set_defaults(run=_cmd_train_regressor)
    from fitlib.labels.cli import register as register_labels

    register_labels(sub)
    args = parser.parse_args(argv)
    _log_to_stderr()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        _log.error("\nfitlib: interrupted")
        return 130
    except (ValueError, FileNotFoundError, ImportError) as exc:
        _log.error("fitlib: error: %s", exc)
        return 2
    except OSError as exc:  # e.g. a full disk or a permission error while writing
        _log.error("fitlib: error: %s%s", exc.strerror or exc, f": {exc.filename}" if exc.filename else "")
        return 1


if __name__ == "__main__":
    sys.exit(main())
