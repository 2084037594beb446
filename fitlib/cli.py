"""The ``fitlib`` command line: ``fitlib fit``, ``detect``, ``build-model``, ``train-prior``, ``extract-mocap``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def _images(target: Path) -> list[Path]:
    if target.is_dir():
        images = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        by_stem: dict[str, list[str]] = {}
        for p in images:
            by_stem.setdefault(p.stem, []).append(p.name)
        clashes = [names for names in by_stem.values() if len(names) > 1]
        if clashes:  # outputs are named by stem: x.jpg and x.png would overwrite each other's
            raise SystemExit(f"fitlib: images with the same name would write the same outputs: {clashes}; "
                             f"rename or move them")
        return images
    if not target.exists():
        raise SystemExit(f"fitlib: {target} does not exist")
    return [target]


def _done(result_file: Path) -> bool:
    """An image is done when its result file exists and loads (a damaged one is fitted again)."""
    from fitlib.result import FitResult

    if not result_file.exists():
        return False
    try:
        FitResult.load(result_file)
    except ValueError:
        return False
    return True


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _cmd_fit(args) -> int:
    """Fit images in chunks of ``--batch-images`` (their people in one optimiser batch); an image whose
    result JSON exists is skipped, so a killed run resumes where it stopped (results are written atomically).
    An image that cannot be read is reported and skipped (exit status 1 at the end), the others are fitted."""
    import cv2
    from tqdm import tqdm

    from fitlib.api import fit_batch
    from fitlib.io.images import load_image

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = _images(Path(args.image))
    if args.keypoints and len(images) != 1:
        raise SystemExit("fitlib: --keypoints goes with a single image")
    todo = [p for p in images if args.overwrite or not _done(out / f"{p.stem}.json")]
    if len(todo) < len(images):
        print(f"{len(images) - len(todo)} of {len(images)} images already fitted in {out}: skipped")
    keypoints = None
    if args.keypoints:
        from fitlib.detection import keypoints_from_mmpose

        keypoints = [keypoints_from_mmpose(json.loads(Path(args.keypoints).read_text()))]
    failed: list[str] = []
    with tqdm(total=len(todo), desc="fitting", unit="image", disable=len(todo) < 2) as bar:
        for start in range(0, len(todo), args.batch_images):
            chunk, pixels = [], []
            for path in todo[start:start + args.batch_images]:
                try:
                    pixels.append(load_image(path))
                    chunk.append(path)
                except (ValueError, FileNotFoundError) as exc:
                    failed.append(path.name)
                    tqdm.write(f"fitlib: skipped {path.name}: {exc}", file=sys.stderr)
                    bar.update(1)
            if not chunk:
                continue
            results = fit_batch(pixels, keypoints, config=args.config, model=args.model)
            for path, image, result in zip(chunk, pixels, results):
                result.export_meshes(out / f"{path.stem}_meshes", fmt=args.mesh_format)
                overlay = result.render_overlay(image)
                cv2.imwrite(str(out / f"{path.stem}_overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
                result.save(out / f"{path.stem}.json")  # last: its presence marks the image done
                errs = ", ".join(f"{e:.1f}" for e in result.reprojection_error)
                tqdm.write(f"{path.name}: {int(result.fitted.sum())}/{len(result)} people fitted; "
                           f"reprojection error px [{errs}]")
                bar.update(1)
    if failed:
        print(f"fitlib: {len(failed)} image(s) could not be read and were skipped: {failed}", file=sys.stderr)
        return 1
    return 0


def _cmd_detect(args) -> int:
    from fitlib.detection import detect

    kw = {"config": args.config, "checkpoint": args.checkpoint} if args.backend == "mmpose" else {}
    if args.backend == "mmpose" and not (args.config and args.checkpoint):
        raise SystemExit("fitlib: --backend mmpose needs --config and --checkpoint (a local mmpose model)")
    kp = detect(args.image, backend=args.backend, **kw)
    data = {"layout": kp.layout, "keypoints": kp.keypoints.tolist(), "boxes": kp.boxes.tolist(),
            "scores": kp.scores.tolist(), "image_size": list(kp.image_size)}
    text = json.dumps(data)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


def _cmd_build_model(args) -> int:
    from fitlib.body.open_model import BuildConfig, build_open_model, open_model_path, save_model_file

    from fitlib.body.model_file import read_model_file

    path = open_model_path(BuildConfig())
    if path.exists() and not args.force:
        try:
            read_model_file(str(path))
            print(f"open model already built: {path}")
            return 0
        except ValueError as exc:
            print(f"cached open model is unreadable ({exc}): building it again")
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
    p.set_defaults(run=_cmd_fit)
    p = sub.add_parser("detect", help="detect people's 2D keypoints (bundled detector or mmpose)")
    p.add_argument("image")
    p.add_argument("--backend", default="default", choices=["default", "mmpose"])
    p.add_argument("--config", help="mmpose model config (with --backend mmpose)")
    p.add_argument("--checkpoint", help="mmpose checkpoint (with --backend mmpose)")
    p.add_argument("--out", help="JSON file (default: print)")
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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fitlib: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
