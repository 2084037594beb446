"""The keypoint regressor (issue 12) on the synthetic 3DPW set, through the benchmark runner, and its speed.

Accuracy: ``fitlib.evaluation.benchmark.run_benchmark`` with the method ``regressor`` (the shipped weights)
and any other weight files given as ``--checkpoint NAME=PATH`` (registered as method ``NAME``, e.g. the
ablation runs), next to the fitter's methods (``--methods default,...``). The set is built from the
held-out clips only (``benchmarks/make_synthetic.py``), which the regressor never saw.

Speed: the network's forward (eval mode, no gradient, keypoints already in its layout) in people/s at
``--batch`` (256) on CPU, median of ``--repeats`` timed passes, with ``--threads`` torch threads.

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/regressor.py --root /tmp/syn_full --methods regressor,default \
        [--checkpoint h1=/tmp/abl/h1/regressor.pt ...] [--speed-only] [--out DIR]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fitlib.evaluation.benchmark import run_benchmark  # noqa: E402
from fitlib.evaluation.methods import METHODS, regressor_method  # noqa: E402
from fitlib.regression.checkpoint import load_regressor  # noqa: E402


def forward_speed(checkpoint: str | None = None, batch: int = 256, repeats: int = 20, threads: int = 1) -> dict:
    """People/s of the network's forward at ``batch`` (median over ``repeats`` passes)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net, _ = load_regressor(checkpoint)
        g = torch.Generator().manual_seed(0)
        kp = torch.rand(batch, len(net.layout), 3, generator=g) * torch.tensor([1080.0, 1920.0, 1.0])
        K = torch.tensor([[1962.0, 0, 540], [0, 1962, 960], [0, 0, 1]]).expand(batch, 3, 3)
        times = []
        with torch.no_grad():
            for i in range(repeats + 3):
                t0 = time.perf_counter()
                net(kp, K)
                if i >= 3:
                    times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        return {"batch": batch, "threads": threads, "ms": 1000 * t, "people_per_s": batch / t,
                "parameters": sum(p.numel() for p in net.parameters())}
    finally:
        torch.set_num_threads(old)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="/tmp/syn_full", help="3DPW-format root (benchmarks/make_synthetic.py)")
    ap.add_argument("--smpl-dir", default="open")
    ap.add_argument("--split", default="test")
    ap.add_argument("--methods", default="regressor", help="comma-separated methods (see benchmarks/threedpw.py)")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=PATH: a regressor file as method NAME")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--speed-only", action="store_true")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--checkpoint takes NAME=PATH, got {item!r}")
        METHODS[name] = lambda p=path: regressor_method(p)
        if name not in names:
            names.append(name)
    res: dict = {}
    for name in ["regressor"] + [c.partition("=")[0] for c in args.checkpoint]:
        if name == "regressor" and "regressor" not in names and args.checkpoint:
            continue
        ckpt = None if name == "regressor" else dict(c.split("=", 1) for c in args.checkpoint)[name]
        s = forward_speed(ckpt, args.batch, args.repeats, args.threads)
        res.setdefault("speed", {})[name] = s
        print(f"{name}: forward {s['people_per_s']:.0f} people/s at batch {s['batch']} ({s['threads']} thread(s), "
              f"{s['ms']:.1f} ms, {s['parameters'] / 1e6:.2f} M parameters)")
    if not args.speed_only:
        torch.set_grad_enabled(True)
        out = run_benchmark(args.root, args.smpl_dir, args.split, "poses2d", names, args.max_frames, args.out)
        print()
        print(out["table"])
        res["benchmark"] = out
    return res


if __name__ == "__main__":
    main()
