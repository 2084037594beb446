"""The 3DPW benchmark: run methods on 3DPW-format sequences and score them against the ground truth.

Sequences come from :mod:`fitlib.datasets.threedpw` (3DPW itself, or the synthetic stand-in of
:mod:`fitlib.datasets.synthetic`); methods from :mod:`fitlib.evaluation.methods`.

Metrics per person-frame, averaged over all scored person-frames (the 3DPW protocol):
MPJPE and PA-MPJPE on the 14 LSP joints (:func:`fitlib.evaluation.metrics.lsp14`, root = mean of
the hips) and separately on the 24 SMPL joints (the two are not comparable), PVE (mm, hips
aligned), 2D reprojection error (px) against the input keypoints the method saw (points with
confidence >= 0.2) and against the ground-truth model's projected keypoints, and people per second
(person-frames fitted per second of the method's wall time).

Keypoint sources (``keypoints``): ``poses2d`` (the dataset's OpenPose-18 detections, converted by
name to COCO-17; the neck is dropped), or an ``.npz`` file with one array ``"<sequence>/<person>"``
[T, J, 3] (x px, y px, confidence) per person, aligned with the sequence's image frames, in the
fitlib layout named by its ``"layout"`` entry (default coco17); the methods read them in that layout
(e.g. ``coco17_feet``: the feet reach the regressor and the fit), and the 2D errors are over its points.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.body.model import BodyModel, load_body_model
from fitlib.camera import project
from fitlib.datasets.threedpw import LAYOUT, Sequence, build_sequence, load_sequence_file
from fitlib.evaluation import metrics
from fitlib.evaluation.methods import ORACLES, Method, MethodInput, method_factory
from fitlib.params import SMPLParams

VISIBLE = 0.2
"""Keypoints with at least this confidence count in the reported 2D error against the input."""
METRICS = ("mpjpe14", "pa_mpjpe14", "mpjpe24", "pa_mpjpe24", "pve", "reproj_px", "gt2d_px")
_LSP_HIPS, _SMPL_HIPS = metrics.LSP14_HIPS, metrics.SMPL24_HIPS


def evaluate(model: BodyModel, seq: Sequence, pred: SMPLParams, rows: slice | None = None) -> dict[str, np.ndarray]:
    """Per person-frame metrics [N] (mm, px) of camera-frame predictions against ``seq``'s ground truth."""
    rows = rows or slice(None)
    with torch.no_grad():
        out = model(pred.pose, pred.betas, pred.transl, layout=seq.layout, vertices=True)
        gj, gv, gk = seq.gt_joints[rows], seq.gt_vertices[rows], seq.gt_keypoints[rows]
        kp = seq.keypoints[rows]
        pj = out.joints.double()
        res = {
            "mpjpe14": metrics.mpjpe(metrics.lsp14(pj), metrics.lsp14(gj.double()), root=_LSP_HIPS),
            "pa_mpjpe14": metrics.pa_mpjpe(metrics.lsp14(pj), metrics.lsp14(gj.double())),
            "mpjpe24": metrics.mpjpe(pj, gj.double(), root=_SMPL_HIPS),
            "pa_mpjpe24": metrics.pa_mpjpe(pj, gj.double()),
        }
        for k in list(res):
            res[k] = res[k] * 1000.0
        if out.vertices.shape[1] == gv.shape[1]:
            res["pve"] = 1000.0 * metrics.pve(out.vertices.double(), gv.double(), pj, gj.double(), root=_SMPL_HIPS)
        else:  # different topologies (e.g. open-model predictions against SMPL ground truth)
            res["pve"] = torch.full((len(pj),), float("nan"), dtype=torch.float64)
        K = seq.K.to(out.keypoints)
        proj = project(out.keypoints, K)
        vis = torch.isfinite(kp[..., :2]).all(-1) & (kp[..., 2] >= VISIBLE)
        res["reproj_px"] = metrics.reprojection_error(proj.double(), kp[..., :2].double(), vis)
        gt_vis = gk[..., 2] > 0.1
        res["gt2d_px"] = metrics.reprojection_error(proj.double(), project(gk, K).double(), gt_vis)
    return {k: v.numpy() for k, v in res.items()}


