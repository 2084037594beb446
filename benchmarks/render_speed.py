"""Time fitlib's renderer on real fits (CPU): the rasteriser alone, the overlay (front view) and the overlay
with the side view, for messi5.jpg (548x342), the same fit scaled to 1280x800 and bus.jpg (810x1080).

    OMP_NUM_THREADS=1 python benchmarks/render_speed.py --threads 1 2

Prints one row per case: median and best wall time and best CPU time of the process over --repeats runs
(after one warm-up) and the pixels
the meshes cover; the overlay antialiases by rendering 2x finer (supersample 2, the default) unless said. The machine's load average is printed
first: on a shared machine the best time is the one to compare.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import fitlib
from fitlib.body.model import shared_body_model
from fitlib.render import rasterize_people

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _scaled(result: fitlib.FitResult, image: np.ndarray, width: int) -> tuple[fitlib.FitResult, np.ndarray]:
    """The fit and image as if the photo had been taken at ``width`` pixels (same camera, K scaled)."""
    import dataclasses

    s = width / image.shape[1]
    big = cv2.resize(image, (width, round(image.shape[0] * s)), interpolation=cv2.INTER_CUBIC)
    K = result.K.copy()
    K[:2] *= s
    K[:2, 2] += (s - 1) / 2
    kps = result.keypoints.copy()
    kps[..., :2] = kps[..., :2] * s + (s - 1) / 2
    proj = result.projected * s + (s - 1) / 2
    return dataclasses.replace(result, K=K, image_size=big.shape[:2], keypoints=kps, projected=proj), big


def _time(fn, repeats: int) -> tuple[float, float, float]:
    """(median wall time, best wall time, best CPU time of this process) over ``repeats`` calls, seconds."""
    fn()
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), min(times), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch {torch.__version__}")
    bm = shared_body_model("open")
    cases = []
    for name in ("messi5", "bus"):
        image = fitlib.load_image(DATA / f"{name}.jpg")
        result = fitlib.fit(image)
        cases.append((f"{name} {image.shape[1]}x{image.shape[0]}", result, image))
        if name == "messi5":
            r, big = _scaled(result, image, 1280)
            cases.append((f"messi5 scaled {big.shape[1]}x{big.shape[0]}", r, big))
    print("| case | threads | people | covered px | rasterise (1x) | overlay, supersample 1 | overlay | "
          "overlay + side view |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for label, result, image in cases:
            verts = result.vertices(bm)
            pr = rasterize_people(verts, bm.faces, result.K, result.image_size)
            covered = int((pr.person >= 0).sum())
            ras = _time(lambda: rasterize_people(verts, bm.faces, result.K, result.image_size), args.repeats)
            plain = _time(lambda: result.render_overlay(image, bm, supersample=1), args.repeats)
            front = _time(lambda: result.render_overlay(image, bm), args.repeats)
            side = _time(lambda: result.render_overlay(image, bm, side_view=True), args.repeats)
            cell = lambda t: f"{t[0] * 1000:.0f} ms (best {t[1] * 1000:.0f}, CPU {t[2] * 1000:.0f})"  # noqa: E731
            print(f"| {label} | {threads} | {int(result.fitted.sum())} | {covered:,} | {cell(ras)} | {cell(plain)} | {cell(front)} | "
                  f"{cell(side)} |", flush=True)


if __name__ == "__main__":
    main()
