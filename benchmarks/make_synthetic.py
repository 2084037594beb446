"""Write the synthetic 3DPW-format test set (:mod:`fitlib.datasets.synthetic`) that ``benchmarks/threedpw.py``
runs on here: held-out real mocap driving the open model, seen by a hand-held phone camera, with
detector-like 2D corruption.

Usage:  python benchmarks/make_synthetic.py --out DIR [--sequences 4] [--frames 40] [--seed 0] [--clean]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fitlib.datasets.synthetic import Corruption, make_synthetic


def main(argv: list[str] | None = None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="root folder (gets sequenceFiles/<split>/*.pkl)")
    ap.add_argument("--sequences", type=int, default=4)
    ap.add_argument("--frames", type=int, default=40, help="image frames per sequence (fewer if a clip is short)")
    ap.add_argument("--fps", type=float, default=30.0, help="image frame rate (mocap is subsampled to it)")
    ap.add_argument("--max-people", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="test")
    ap.add_argument("--noise", type=float, default=Corruption.noise)
    ap.add_argument("--clean", action="store_true", help="exact projections: no noise, swaps, drops or poor points")
    ap.add_argument("--clips", help="comma-separated training clips to use instead of the held-out ones (2D-only "
                                    "data for training in the loop; never a test set)")
    args = ap.parse_args(argv)
    paths = make_synthetic(args.out, args.sequences, args.frames, args.seed, args.split, args.max_people, args.fps,
                           Corruption(0.0, 0.0, 0.0, 0.0) if args.clean else Corruption(noise=args.noise), args.clips.split(",") if args.clips else None)
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