def run_method(method: Method, model: BodyModel, seq: Sequence, batch_size: int = 512):
    """Run a method over a sequence in batches; returns (per-row metrics, seconds, number not fitted)."""
    N = len(seq.person)
    parts: list[dict[str, np.ndarray]] = []
    seconds, unfitted = 0.0, 0
    bs = batch_size if batch_size > 0 else N
    for s in range(0, N, bs):
        rows = slice(s, min(N, s + bs))
        n = rows.stop - rows.start
        inp = MethodInput(seq.keypoints[rows], seq.K.expand(n, 3, 3), seq.image_size, seq.gt_params.index(rows),
                          seq.layout)
        t0 = time.perf_counter()
        pred = method(model, inp)
        seconds += time.perf_counter() - t0
        if pred.fitted is not None:
            unfitted += int((~pred.fitted).sum())
        parts.append(evaluate(model, seq, pred.params, rows))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, seconds, unfitted


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def format_table(summary: dict[str, dict]) -> str:
    """Markdown table, one row per method."""
    head = ("| method | people | MPJPE-14 (mm) | PA-MPJPE-14 (mm) | MPJPE-24 (mm) | PA-MPJPE-24 (mm) | PVE (mm) "
            "| 2D err vs input (px) | 2D err vs GT (px) | people/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, s in summary.items():
        vals = [f"{s[k]:.1f}" for k in METRICS]
        speed = "-" if name in ORACLES else f"{s['people_per_s']:.2f}"  # oracles fit nothing
        lines.append(f"| {name} | {s['people']} | " + " | ".join(vals) + f" | {speed} |")
    return "\n".join(lines)


def run_benchmark(root: str | Path, smpl_dir: str = "open", split: str = "test", keypoints: str = "poses2d",
                  methods: list[str] | tuple[str, ...] = ("spin", "default"), max_frames: int | None = None,
                  out: str | Path | None = None, batch_size: int = 512, verbose: bool = True,
                  fit_model: str | Path | None = None) -> dict:
    """Run the benchmark; returns ``{"summary": {method: metrics}, "sequences": [...], "table": str}``.

    The ground truth is posed with the models of ``smpl_dir``; the methods fit with (and their estimates are
    posed with) ``fit_model``'s neutral model (``"open"``, an SMPL file or folder; None: ``smpl_dir``'s), e.g.
    the open model scored against a real SMPL ground truth, or a model the regressor was not trained for. PVE
    needs the same mesh topology (NaN otherwise); the joint metrics compare the 24 (14 LSP) joints."""
    folder = Path(root) / "sequenceFiles" / split
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise FileNotFoundError(f"no sequence files in {folder}")
    factories = {m: method_factory(m) for m in methods}
    kp_source, layout = None, LAYOUT
    if keypoints != "poses2d":
        with np.load(keypoints, allow_pickle=False) as f:
            layout = get_layout(str(f["layout"]) if "layout" in f.files else LAYOUT).name
            kp_source = {k: f[k] for k in f.files if k != "layout"}
    model = load_body_model(smpl_dir if fit_model is None else fit_model, gender="neutral")
    runners = {m: f() for m, f in factories.items()}
    per_row: dict[str, list[dict]] = {m: [] for m in methods}
    timing = {m: [0.0, 0, 0] for m in methods}  # seconds, people, not fitted
    seq_results = []
    for path in files:
        seq = build_sequence(load_sequence_file(path), smpl_dir, kp_source, max_frames, layout=layout)
        for m in methods:  # methods alternate sequence by sequence (shared, noisy machine)
            res, secs, unfitted = run_method(runners[m], model, seq, batch_size)
            per_row[m].append(res)
            timing[m][0] += secs
            timing[m][1] += len(seq.person)
            timing[m][2] += unfitted
            row = {"sequence": seq.name, "method": m, "people": len(seq.person), "seconds": secs,
                   "not_fitted": unfitted, **{k: _mean(res[k]) for k in METRICS}}
            seq_results.append(row)
            if verbose:
                print(f"{seq.name:40s} {m:10s} N={len(seq.person):4d} PA-MPJPE-14 {row['pa_mpjpe14']:6.1f} mm "
                      f"MPJPE-14 {row['mpjpe14']:6.1f} mm  {len(seq.person) / max(secs, 1e-9):7.2f} people/s",
                      flush=True)
    summary = {}
    for m in methods:
        allr = {k: np.concatenate([r[k] for r in per_row[m]]) for k in METRICS}
        secs, people, unfitted = timing[m]
        summary[m] = {"people": people, "not_fitted": unfitted, "seconds": secs,
                      "people_per_s": people / max(secs, 1e-9), **{k: _mean(allr[k]) for k in METRICS},
                      "median_pa_mpjpe14": float(np.nanmedian(allr["pa_mpjpe14"]))}
    table = format_table(summary)
    result = {"root": str(root), "split": split, "smpl_dir": str(smpl_dir),
              "fit_model": str(smpl_dir if fit_model is None else fit_model), "keypoints": str(keypoints),
              "max_frames": max_frames,
              "pose_prior": {m: r.config.pose_prior for m, r in runners.items() if hasattr(r, "config")},
              "summary": summary, "sequences": seq_results, "table": table}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({k: v for k, v in result.items()}, indent=1))
        with open(out / "per_sequence.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(seq_results[0]))
            w.writeheader()
            w.writerows(seq_results)
        (out / "table.md").write_text(table + "\n")
    return result
