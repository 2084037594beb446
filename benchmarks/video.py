"""Video fitting on the synthetic set's sequences (held-out real motion): per-frame fits against tracked,
warm-started, one-shape-per-track and smoothed ones.

Reads a synthetic 3DPW-format set (``benchmarks/make_synthetic.py --sequences 40 --frames 20 --seed 11``:
60 tracks of 20 frames at 30 fps). Every sequence is tracked on its own keypoints by
:class:`fitlib.video.tracking.Tracker` (the ids are checked against the truth: switches counted); the
fits of one frame index of all sequences run in one batch (about 60 people), the per-frame variants
alternating frame by frame (the machine is shared):

* ``scratch``: the default config on every frame (regressor -> refine), no tracking;
* ``warm``: each track refined from its previous frame's fit (chained);
* ``reseed``: warm, restarted from the regressor every ``--reseed`` frames;
* ``best``: warm and from the regressor, per person the better under :class:`fitlib.video.temporal.Scorer`
  (what :func:`fitlib.fit_video` does by default).

Warm refines run 2 Levenberg-Marquardt iterations without the turned-body screen (``SequenceSettings.
warm_iterations``); ``NAME:full`` runs them with the config's refine, ``NAME:N`` with N iterations.
Then on each: ``+median_betas`` (one betas per track, the median of its frames'), ``+betas`` (the same,
then every frame refitted with it held) and smoothing (Savitzky-Golay over 9 or 15 frames, One-Euro
forwards and forwards-backwards) on top; ``best+median_betas+savgol9`` is fit_video's default.

Metrics per variant, over the person-frames fitted: PA-MPJPE-14 (mm); jitter: the acceleration error (mean
over LSP-14 joints, hip-centred, of |a_pred - a_gt|, a = x[t+1] - 2 x[t] + x[t-1], mm/frame²) and the
predicted acceleration alone (mm/frame²; the truth's own is printed too); frames/s and people/s of the
per-frame pass (all frames over their total wall time; also the ratio of the median frame's time) and the
whole pipeline's (with the per-track steps).

Usage:  OMP_WAIT_POLICY=PASSIVE python benchmarks/video.py --root /tmp/syn_tracks [--frames 20] [--sequences 40]
        [--bases scratch warm reseed best warm:full ...] [--post "" +savgol9 ...]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fitlib.body.model import load_body_model  # noqa: E402
from fitlib.datasets.threedpw import LAYOUT, build_sequence, load_sequence_file  # noqa: E402
from fitlib.evaluation import metrics  # noqa: E402
from fitlib.fitting import Fitter, load_config  # noqa: E402
from fitlib.video.temporal import (Scorer, SequenceSettings, Step, WarmStarts, fit_step,  # noqa: E402
                                   postprocess, warm_fitter_for)
from fitlib.video.tracking import Tracker  # noqa: E402

FPS = 30.0


def load(root: Path, split: str, n_seq: int | None, frames: int | None):
    """Per frame index t: the Step of all sequences' people, the truth's joints [N, 24, 3] and the truth's
    track key (sequence, person) per row; the id switches of the tracker."""
    files = sorted((root / "sequenceFiles" / split).glob("*.pkl"))[:n_seq]
    seqs = [build_sequence(load_sequence_file(p), "open", dtype=torch.float64) for p in files]
    T = min(int(np.bincount(s.person).min()) for s in seqs)
    T = min(T, frames or T)
    steps, gt, keys = [], [], []
    switches = 0
    trackers = [Tracker(max_gap=5) for _ in seqs]
    seen: dict[tuple, int] = {}
    for t in range(T):
        kp, K, sizes, ids, joints, key = [], [], [], [], [], []
        for si, s in enumerate(seqs):
            people = np.unique(s.person)
            rows = [np.nonzero(s.person == p)[0] for p in people]
            rows = [r[np.argsort(s.frame[r])][t] for r in rows]
            k = s.keypoints[rows]
            tid = trackers[si].update(k.numpy())
            for p, r, i in zip(people, rows, tid):
                gkey = (si, int(p))
                if seen.get(gkey, int(i)) != int(i):
                    switches += 1
                seen[gkey] = int(i)
                kp.append(s.keypoints[r])
                K.append(s.K)
                sizes.append(torch.tensor(s.image_size, dtype=torch.float64))
                ids.append(si * 1000 + int(i))
                joints.append(s.gt_joints[r])
                key.append(gkey)
        steps.append(Step(torch.stack(kp), torch.stack(K).double(), torch.stack(sizes), np.array(ids), t / FPS))
        gt.append(torch.stack(joints).double())
        keys.append(key)
    return steps, gt, keys, switches


def evaluate(fits, gt, keys, model) -> dict:
    pa, tracks = [], {}
    for t, (fit, g, key) in enumerate(zip(fits, gt, keys)):
        for i, k in enumerate(key):
            if not fit.fitted[i]:
                continue
            pj = torch.as_tensor(fit.joints[i])
            pa.append(float(1000 * metrics.pa_mpjpe(metrics.lsp14(pj), metrics.lsp14(g[i]))))
            tracks.setdefault(k, {})[t] = (metrics.lsp14(pj).numpy(), metrics.lsp14(g[i]).numpy())
    acc_err, acc_pred, acc_gt = [], [], []
    for per_t in tracks.values():
        for t in per_t:
            if t - 1 in per_t and t + 1 in per_t:
                p = [per_t[t + d][0] for d in (-1, 0, 1)]
                q = [per_t[t + d][1] for d in (-1, 0, 1)]
                p = [x - x[list(metrics.LSP14_HIPS)].mean(0) for x in p]
                q = [x - x[list(metrics.LSP14_HIPS)].mean(0) for x in q]
                ap, ag = p[2] - 2 * p[1] + p[0], q[2] - 2 * q[1] + q[0]
                acc_err.append(1000 * np.linalg.norm(ap - ag, axis=-1).mean())
                acc_pred.append(1000 * np.linalg.norm(ap, axis=-1).mean())
                acc_gt.append(1000 * np.linalg.norm(ag, axis=-1).mean())
    n_total = sum(len(k) for k in keys)
    return {"pa": float(np.mean(pa)), "accel_err": float(np.mean(acc_err)), "accel": float(np.mean(acc_pred)),
            "accel_gt": float(np.mean(acc_gt)), "fitted": len(pa) / n_total}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--sequences", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--reseed", type=int, default=5)
    ap.add_argument("--score-pose-prior", type=float, default=1.0)
    ap.add_argument("--bases", nargs="+", default=["scratch", "warm", "reseed", "best"],
                    help="per-frame variants; NAME:N runs NAME with N warm-refine iterations (no turned-body screen; "
                    "default 2), NAME:full with the config's refine (6 iterations and the screen)")
    ap.add_argument("--post", nargs="+", default=None, help="only these post-processing rows (e.g. '' +savgol9)")
    args = ap.parse_args(argv)
    model = load_body_model("open")
    fitter = Fitter(model, load_config("default"))
    steps, gt, keys, switches = load(Path(args.root), args.split, args.sequences, args.frames)
    N = sum(len(s.ids) for s in steps)
    print(f"{len(steps)} frames, {N} person-frames ({len(steps[0].ids)} tracks per frame); tracker id switches "
          f"against the truth: {switches}", flush=True)
    def iterations(b: str):
        if ":" not in b:
            return SequenceSettings().warm_iterations
        n = b.split(":")[1]
        return None if n == "full" else int(n)

    settings = {b: SequenceSettings(warm=b.split(":")[0], reseed=args.reseed, score_pose_prior=args.score_pose_prior,
                                    warm_iterations=iterations(b)) for b in args.bases}
    scorers = {b: Scorer(fitter, LAYOUT, args.score_pose_prior) if b.startswith("best") else None for b in args.bases}
    warm_fitters = {b: warm_fitter_for(fitter, settings[b]) for b in args.bases}
    starts = {b: WarmStarts(settings[b]) for b in args.bases}
    fits = {b: [] for b in args.bases}
    secs = {b: [] for b in args.bases}
    sources = {b: [] for b in args.bases}
    for t, step in enumerate(steps):
        order = args.bases if t % 2 == 0 else args.bases[::-1]
        for b in order:
            inits = starts[b].inits(t, step.ids, fitter.device, fitter.dtype)
            t0 = time.perf_counter()
            fit = fit_step(fitter, step, LAYOUT, inits, scorers[b], warm_fitters[b])
            secs[b].append(time.perf_counter() - t0)
            starts[b].record(t, step.ids, inits, fit)
            fits[b].append(fit)
            sources[b].extend(fit.source)
        if t % 5 == 0:
            print(f"  frame {t}: " + ", ".join(f"{b} {statistics.mean(secs[b]):.2f} s" for b in args.bases), flush=True)
    rows = []
    post = [("", dict(track_betas=False, smoothing="none")),
            ("+betas", dict(track_betas=True, betas_refit=True, smoothing="none")),
            ("+savgol9", dict(track_betas=False, smoothing="savgol")),
            ("+betas+savgol9", dict(track_betas=True, betas_refit=True, smoothing="savgol")),
            ("+median_betas+savgol9", dict(track_betas=True, betas_refit=False, smoothing="savgol")),
            ("+betas+savgol15", dict(track_betas=True, betas_refit=True, smoothing="savgol",
                                     rotation_settings={"window": 15, "order": 2},
                                     translation_settings={"window": 15, "order": 2})),
            ("+savgol15", dict(track_betas=False, smoothing="savgol",
                               rotation_settings={"window": 15, "order": 2},
                               translation_settings={"window": 15, "order": 2})),
            ("+savgol15o3", dict(track_betas=False, smoothing="savgol",
                                 rotation_settings={"window": 15, "order": 3},
                                 translation_settings={"window": 15, "order": 3})),
            ("+one_euro", dict(track_betas=False, smoothing="one_euro",
                               rotation_settings={"min_cutoff": 3.0, "beta": 0.5},
                               translation_settings={"min_cutoff": 3.0, "beta": 0.5})),
            ("+one_euro2", dict(track_betas=False, smoothing="one_euro2",
                                rotation_settings={"min_cutoff": 3.0, "beta": 0.5},
                                translation_settings={"min_cutoff": 3.0, "beta": 0.5})),
            ("+one_euro2_c1.5", dict(track_betas=False, smoothing="one_euro2",
                                     rotation_settings={"min_cutoff": 1.5, "beta": 0.3},
                                     translation_settings={"min_cutoff": 1.5, "beta": 0.3}))]
    if args.post is not None:
        post = [p for p in post if p[0] in args.post]
    n_frames = len(steps)
    betas_cache = {}
    for b in args.bases:
        per_frame = sum(secs[b])
        warm_share = sources[b].count("warm") / max(1, len(sources[b]))
        for suffix, kw in post:
            s = dataclasses.replace(settings[b], **kw)
            t0 = time.perf_counter()
            if s.track_betas and s.betas_refit and b in betas_cache:
                base, extra = betas_cache[b]
                out = postprocess(fitter, steps, base, LAYOUT, dataclasses.replace(s, track_betas=False))
                extra_t = extra + time.perf_counter() - t0
            else:
                out = postprocess(fitter, steps, fits[b], LAYOUT, dataclasses.replace(s, smoothing="none"))
                extra = time.perf_counter() - t0
                if s.track_betas and s.betas_refit:
                    betas_cache[b] = (out, extra)
                t1 = time.perf_counter()
                out = postprocess(fitter, steps, out, LAYOUT, dataclasses.replace(s, track_betas=False))
                extra_t = extra + time.perf_counter() - t1
            m = evaluate(out, gt, keys, model)
            total = per_frame + extra_t
            rows.append((b + suffix, m, statistics.median(secs[b]), per_frame, n_frames / total, warm_share))
            print(f"  {b + suffix}: PA {m['pa']:.1f} mm, accel err {m['accel_err']:.1f}", flush=True)
    base = rows[0]
    print()
    print(f"truth's own acceleration: {rows[0][1]['accel_gt']:.1f} mm/frame²")
    print("| variant | PA-MPJPE-14 (mm) | accel error (mm/frame²) | accel (mm/frame²) | fitted | per-frame pass: "
          "frames/s | people/s | vs scratch | median frame vs scratch | whole pipeline frames/s | warm kept |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m, med, per_frame, fps_total, warm in rows:
        print(f"| {name} | {m['pa']:.1f} | {m['accel_err']:.1f} | {m['accel']:.1f} | {100 * m['fitted']:.0f} % | "
              f"{n_frames / per_frame:.2f} | {N / per_frame:.0f} | {base[3] / per_frame:.2f}x | {base[2] / med:.2f}x | "
              f"{fps_total:.2f} | {100 * warm:.0f} % |")
    return {name: m for name, m, *_ in rows}


if __name__ == "__main__":
    main()
