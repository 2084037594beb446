"""The ``fitlib label`` and ``fitlib labels`` commands (registered by :func:`fitlib.cli.main`)."""
from __future__ import annotations

import argparse
import json

import numpy as np


def _image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size must be WIDTHxHEIGHT in pixels, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"image size must be positive, got {text!r}")
    return h, w


def _cmd_label(args) -> int:
    from fitlib.labels import items, run_label_job

    sources = items(args.sources, every=args.every, images_dir=args.images, image_size=args.image_size,
                    split=args.split)
    ray = None if args.ray is None else (True if args.ray == "" else args.ray)
    s = run_label_job(sources, args.store, model=args.model, config=args.config, label_config=args.label_config,
                      device=args.device, round=args.round, ray=ray, workers=args.workers, progress=not args.quiet)
    for dataset, item, why in s.failures[:20]:
        print(f"failed: {dataset} {item}: {why}")
    if len(s.failures) > 20:
        print(f"... and {len(s.failures) - 20} more failures")
    print(f"{s.line()}; {s.seconds:.1f} s; store {args.store}")
    return 1 if s.failed else 0


def _cmd_labels_export(args) -> int:
    from fitlib.labels.export import export_store

    path, n = export_store(args.store, args.out, args.format, valid_only=not args.all)
    print(f"wrote {n} labels to {path} ({args.format})")
    return 0


def _cmd_labels_stats(args) -> int:
    from fitlib.labels.config import load_label_config
    from fitlib.labels.export import plot_histogram, store_stats

    st = store_stats(args.store)
    scores = st.pop("scores")
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        print(f"{st['labels']} labels: {st['valid']} valid, {st['has_smpl']} with SMPL parameters, "
              f"{st['ground_truth']} ground truth, {st['replaced']} replaced at least once")
        for name, n in sorted(st["datasets"].items()):
            print(f"  {name}: {n}")
        if st["score_quantiles"]:
            q = st["score_quantiles"]
            print("score (canonical px): " + ", ".join(f"{k}% {v:.2f}" for k, v in q.items()))
        for r in st["rounds"]:
            print(f"round {r['round']}: {r['items']} items; " + ", ".join(
                f"{k} {r.get(k, 0)}" for k in ("new", "replaced", "kept", "invalid")))
    if args.plot:
        path = plot_histogram(np.asarray(scores), args.plot, load_label_config(args.label_config).rules.max_score)
        print(f"histogram: {path}")
    return 0


def register(sub) -> None:
    """Add ``label`` and ``labels`` to the ``fitlib`` command's subparsers."""
    p = sub.add_parser("label", help="make pseudo-labels: fit every person of image folders, videos, keypoint "
                                     "files or 3DPW-format sets, keeping each one's best fit in a store")
    p.add_argument("sources", nargs="+", help="image files or folders (recursive), videos, keypoint JSON files "
                                              "(COCO annotations, OpenPose, mmpose) or OpenPose folders, 3DPW-format sets")
    p.add_argument("--store", required=True, help="the label store (SQLite file; created if missing)")
    p.add_argument("--config", default=None, help="fitting config (default: default, regress -> refine)")
    p.add_argument("--label-config", default=None, help="label config: margin, validity rules (default: labels)")
    p.add_argument("--model", default="open", help="'open' or an SMPL model file/folder")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    p.add_argument("--every", type=int, default=1, help="keep every n-th video frame")
    p.add_argument("--images", default=None, help="folder of the images of keypoint files (default: beside them)")
    p.add_argument("--image-size", type=_image_size, default=None, help="WIDTHxHEIGHT of OpenPose files without images")
    p.add_argument("--split", default=None, help="3DPW split to read (default: all)")
    p.add_argument("--round", type=int, default=0, help="round number recorded with the labels")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help='run on a Ray cluster (pip install "fitlib[ray]"): this machine\'s or a local one, or ADDRESS')
    p.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_cmd_label)
    p = sub.add_parser("labels", help="export or summarise a label store")
    lsub = p.add_subparsers(dest="labels_command", required=True)
    q = lsub.add_parser("export", help="write the valid labels as a training file")
    q.add_argument("store")
    q.add_argument("--format", required=True, choices=["spin", "humandata", "npz"])
    q.add_argument("--out", required=True, help="output .npz")
    q.add_argument("--all", action="store_true", help="every label, also the invalid ones")
    q.set_defaults(run=_cmd_labels_export)
    q = lsub.add_parser("stats", help="counts, replacements per round, score histogram")
    q.add_argument("store")
    q.add_argument("--plot", help="write the score histogram to this PNG")
    q.add_argument("--label-config", default=None, help="draws its max_score on the histogram")
    q.add_argument("--json", action="store_true")
    q.set_defaults(run=_cmd_labels_stats)
