"""Refinement from an initial estimate against fitting from scratch, on sequences of held-out real motion.

Reads a synthetic 3DPW-format set (``benchmarks/make_synthetic.py``; for batches of about 64 people,
``--sequences 40 --frames 20`` gives 60 tracks) and compares, side by side in one run (the variants
alternate frame by frame; the machine is shared and noisy):

* ``scratch``: the from-scratch default (``configs/default.yaml``: the keypoint regressor's estimate, refined)
  on every frame, all tracks of a frame in one batch;
* ``multistart``: ``configs/multistart.yaml`` (4 headings x 13 pose starts, Adam stages, the default before
  the regressor) on every frame;
* ``world``: the default given BlazePose-like world landmarks (simulated from the ground truth with
  ``--world-sigma`` m of error, :func:`fitlib.evaluation.methods.simulated_world_landmarks`) for the regressor
  (``--world-regressor``, one with the world-landmark branch) and the refine's 3D term (``--world-weight``);
* ``warm``: frame 0 from scratch, then every frame t of every track refined from that track's fit of
  frame t-1 (``init=`` the previous result: the refine path, chained as a video tracker would);
* ``noisy_gt`` / ``noisy_gt_strong``: the refine path from the stand-in regressors of
  :mod:`fitlib.evaluation.methods` (the ground truth with seeded errors), on every frame;
* ``exact``: the refine path started at the ground truth, on the ground truth's own (clean) keypoints.

Per variant: PA-MPJPE-14 and MPJPE-14 (mm), reprojection error against its input keypoints (px), people/s
(median over frames of batch size / wall time; the first frame of ``warm`` is excluded, it is a scratch
fit), mean Levenberg-Marquardt iterations and the share of people flagged converged.

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/refine.py --root /tmp/syn_tracks [--config default]
        [--set refine.weights.init_pull=30 ...] [--variants scratch multistart world ...]
        [--world-regressor PATH --world-weight 1500 --world-sigma 0.04]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from fitlib.body.model import load_body_model  # noqa: E402
from fitlib.camera import project  # noqa: E402
from fitlib.datasets.threedpw import LAYOUT, build_sequence, load_sequence_file  # noqa: E402
from fitlib.evaluation import metrics  # noqa: E402
from fitlib.evaluation.methods import MethodInput, perturbed_oracle_method, simulated_world_landmarks  # noqa: E402
from fitlib.fitting import Fitter, load_config  # noqa: E402
from fitlib.params import SMPLParams  # noqa: E402


def _tracks(root: Path, split: str, model):
    """Per frame index t: the rows of every track at its t-th frame, concatenated over sequences:
    (keypoints [N, 17, 3], K [N, 3, 3], gt SMPLParams, gt joints [N, 24, 3], gt keypoints [N, 17, 3] m)."""
    seqs = [build_sequence(load_sequence_file(p), "open") for p in sorted((root / "sequenceFiles" / split).glob("*.pkl"))]
    T = min(int(np.bincount(s.person).min()) for s in seqs)
    steps = []
    for t in range(T):
        parts = []
        for s in seqs:
            for p in np.unique(s.person):
                rows = np.nonzero(s.person == p)[0]
                parts.append((s, rows[np.argsort(s.frame[rows])][t]))
        idx = lambda s, r: slice(int(r), int(r) + 1)  # noqa: E731
        steps.append({
            "keypoints": torch.cat([s.keypoints[idx(s, r)] for s, r in parts]),
            "K": torch.stack([s.K for s, _ in parts]),
            "image_size": parts[0][0].image_size,
            "gt": SMPLParams.cat([s.gt_params.index(idx(s, r)) for s, r in parts]),
            "joints": torch.cat([s.gt_joints[idx(s, r)] for s, r in parts]),
            "gt_kp": torch.cat([s.gt_keypoints[idx(s, r)] for s, r in parts]),
        })
    return steps


def _config(name: str, sets: list[str]):
    cfg = load_config(name).model_dump()
    for item in sets:
        key, _, value = item.partition("=")
        node = cfg
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        node[last] = yaml.safe_load(value)
    return load_config(cfg)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--config", default="default")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key.sub=value (e.g. refine.max_iterations=5)")
    ap.add_argument("--frames", type=int, default=None, help="use only the first N frames")
    ap.add_argument("--variants", nargs="+", default=None, help="a subset of the variants (scratch always runs "
                    "on frame 0, for the warm start)")
    ap.add_argument("--world-regressor", default=None, help="the world variant's regressor (default: the config's)")
    ap.add_argument("--world-weight", type=float, default=None, help="the world variant's refine.weights.world "
                    "(default: the config's)")
    ap.add_argument("--world-sigma", type=float, default=0.04, help="per-point error (m) of the simulated landmarks")
    args = ap.parse_args(argv)
    model = load_body_model("open")
    cfg = _config(args.config, args.set)
    fitter = Fitter(model, cfg)
    multistart = Fitter(model, load_config("multistart"))
    world_sets = ([f"regressor={args.world_regressor}"] if args.world_regressor else []) + \
        ([f"refine.weights.world={args.world_weight}"] if args.world_weight is not None else [])
    world_fitter = Fitter(model, _config(args.config, args.set + world_sets)) if world_sets else fitter
    steps = _tracks(Path(args.root), args.split, model)[:args.frames]
    strong = functools.partial(perturbed_oracle_method, pose_sigma=0.07)
    names = ("scratch", "multistart", "world", "warm", "noisy_gt", "noisy_gt_strong", "exact")
    res = {n: {"pa": [], "mpjpe": [], "px": [], "rate": [], "iters": [], "conv": []} for n in names}
    prev = None
    N = len(steps[0]["keypoints"])
    print(f"{len(steps)} frames x {N} tracks, config {args.config} {' '.join(args.set)}", flush=True)
    for t, st in enumerate(steps):
        kp, K, size, gt = st["keypoints"], st["K"], st["image_size"], st["gt"]
        inp = MethodInput(kp, K, size, gt)
        with torch.no_grad():
            clean_xy = project(st["gt_kp"], K)
        clean = torch.cat([clean_xy, torch.ones_like(clean_xy[..., :1])], -1)
        runs = {
            "scratch": (kp, None),
            "multistart": (kp, None),
            "world": (kp, None),
            "warm": (kp, prev),
            "noisy_gt": (kp, perturbed_oracle_method(model, inp).params),
            "noisy_gt_strong": (kp, strong(model, inp).params),
            "exact": (clean, gt),
        }
        for name in names:
            keypoints, init = runs[name]
            if name == "warm" and init is None:
                continue
            if args.variants and name not in args.variants and not (name == "scratch" and t == 0):
                continue
            world = simulated_world_landmarks(model, inp, args.world_sigma) if name == "world" else None
            t0 = time.perf_counter()
            use = {"multistart": multistart, "world": world_fitter}.get(name, fitter)
            out = use.fit(keypoints, K, LAYOUT, init=init, image_size=size, world=world)
            secs = time.perf_counter() - t0
            if name == "scratch" and t == 0:
                prev = [out.params.index(slice(i, i + 1)) if bool(out.fitted[i]) else None for i in range(len(kp))]
            if name == "warm":  # a person the tracker lost starts again from scratch
                prev = [out.params.index(slice(i, i + 1)) if bool(out.fitted[i]) else None for i in range(len(kp))]
            with torch.no_grad():
                pj = model(out.params.pose, out.params.betas, out.params.transl).joints.double()
            gj = st["joints"].double()
            r = res[name]
            r["pa"].append(1000 * metrics.pa_mpjpe(metrics.lsp14(pj), metrics.lsp14(gj)))
            r["mpjpe"].append(1000 * metrics.mpjpe(metrics.lsp14(pj), metrics.lsp14(gj), root=metrics.LSP14_HIPS))
            r["px"].append(out.reprojection_error.double())
            r["rate"].append(len(kp) / secs)
            r["iters"].append(out.iterations.double())
            r["conv"].append(out.converged.double())
        if t == 0 and prev is None:
            raise RuntimeError("no from-scratch fit to warm-start from")
        if t % 5 == 0:
            print(f"  frame {t}: " + ", ".join(f"{n} {float(res[n]['pa'][-1].mean()):.1f} mm" for n in names
                                              if res[n]["pa"]), flush=True)
    summary = {}
    for name in names:
        r = res[name]
        if not r["pa"]:
            continue
        cat = lambda k: torch.cat(r[k])  # noqa: E731
        summary[name] = {"pa": float(cat("pa").mean()), "mpjpe": float(cat("mpjpe").mean()),
                         "px": float(torch.nanmedian(cat("px"))), "rate": statistics.median(r["rate"]),
                         "iters": float(cat("iters").mean()), "conv": float(cat("conv").mean())}
    base = summary["scratch"]["rate"]  # (frame 0 only when scratch is not among --variants)
    print()
    print("| variant | PA-MPJPE-14 (mm) | MPJPE-14 (mm) | reprojection median (px) | people/s | vs scratch | "
          "mean iterations | converged |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['pa']:.1f} | {s['mpjpe']:.1f} | {s['px']:.2f} | {s['rate']:.0f} | "
              f"{s['rate'] / base:.1f}x | {s['iters']:.1f} | {100 * s['conv']:.0f} % |")
    return summary


if __name__ == "__main__":
    main()
