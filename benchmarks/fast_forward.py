"""Speed of the fast joints-and-keypoints forward against the full mesh forward, with gradients.

For each body model (the open model, plus any SMPL-layout file given with ``--model``) and batch
size (1, 64, 512 by default), one step is: forward the same random inputs (plausible poses,
betas ~ N(0, 1), a translation), take the sum of the COCO-17 keypoints and backpropagate to
pose, betas and transl.  Variants:

* ``full``: ``BodyModel.forward(..., vertices=True, layout="coco17")`` (the whole mesh through smplx);
* ``fast``: ``BodyModel.forward(..., vertices=False, layout="coco17")`` (joints + the few keypoint vertices).

The variants are alternated step by step (the machine is shared and noisy) after one warm-up
step each; the table gives median wall times and the speed-up full / fast.  The script also
checks that both variants give the same keypoints and gradients.

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/fast_forward.py [--batches 1 64 512] [--repeats 1.0]
        [--model path/to/SMPL_NEUTRAL.pkl ...] [--dtype float32]
(OMP_WAIT_POLICY=PASSIVE is also set at the top of this script, before torch is imported.)
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from fitlib.body.model import load_body_model  # noqa: E402
from fitlib.body.open_model import sample_plausible_poses  # noqa: E402

BASE_REPEATS = {1: 40, 64: 15, 512: 5}
"""Timed steps per variant at each batch size (scaled by ``--repeats``; 5 for other sizes)."""


def make_inputs(batch: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pose = sample_plausible_poses(batch, seed, dtype=dtype)
    pose[:, 0] = torch.randn(batch, 3, generator=g, dtype=dtype) * 0.5
    betas = torch.randn(batch, 10, generator=g, dtype=dtype)
    transl = torch.randn(batch, 3, generator=g, dtype=dtype)
    return pose, betas, transl


def step(body, inputs, full: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    pose, betas, transl = (x.detach().clone().requires_grad_(True) for x in inputs)
    out = body(pose, betas, transl, layout="coco17", vertices=full)
    out.keypoints.sum().backward()
    return out.keypoints.detach(), (pose.grad, betas.grad, transl.grad)


def time_model(body, batches: list[int], scale: float, dtype: torch.dtype) -> list[dict]:
    rows = []
    for batch in batches:
        inputs = make_inputs(batch, dtype)
        kp_full, g_full = step(body, inputs, True)  # warm-up, and the agreement check
        kp_fast, g_fast = step(body, inputs, False)
        kp_diff = float((kp_full - kp_fast).abs().max())
        grad_diff = max(float(((a - b).abs().max() / a.abs().max().clamp_min(1e-12))) for a, b in zip(g_full, g_fast))
        times = {True: [], False: []}
        for _ in range(max(3, round(BASE_REPEATS.get(batch, 5) * scale))):
            for full in (True, False):
                start = time.perf_counter()
                step(body, inputs, full)
                times[full].append(time.perf_counter() - start)
        full_ms, fast_ms = (statistics.median(times[f]) * 1000 for f in (True, False))
        rows.append({"model": body.name, "V": body.num_vertices, "batch": batch, "full": full_ms, "fast": fast_ms,
                     "n": len(times[True]), "kp_diff": kp_diff, "grad_diff": grad_diff})
        print(f"  {body.name} batch {batch}: full {full_ms:.2f} ms, fast {fast_ms:.2f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], help="an SMPL-layout model file (repeatable)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    ap.add_argument("--repeats", type=float, default=1.0, help="scale of the number of timed steps")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {args.dtype}, CPU")
    rows = []
    for model in ["open"] + args.model:
        rows += time_model(load_body_model(model, dtype=dtype), args.batches, args.repeats, dtype)
    print()
    print("Forward + backward (d/d pose, betas, transl of the sum of COCO-17 keypoints), median wall time")
    print()
    print("| model | vertices | batch | full (ms) | fast (ms) | speed-up | steps | max keypoint diff (m) "
          "| max rel. grad diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['V']} | {r['batch']} | {r['full']:.2f} | {r['fast']:.2f} "
              f"| {r['full'] / r['fast']:.1f}x | {r['n']} | {r['kp_diff']:.1e} | {r['grad_diff']:.1e} |")


if __name__ == "__main__":
    main()
