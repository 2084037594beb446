"""Cost of many single-image ``fitlib.fit`` calls: the shared Fitter against rebuilding it every call.

``fitlib.fit`` keeps one :class:`fitlib.Fitter` (body model, config, priors) per process and reuses
it; before, every call built the body model and read the pose prior file again. Both variants fit
the same person (messi5.jpg's keypoints, detected once) with the ``fast`` config, calls alternating
shared / rebuilt; the script also counts body-model builds and prior-file reads during the shared
calls (both should be 0 after the first call).

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/fit_calls.py [--calls 100] [--config fast]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import fitlib  # noqa: E402
from fitlib.body import model as body_model  # noqa: E402
from fitlib.body import priors  # noqa: E402

IMAGE = Path(__file__).resolve().parents[1] / "tests" / "data" / "messi5.jpg"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--config", default="fast")
    args = ap.parse_args(argv)
    image = fitlib.load_image(IMAGE)
    kps = fitlib.detect(image)
    counts = {"models": 0, "priors": 0}
    init, load = body_model.BodyModel.__init__, priors.load_pose_prior

    def counting_init(self, *a, **k):
        counts["models"] += 1
        init(self, *a, **k)

    def counting_load(*a, **k):
        counts["priors"] += 1
        return load(*a, **k)

    body_model.BodyModel.__init__ = counting_init
    priors.load_pose_prior = counting_load

    def shared():
        return fitlib.fit(image, kps, config=args.config)

    def rebuilt():  # what fit() did before: a new body model and a fresh prior read per call
        fitter = fitlib.Fitter(body_model.load_body_model("open"), args.config)
        return fitter.fit(kps.keypoints, fitlib.camera.default_intrinsics(*image.shape[:2]), kps.layout,
                          image_size=image.shape[:2])

    shared(), rebuilt()  # warm-up: the shared Fitter is built here
    times = {"shared": [], "rebuilt": []}
    built = {name: {"models": 0, "priors": 0} for name in times}
    for _ in range(args.calls):
        for name, fn in (("shared", shared), ("rebuilt", rebuilt)):
            c0 = dict(counts)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            for k in counts:
                built[name][k] += counts[k] - c0[k]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.calls} single-image fit() calls each, config {args.config!r}, alternating")
    print("| variant | median per call (ms) | total (s) | body models built | prior files read |")
    print("|---|---|---|---|---|")
    for name, label in (("shared", "shared Fitter (fitlib.fit)"), ("rebuilt", "rebuilt every call")):
        print(f"| {label} | {1000 * med[name]:.1f} | {sum(times[name]):.1f} | {built[name]['models']} | "
              f"{built[name]['priors']} |")
    print(f"ratio rebuilt / shared (median per call): {med['rebuilt'] / med['shared']:.2f}x")


if __name__ == "__main__":
    main()
