"""Throughput of a label job (regress -> refine -> compare-and-replace in a store): samples/s in this process
against a local Ray cluster of ``--workers`` workers, each run into a fresh store, alternated, medians.

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/label_throughput.py --source /tmp/syn3dpw [--repeats 3]
(Ray's start-up and the workers' model loading are timed too: a short job pays them, a long one does not;
``--warm`` reports the Ray runs after a first shard per worker, from the job's own progress callback.)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fitlib.labels import items, run_label_job


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", nargs="+", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    import ray

    ray.init(num_cpus=args.workers, log_to_driver=False, include_dashboard=False)
    src = list(items(args.source))
    people = sum(len(it.keypoints) for it in src if it.keypoints is not None)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    warm: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for mode in ("local", "ray"):
                marks: list[tuple[float, int]] = []
                t0 = time.perf_counter()
                s = run_label_job(src, Path(tmp) / f"{mode}{r}.sqlite", ray=mode == "ray", workers=args.workers,
                                  progress=False, on_shard=lambda sm: marks.append((time.perf_counter(), sm.fitted)))
                times[mode].append(time.perf_counter() - t0)
                if mode == "ray" and len(marks) > args.workers:
                    (ta, na), (tb, nb) = marks[args.workers - 1], marks[-1]
                    warm.append((nb - na) / max(tb - ta, 1e-9))
                print(f"{mode:5s} run {r}: {s.fitted} people in {times[mode][-1]:.1f} s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"{people} people, {len(src)} items; median people/s: local {people / med['local']:.1f}, Ray x{args.workers} "
          f"{people / med['ray']:.1f} (ratio {med['local'] / med['ray']:.2f}); Ray after its start-up "
          f"{statistics.median(warm) if warm else float('nan'):.1f} people/s")


if __name__ == "__main__":
    main()
