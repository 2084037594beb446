"""Detect 2D keypoints on 3DPW's images with fitlib's detection step, for ``threedpw.py --keypoints FILE``.

For every sequence file under ``<root>/sequenceFiles/<split>/`` and every pose frame ``t`` the image
``<root>/imageFiles/<sequence>/image_{img_frame_ids[t]:05d}.jpg`` is run through ``fitlib.detect``
(the bundled detector, or mmpose with ``--backend mmpose --config --checkpoint``).  Detections are
assigned to the sequence's people by matching them to the dataset's own ``poses2d`` of that frame
(Hungarian assignment on the mean distance of the points confident in both, accepted below
``--max-distance`` times the person's 2D size); a person without a detection gets confidence 0
(the fitter then flags it not fitted, and the benchmark counts it).

Output: an ``.npz`` with one array ``"<sequence>/<person>"`` [T, 17, 3] (x px, y px, confidence,
COCO-17) per person and ``layout = "coco17"``: exactly what ``threedpw.py --keypoints`` reads.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/detect_3dpw.py --root /data/3DPW --split test --out dets.npz
    python benchmarks/threedpw.py --root /data/3DPW --smpl-dir /models/smpl --keypoints dets.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from fitlib.body.layouts import convert_keypoints
from fitlib.datasets import threedpw
from fitlib.detection.matching import associate

Detector = Callable[[Path], "object"]
"""A function from an image path to :class:`fitlib.Keypoints`."""


def detect_sequences(root: str | Path, split: str = "test", detector: Detector | None = None,
                     max_distance: float = 0.5) -> dict[str, np.ndarray]:
    """``{"<sequence>/<person>": [T, 17, 3]}`` COCO-17 detections for every person of every sequence."""
    if detector is None:
        import fitlib

        detector = fitlib.detect
    root = Path(root)
    files = sorted((root / "sequenceFiles" / split).glob("*.pkl"))
    if not files:
        raise FileNotFoundError(f"no sequence files in {root / 'sequenceFiles' / split}")
    out: dict[str, np.ndarray] = {}
    for path in files:
        data = threedpw.load_sequence_file(path)
        name = str(data["sequence"])
        frames = np.asarray(data["img_frame_ids"]).reshape(-1)
        refs = [threedpw.openpose18_to_coco17(np.asarray(p2d, np.float64).transpose(0, 2, 1))
                for p2d in data["poses2d"]]
        tracks = [np.zeros((len(frames), 17, 3)) for _ in refs]
        for t, frame in enumerate(frames):
            image = root / "imageFiles" / name / f"image_{int(frame):05d}.jpg"
            if not image.is_file():
                raise FileNotFoundError(f"{name}: image {image} is missing")
            found = detector(image)
            dets = convert_keypoints(found.keypoints, found.layout, "coco17") if len(found.keypoints) else \
                np.zeros((0, 17, 3))
            match = associate(np.nan_to_num(dets), np.stack([r[t] for r in refs]), max_distance)
            for p, d in enumerate(match):
                if d >= 0:
                    tracks[p][t] = np.nan_to_num(dets[d])
        for p, track in enumerate(tracks):
            out[f"{name}/{p}"] = track
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="3DPW root (sequenceFiles/, imageFiles/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--backend", default="default", choices=["default", "mmpose"])
    ap.add_argument("--config", help="mmpose config (with --backend mmpose)")
    ap.add_argument("--checkpoint", help="mmpose checkpoint (with --backend mmpose)")
    ap.add_argument("--max-distance", type=float, default=0.5)
    args = ap.parse_args(argv)
    import fitlib

    kw = {"config": args.config, "checkpoint": args.checkpoint} if args.backend == "mmpose" else {}
    tracks = detect_sequences(args.root, args.split, lambda p: fitlib.detect(p, backend=args.backend, **kw),
                              args.max_distance)
    out = Path(args.out)
    np.savez_compressed(out, layout=np.array("coco17"), **tracks)
    found = sum(int((t[..., 2] > 0).any(-1).sum()) for t in tracks.values())
    total = sum(len(t) for t in tracks.values())
    print(f"{found} of {total} person-frames detected; written to {out}")
    return out


if __name__ == "__main__":
    main()
