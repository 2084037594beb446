"""The ``fitlib`` command line: ``fitlib fit``, ``detect``, ``build-model``, ``train-prior``, ``extract-mocap``,
``train-regressor``."""
from __future__ import annotations

import argparse
import errno
import json
import math
import stat
import sys
from pathlib import Path

from fitlib.io.images import DEFAULT_MAX_PIXELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}

CHUNK_PIXELS = 200_000_000
"""Most pixels ``fitlib fit`` holds decoded at once (a chunk closes early when its images reach it; about
600 MB as RGB), whatever ``--batch-images`` says."""

MAX_KEYPOINT_FILE_BYTES = 64 * 2**20

_DISK_ERRORS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS}
"""Write errors after which every further write fails too: the run stops."""


def _images(target: Path) -> tuple[list[Path], list[str]]:
    """The images to fit (a folder's regular files with an image suffix, sorted, or the one file given) and
    the names skipped because they are not regular files (a FIFO, a device, a folder named ``x.jpg``),
    each reported on stderr. SystemExit for a missing target, a folder without images, or two images
    whose outputs would share a name."""
    if target.is_dir():
        images, skipped = [], []
        for p in sorted(target.iterdir()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                regular = stat.S_ISREG(p.stat().st_mode)
            except OSError:
                regular = False
            if regular:
                images.append(p)
            else:
                skipped.append(p.name)
                print(f"fitlib: skipped {p.name}: not a regular file (a FIFO, device, folder or broken link)",
                      file=sys.stderr)
        by_stem: dict[str, list[str]] = {}
        for p in images:
            by_stem.setdefault(p.stem, []).append(p.name)
        clashes = [names for names in by_stem.values() if len(names) > 1]
        if clashes:  # outputs are named by stem: x.jpg and x.png would overwrite each other's
            raise SystemExit(f"fitlib: images with the same name would write the same outputs: {clashes}; "
                             f"rename or move them")
        if not images:
            raise SystemExit(f"fitlib: no images to fit in {target} (looked for regular files ending in "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        return images, skipped
    if not target.exists():
        raise SystemExit(f"fitlib: {target} does not exist")
    return [target], []


def _previous(result_file: Path, out: Path, settings: dict, mesh_format: str):
    """What a previous run left for an image: ``("done", result)`` when its result loads, was made with
    these settings (config, body model, keypoints) and all its outputs exist in this mesh format;
    ``("outputs", result)`` when the fit can be reused but outputs are missing or in another format;
    ``("fit", None)`` otherwise (no result, a damaged one, or other settings)."""
    from fitlib.result import FitResult

    if not result_file.exists():
        return "fit", None
    try:
        result = FitResult.load(result_file)
    except (ValueError, FileNotFoundError):
        return "fit", None
    if any(result.provenance.get(k) != v for k, v in settings.items()):
        return "fit", None
    outputs = result.outputs
    meshes = outputs.get("meshes")
    overlay = outputs.get("overlay")
    complete = (outputs.get("mesh_format") == mesh_format and isinstance(meshes, list)
                and len(meshes) == int(result.fitted.sum()) and isinstance(overlay, str)
                and all(isinstance(m, str) and (out / m).is_file() for m in meshes + [overlay]))
    return ("done" if complete else "outputs"), result


def _write_outputs(path: Path, image, result, out: Path, mesh_format: str, settings: dict, body_model) -> None:
    """Write an image's meshes, overlay and (last, marking it done) result JSON, each atomically; the
    result records the settings that made it and the outputs written. Raises OSError as the disk does."""
    from fitlib.io.images import save_image

    meshes = result.export_meshes(out / f"{path.stem}_meshes", fmt=mesh_format, body_model=body_model)
    overlay = save_image(result.render_overlay(image, body_model=body_model), out / f"{path.stem}_overlay.png")
    result.provenance.update(settings)
    result.outputs = {"mesh_format": mesh_format, "meshes": [m.relative_to(out).as_posix() for m in meshes],
                      "overlay": overlay.name}
    result.save(out / f"{path.stem}.json")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _keypoints_source(path: str | None):
    """The ``--keypoints`` file's predictions (a one-image list for ``fit_batch``, or None to detect) and how
    results record them (its name and SHA-256, or ``"detector"``)."""
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
    return [keypoints_from_mmpose(data)], {"file": Path(path).name, "sha256": hashlib.sha256(raw).hexdigest()}


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
    from fitlib.body.model import model_identity, shared_body_model
    from fitlib.io.images import load_image
    from fitlib.result import config_hash

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"fitlib: --out {out} is a file, not a folder (results, meshes and overlays go into a "
                         "folder)")
    images, unreadable = _images(Path(args.image))
    if args.keypoints and len(images) != 1:
        raise SystemExit("fitlib: --keypoints goes with a single image")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"fitlib: cannot create the output folder {out}: {exc.strerror or exc}") from None
    keypoints, kp_source = _keypoints_source(args.keypoints)
    if args.model == "open":
        from fitlib.body.open_model import ensure_open_model

        ensure_open_model()  # verified (or built) now, so that its identity is the one the fits use
    settings = {"config_hash": config_hash(args.config), "body_model": model_identity(args.model),
                "keypoints": kp_source}
    todo: list[Path] = []
    finish = []  # (path, reusable result) whose outputs are missing or in another format
    for p in images:
        status, previous = ("fit", None) if args.overwrite else \
            _previous(out / f"{p.stem}.json", out, settings, args.mesh_format)
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
            _write_outputs(path, image, result, out, args.mesh_format, settings, body_model)
        except (OSError, ValueError) as exc:  # ValueError: an overlay OpenCV could not encode
            unwritable.append(path.name)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            tqdm.write(f"fitlib: could not write the outputs of {path.name} in {out}: {reason}; "
                       "it is not marked done", file=sys.stderr)
            if isinstance(exc, OSError) and exc.errno in _DISK_ERRORS:
                raise _StopRun(f"the disk of {out} is full or read-only") from None
            return False
        written += 1
        return True

    try:
        with tqdm(total=len(todo) + len(finish), desc="fitting", unit="image",
                  disable=len(todo) + len(finish) < 2) as bar:
            for path, result in finish:
                try:
                    image = load_image(path, max_pixels=args.max_pixels)
                except (ValueError, FileNotFoundError) as exc:
                    failed.append(path.name)
                    tqdm.write(f"fitlib: skipped {path.name}: {exc}", file=sys.stderr)
                else:
                    if write(path, image, result):
                        tqdm.write(f"{path.name}: outputs completed from the previous fit")
                bar.update(1)
            queue = list(todo)
            while queue:
                chunk, pixels, held = [], [], 0
                while queue and len(chunk) < args.batch_images and held < CHUNK_PIXELS:
                    path = queue.pop(0)
                    try:
                        image = load_image(path, max_pixels=args.max_pixels)
                    except (ValueError, FileNotFoundError) as exc:
                        failed.append(path.name)
                        tqdm.write(f"fitlib: skipped {path.name}: {exc}", file=sys.stderr)
                        bar.update(1)
                        continue
                    chunk.append(path)
                    pixels.append(image)
                    held += image.shape[0] * image.shape[1]
                if not chunk:
                    continue
                results = fit_batch(pixels, keypoints, config=args.config, model=args.model)
                for path, image, result in zip(chunk, pixels, results):
                    if write(path, image, result):
                        errs = ", ".join(f"{e:.1f}" if math.isfinite(e) else "-" for e in result.reprojection_error)
                        tqdm.write(f"{path.name}: {int(result.fitted.sum())}/{len(result)} people fitted; "
                                   f"reprojection error px [{errs}]")
                    bar.update(1)
                del pixels, results
    except KeyboardInterrupt:
        print(f"\nfitlib: interrupted: {already + written} of {len(images)} images done in {out} ({written} in this "
              "run); run the same command again to resume", file=sys.stderr)
        return 130
    except _StopRun as stop:
        print(f"fitlib: stopped: {stop}; {already + written} of {len(images)} images done in {out}; free some space "
              "and run the same command again to resume", file=sys.stderr)
        return 1
    status = 0
    if failed:
        print(f"fitlib: {len(failed)} image(s) could not be read and were skipped: {failed}", file=sys.stderr)
        status = 1
    if unwritable:
        print(f"fitlib: the outputs of {len(unwritable)} image(s) could not be written: {unwritable}", file=sys.stderr)
        status = 1
    return status


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

    info = {"command": f"fitlib train-regressor --config {args.config} --out {args.out}"}
    res = train(args.config, args.out, progress=not args.quiet, info=info)
    print(f"trained {res['step']} steps in {res['seconds'] / 60:.1f} min; best validation PA-MPJPE-14 "
          f"{res['best_val_pa_mpjpe14']:.1f} mm; weights in {Path(args.out) / 'regressor.pt'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fitlib", description="Fit SMPL bodies to people in images.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit an image or a folder of images (detects people when no keypoints are given)")
    p.add_argument("image", help="an image file or a folder of images")
    p.add_argument("--keypoints", help="mmpose predictions (JSON) for the image")
    p.add_argument("--out", required=True, help="output folder: result JSON, meshes, overlay PNG")
    p.add_argument("--config", default=None, help="fitting config name or YAML path (default: default)")
    p.add_argument("--model", default="open", help="'open' or an SMPL model file/folder")
    p.add_argument("--mesh-format", default="obj", choices=["obj", "ply"])
    p.add_argument("--batch-images", type=_positive_int, default=16,
                   help="images whose people are fitted in one batch")
    p.add_argument("--overwrite", action="store_true", help="refit images that already have a result")
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
    p = sub.add_parser("train-regressor", help="train the keypoint regressor (resumes a killed run in --out)")
    p.add_argument("--config", default="regressor", help="training config name (configs/train/) or YAML path")
    p.add_argument("--out", required=True, help="run folder: checkpoint, log.jsonl, loss_curve.png, regressor.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_train_regressor)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("\nfitlib: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"fitlib: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk or a permission error while writing
        print(f"fitlib: error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
