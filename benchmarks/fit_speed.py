"""Speed of the fitter: the SPIN-style reference mode against fitlib's default, same inputs, one run.

Inputs: N people of the open model in random plausible poses (``sample_plausible_poses`` x 0.5),
betas ~ N(0, 0.8^2), turned up to +-60 degrees from facing the camera, 3-6 m away, seen by a
3DPW-like portrait camera (1080 x 1920 px, focal 1962 px); their COCO-17 keypoints projected,
plus 2 px Gaussian noise, confidence 0.9.  For each batch size the first ``batch`` people are
fitted by both variants, alternating variant by variant (the machine is shared and noisy):

* ``reference``: ``configs/spin.yaml`` (full mesh forward every iteration, Adam 100 + 100
  iterations, no early stop);
* ``default``: ``configs/default.yaml``;
* ``fast``: ``configs/fast.yaml`` (fewer starts and iterations); ``--variants`` picks others.

The table gives people per second from the median wall time, the ratio default / reference,
and each variant's accuracy on those people: median PA-MPJPE of the 14 LSP joints (mm) and
median reprojection error (px).

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/fit_speed.py [--batches 1 64 512] [--repeats 1.0]
        [--threads N] [--seed 0]
(OMP_WAIT_POLICY=PASSIVE is also set at the top of this script, before torch is imported.)
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import roma  # noqa: E402
import torch  # noqa: E402

from fitlib.evaluation import metrics  # noqa: E402
from fitlib.body.model import BodyModel, load_body_model  # noqa: E402
from fitlib.camera import project  # noqa: E402
from fitlib.fitting import Fitter  # noqa: E402
from fitlib.body.open_model import sample_plausible_poses  # noqa: E402

BASE_REPEATS = {1: 5, 64: 3, 512: 1}
"""Timed runs per variant at each batch size (scaled by ``--repeats``; 1 for other sizes)."""
REFERENCE_MAX_PEOPLE_REPEATED = 256
"""Above this batch size the reference variant is timed once (it takes minutes)."""
IMAGE_SIZE = (1920, 1080)
K_3DPW = torch.tensor([[1962.0, 0.0, 540.0], [0.0, 1962.0, 960.0], [0.0, 0.0, 1.0]])


def make_inputs(model: BodyModel, n: int, seed: int = 0, noise_px: float = 2.0):
    """Keypoints [n, 17, 3], intrinsics [3, 3] and ground-truth camera-frame joints [n, 24, 3]."""
    g = torch.Generator().manual_seed(seed)
    pose = sample_plausible_poses(n, seed, dtype=torch.float32) * 0.5
    yaw = (torch.rand(n, generator=g) * 2 - 1) * math.radians(60)
    facing = roma.rotvec_to_rotmat(torch.tensor([math.pi, 0.0, 0.0])).expand(n, 3, 3)
    turn = roma.rotvec_to_rotmat(torch.stack([torch.zeros(n), yaw, torch.zeros(n)], -1))
    pose[:, 0] = roma.rotmat_to_rotvec(facing @ turn)
    betas = torch.randn(n, 10, generator=g) * 0.8
    transl = torch.stack([(torch.rand(n, generator=g) - 0.5) * 1.0, (torch.rand(n, generator=g) - 0.5) * 0.6,
                          3.0 + 3.0 * torch.rand(n, generator=g)], -1)
    with torch.no_grad():
        out = model(pose, betas, transl, layout="coco17")
    xy = project(out.keypoints, K_3DPW) + noise_px * torch.randn(n, 17, 2, generator=g)
    kp = torch.cat([xy, torch.full((n, 17, 1), 0.9)], -1)
    return kp, K_3DPW.clone(), out.joints


def run_once(fitter: Fitter, kp, K):
    t0 = time.perf_counter()
    out = fitter.fit(kp, K, "coco17", image_size=IMAGE_SIZE)
    return time.perf_counter() - t0, out


def accuracy(model: BodyModel, out, gt_joints: torch.Tensor) -> tuple[float, float]:
    """(median PA-MPJPE of LSP-14 joints in mm, median reprojection error in px)."""
    with torch.no_grad():
        pj = model(out.params.pose, out.params.betas, out.params.transl).joints
    pa = 1000 * metrics.pa_mpjpe(metrics.lsp14(pj.double()), metrics.lsp14(gt_joints.double()))
    return float(pa.median()), float(out.reprojection_error.median())


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    ap.add_argument("--repeats", type=float, default=1.0, help="scale of the timed runs per variant")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="+", default=["default", "fast"],
                    help="configs timed against the reference (configs/spin.yaml)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_body_model("open")
    variants = {"reference": Fitter(model, "spin"), **{v: Fitter(model, v) for v in args.variants}}
    kp_all, K, gt_all = make_inputs(model, max(args.batches), args.seed)
    for fitter in variants.values():  # warm-up
        run_once(fitter, kp_all[:2], K)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, open model "
          f"({model.num_vertices} vertices), pose prior: {variants[args.variants[0]].config.pose_prior}", flush=True)
    rows = []
    for b in args.batches:
        kp, gt = kp_all[:b], gt_all[:b]
        n = max(1, round(BASE_REPEATS.get(b, 1) * args.repeats))
        times: dict[str, list[float]] = {v: [] for v in variants}
        outs = {}
        for r in range(n):
            for name, fitter in variants.items():
                if name == "reference" and b > REFERENCE_MAX_PEOPLE_REPEATED and r > 0:
                    continue
                secs, outs[name] = run_once(fitter, kp, K)
                times[name].append(secs)
                print(f"  batch {b:4d} {name:9s} run {r + 1}/{n}: {secs:8.2f} s", flush=True)
        res = {}
        for name in variants:
            med = statistics.median(times[name])
            pa, rep = accuracy(model, outs[name], gt)
            res[name] = {"batch": b, "variant": name, "runs": len(times[name]), "median_s": med,
                         "people_per_s": b / med, "pa_mpjpe14_mm": pa, "reproj_px": rep,
                         "mean_iterations": float(outs[name].iterations.float().mean())}
            rows.append(res[name])
        for name in args.variants:
            res[name]["ratio"] = res[name]["people_per_s"] / res["reference"]["people_per_s"]
    print()
    print("| batch | variant | runs | median time (s) | people/s | ratio to reference | "
          "PA-MPJPE-14 median (mm) | reprojection median (px) | mean iterations |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.1f}x" if "ratio" in r else ""
        print(f"| {r['batch']} | {r['variant']} | {r['runs']} | {r['median_s']:.2f} | {r['people_per_s']:.2f} | "
              f"{ratio} | {r['pa_mpjpe14_mm']:.1f} | {r['reproj_px']:.2f} | {r['mean_iterations']:.0f} |")
    return rows


if __name__ == "__main__":
    main()
