"""Speed and agreement of fitlib's keypoint detectors on real photos.

Compares detector variants (the bundled BlazePose "full" landmark model with 2 or 1 detection
levels, and the "lite" model if ``--lite`` gives its file) on the photos in tests/data (plus any
image paths given):

* speed: median wall time of ``fitlib.detect`` per image over ``--runs`` runs, variants
  alternated run by run (the machine is shared: medians, not means);
* agreement with the reference variant (the first one): people matched greedily by box IoU
  (> 0.3); on COCO-17 joints confident (>= 0.5) in both, the mean distance divided by the
  reference box's longer side, and PCK (fraction of joints closer than 0.05 / 0.1 of it).

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/detectors.py [--runs 7] [--lite FILE] [extra images...]

The lite model is not shipped; get it with
``npm pack @mediapipe/pose@0.5.1675469404 && tar xzf mediapipe-pose-0.5.1675469404.tgz`` (then
``--lite package/pose_landmark_lite.tflite``). More photos: ``pip download --no-deps
ultralytics==8.4.190`` holds ``ultralytics/assets/bus.jpg`` and ``zidane.jpg`` (AGPL package:
used here, not shipped).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from fitlib.detection import detect
from fitlib.detection.keypoints import box_iou
from fitlib.io.images import load_image

VARIANTS = {  # name -> detect() keyword arguments; the first is the reference
    "full": dict(model="full"),
    "full-1level": dict(model="full", levels=1),
}


def agreement(ref, other) -> tuple[list[float], int]:
    """Per-joint normalised distances between matched people, and the number of matched people."""
    dists, used, matched = [], set(), 0
    for i in range(len(ref)):
        ious = [(float(box_iou(ref.boxes[i], other.boxes[j])[0, 0]), j) for j in range(len(other)) if j not in used]
        if not ious or max(ious)[0] <= 0.3:
            continue
        j = max(ious)[1]
        used.add(j)
        matched += 1
        a, b = ref.keypoints[i], other.keypoints[j]
        ok = (a[:, 2] >= 0.5) & (b[:, 2] >= 0.5)
        size = max(ref.boxes[i, 2] - ref.boxes[i, 0], ref.boxes[i, 3] - ref.boxes[i, 1])
        dists += list(np.linalg.norm(a[ok, :2] - b[ok, :2], axis=1) / size)
    return dists, matched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", help="extra image paths")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lite", help="path of pose_landmark_lite.tflite (compared too)")
    args = parser.parse_args()
    if args.lite:
        VARIANTS["lite"] = dict(model=args.lite)
    data = Path(__file__).resolve().parent.parent / "tests" / "data"
    paths = sorted(p for p in data.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")) + [Path(p) for p in args.images]
    images = {p.name: load_image(p) for p in paths}
    for name, img in images.items():  # warm-up: load the models, first-call allocations
        for kw in VARIANTS.values():
            detect(img, **kw)

    times = {(n, v): [] for n in images for v in VARIANTS}
    results = {}
    for _ in range(args.runs):
        for name, img in images.items():
            for v, kw in VARIANTS.items():
                t = time.perf_counter()
                results[name, v] = detect(img, **kw)
                times[name, v].append(time.perf_counter() - t)

    ref_name = next(iter(VARIANTS))
    print(f"median ms per image over {args.runs} runs (people found)")
    print(f"{'image':<18}" + "".join(f"{v:>18}" for v in VARIANTS))
    for name, img in images.items():
        cells = [f"{1000 * statistics.median(times[name, v]):9.0f} ({len(results[name, v])})" for v in VARIANTS]
        print(f"{name[:17]:<18}" + "".join(f"{c:>18}" for c in cells) + f"   {img.shape[1]}x{img.shape[0]}")
    print(f"\nagreement with '{ref_name}' on COCO-17 joints confident in both (distance / box side)")
    for v in list(VARIANTS)[1:]:
        dists, matched, people = [], 0, 0
        for name in images:
            d, m = agreement(results[name, ref_name], results[name, v])
            dists += d
            matched += m
            people += len(results[name, ref_name])
        d = np.array(dists)
        print(f"{v:<14} matched {matched}/{people} people, {len(d)} joints: mean {d.mean():.4f}, "
              f"median {np.median(d):.4f}, PCK@0.05 {np.mean(d < 0.05):.3f}, PCK@0.1 {np.mean(d < 0.1):.3f}")


if __name__ == "__main__":
    main()
