"""3DPW benchmark: fit SMPL to 2D keypoints of 3DPW's sequences and score it against the ground truth.

Reads 3DPW's ``sequenceFiles/<split>/*.pkl`` (latin-1 pickles; fields ``poses``, ``betas``,
``trans``, ``genders``, ``cam_poses``, ``cam_intrinsics``, ``poses2d``, ``campose_valid``,
``img_frame_ids``), or the synthetic stand-in written by ``benchmarks/make_synthetic.py``.

Ground truth: each person's gendered SMPL model (``genders`` 'm' / 'f') posed with the
dataset's world-frame ``poses`` / ``betas`` / ``trans`` and moved into the camera with
``cam_poses``; only frames with ``campose_valid`` are scored.  With ``--smpl-dir open`` every
gender maps to fitlib's open model (the synthetic set is built with it).

Predictions: each method maps 2D keypoints (COCO-17) + intrinsics to SMPL parameters in the
camera frame, posed with the neutral model of ``--smpl-dir``.  Methods (rows of the table):

* ``spin``: the reference SMPLify mode (``configs/spin.yaml``: full mesh each iteration,
  Adam 100 + 100 iterations, from the mean pose, no early stop);
* ``default``: fitlib's default fitter (``configs/default.yaml``);
* ``gt``: the ground truth re-expressed in the camera frame (a sanity check: 0 mm on the
  synthetic set, the neutral-vs-gendered model gap on real 3DPW);
* ``noisy_gt``, ``noisy_gt_strong``: the ground truth with seeded errors, stand-ins for a regressor;
* ``INIT+CONFIG`` (e.g. ``noisy_gt+default``): the fit started from method INIT's estimate, as
  ``fitlib.fit(..., init=...)`` will refine a regressor's (add ``regressor`` to :data:`METHODS`).

Metrics per person-frame, averaged over all scored person-frames (the 3DPW protocol):
MPJPE and PA-MPJPE on the 14 LSP joints (:func:`fitlib.eval.lsp14`, root = mean of the hips)
and separately on the 24 SMPL joints (the two are not comparable), PVE (mm, hips aligned),
2D reprojection error (px) against the input keypoints the method saw (points with confidence
>= 0.2) and against the ground-truth model's projected keypoints, and people per second
(person-frames fitted per second of the method's wall time).

Keypoint sources (``--keypoints``): ``poses2d`` (the dataset's OpenPose-18 detections,
converted by name to COCO-17; the neck is dropped), or an ``.npz`` file with one array
``"<sequence>/<person>"`` [T, J, 3] (x px, y px, confidence) per person, aligned with the
sequence's image frames, in the fitlib layout named by its ``"layout"`` entry (default coco17).

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/threedpw.py --root PATH --smpl-dir PATH|open --split test \
        [--keypoints poses2d|FILE] [--methods spin,default] [--max-frames N] [--out DIR]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import csv  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402
import roma  # noqa: E402
import torch  # noqa: E402

from fitlib import eval as metrics  # noqa: E402
from fitlib.body_model import BodyModel, load_body_model  # noqa: E402
from fitlib.camera import project  # noqa: E402
from fitlib.config import FitConfig, load_config  # noqa: E402
from fitlib.fitter import fit_keypoints  # noqa: E402
from fitlib.layouts import convert_keypoints, get_layout  # noqa: E402

OPENPOSE18: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
"""Joint order of 3DPW's ``poses2d`` (OpenPose's 18-point COCO model)."""

LAYOUT = "coco17"
VISIBLE = 0.2
"""Keypoints with at least this confidence count in the reported 2D error against the input."""
METRICS = ("mpjpe14", "pa_mpjpe14", "mpjpe24", "pa_mpjpe24", "pve", "reproj_px", "gt2d_px")
_LSP_HIPS, _SMPL_HIPS = metrics.LSP14_HIPS, metrics.SMPL24_HIPS


def openpose18_to_coco17(kp: np.ndarray) -> np.ndarray:
    """3DPW ``poses2d`` points [..., 18, 3] to COCO-17 [..., 17, 3] by joint name (the neck is dropped)."""
    kp = np.asarray(kp, dtype=np.float64)
    if kp.shape[-2:] != (18, 3):
        raise ValueError(f"OpenPose-18 keypoints must have shape [..., 18, 3], got {kp.shape}")
    names = get_layout(LAYOUT).names
    return kp[..., [OPENPOSE18.index(n) for n in names], :]


# ---------------------------------------------------------------------------------------------- data
@dataclass
class Sequence:
    """One sequence's scored person-frames, concatenated over people (N rows)."""

    name: str
    person: np.ndarray  # [N] person index
    frame: np.ndarray  # [N] image frame index
    keypoints: torch.Tensor  # [N, 17, 3] COCO-17 (x px, y px, confidence)
    K: torch.Tensor  # [3, 3]
    image_size: tuple[int, int]  # (height, width)
    gt_joints: torch.Tensor  # [N, 24, 3] camera frame, metres
    gt_vertices: torch.Tensor  # [N, V, 3] camera frame, metres
    gt_keypoints: torch.Tensor  # [N, 17, 3] camera frame, metres (the GT model's COCO-17 points)
    gt_params: dict[str, torch.Tensor]  # pose [N, 24, 3], betas [N, 10], transl [N, 3] in the camera frame


def load_sequence_file(path: str | Path) -> dict:
    """Read a 3DPW sequence pickle (latin-1, Python 2 era) and check the fields the benchmark needs."""
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    need = ("sequence", "poses", "betas", "trans", "cam_poses", "cam_intrinsics", "campose_valid", "poses2d")
    missing = [k for k in need if k not in data]
    if "genders" not in data and "gender" not in data:
        missing.append("genders")
    if missing:
        raise ValueError(f"{path}: not a 3DPW sequence file, missing fields {missing}")
    return data


def _gender(g) -> str:
    g = str(g).lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(g, "neutral")


def _select(valid: np.ndarray, max_frames: int | None) -> np.ndarray:
    idx = np.nonzero(valid)[0]
    if max_frames and len(idx) > max_frames:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int)]
    return idx


def build_sequence(data: dict, smpl_dir: str, keypoints: dict | None = None, max_frames: int | None = None,
                   dtype: torch.dtype = torch.float32) -> Sequence:
    """Ground truth (gendered models, camera frame) and input keypoints of one sequence.

    Args:
        data: a sequence dict (:func:`load_sequence_file`).
        smpl_dir: folder with SMPL_{MALE,FEMALE,NEUTRAL}.pkl, or ``"open"``.
        keypoints: ``{"<sequence>/<person>": [T, 17, 3]}`` COCO-17 detections replacing ``poses2d``.
        max_frames: score at most this many valid frames per person (evenly spaced).
    """
    name = str(data["sequence"])
    genders = data.get("genders", data.get("gender"))
    cam = np.asarray(data["cam_poses"], dtype=np.float64)  # [T, 4, 4] world -> camera
    K = torch.as_tensor(np.asarray(data["cam_intrinsics"], dtype=np.float64), dtype=dtype)
    image_size = (int(round(2 * float(K[1, 2]))), int(round(2 * float(K[0, 2]))))
    rows: dict[str, list] = {k: [] for k in ("person", "frame", "kp", "joints", "verts", "gtkp", "pose", "betas",
                                             "transl")}
    for p in range(len(data["poses"])):
        poses = np.asarray(data["poses"][p], dtype=np.float64)
        T = len(poses)
        valid = np.asarray(data["campose_valid"][p]).astype(bool).reshape(-1)[:T]
        idx = _select(valid, max_frames)
        if not len(idx):
            continue
        if keypoints is not None:
            key = f"{name}/{p}"
            if key not in keypoints:
                raise ValueError(f"keypoints file has no entry {key!r}")
            kp = np.asarray(keypoints[key], dtype=np.float64)[idx]
        else:
            kp = openpose18_to_coco17(np.asarray(data["poses2d"][p], dtype=np.float64).transpose(0, 2, 1)[idx])
        model = load_body_model(smpl_dir, gender=_gender(genders[p]), dtype=dtype)
        betas = torch.as_tensor(np.asarray(data["betas"][p], dtype=np.float64)[:10], dtype=dtype).expand(len(idx), 10)
        pose = torch.as_tensor(poses[idx], dtype=dtype).reshape(-1, 24, 3)
        trans = torch.as_tensor(np.asarray(data["trans"][p], dtype=np.float64)[idx], dtype=dtype)
        R = torch.as_tensor(cam[idx, :3, :3], dtype=dtype)
        t = torch.as_tensor(cam[idx, :3, 3], dtype=dtype)
        with torch.no_grad():
            out = model(pose, betas, trans, layout=LAYOUT, vertices=True)
            to_cam = lambda x: torch.einsum("nij,nkj->nki", R, x) + t[:, None]  # noqa: E731
            # the same body as camera-frame SMPL parameters: orientation R @ R_g, and a translation
            # such that the pelvis (rotation centre) lands where the camera sees it
            j0 = model.rest_joints(betas)[:, 0]
            glob = roma.rotmat_to_rotvec(R @ roma.rotvec_to_rotmat(pose[:, 0]))
            pose_cam = torch.cat([glob[:, None], pose[:, 1:]], 1)
            transl_cam = torch.einsum("nij,nj->ni", R, j0 + trans) + t - j0
        rows["person"].append(np.full(len(idx), p))
        rows["frame"].append(idx)
        rows["kp"].append(torch.as_tensor(kp, dtype=dtype))
        rows["joints"].append(to_cam(out.joints))
        rows["verts"].append(to_cam(out.vertices))
        rows["gtkp"].append(to_cam(out.keypoints))
        rows["pose"].append(pose_cam)
        rows["betas"].append(betas)
        rows["transl"].append(transl_cam)
    if not rows["person"]:
        raise ValueError(f"sequence {name}: no valid frames")
    cat = lambda k: torch.cat(rows[k])  # noqa: E731
    return Sequence(name, np.concatenate(rows["person"]), np.concatenate(rows["frame"]), cat("kp"), K, image_size,
                    cat("joints"), cat("verts"), cat("gtkp"),
                    {"pose": cat("pose"), "betas": cat("betas"), "transl": cat("transl")})


# ------------------------------------------------------------------------------------------- methods
@dataclass
class MethodInput:
    """What a method sees: N people's keypoints with their camera; ``gt`` only for the oracles."""

    keypoints: torch.Tensor  # [N, 17, 3] COCO-17
    K: torch.Tensor  # [N, 3, 3]
    image_size: tuple[int, int]
    gt: dict[str, torch.Tensor]


Method = Callable[[BodyModel, MethodInput], dict[str, torch.Tensor]]
"""A method: (body model, inputs) -> camera-frame SMPL parameters ``pose`` [N, 24, 3], ``betas`` [N, 10], ``transl`` [N, 3]."""


def fitter_method(config: str | FitConfig, init: Method | None = None) -> Method:
    """A method running :func:`fitlib.fitter.fit_keypoints` with a config, from the fitter's own starts
    or, given ``init``, from that method's estimate (``fit(..., init=...)``, as a regressor will)."""
    cfg = load_config(config)

    def run(model: BodyModel, inp: MethodInput) -> dict[str, torch.Tensor]:
        start = None if init is None else {k: v for k, v in init(model, inp).items() if k != "fitted"}
        out = fit_keypoints(model, inp.keypoints, inp.K, LAYOUT, cfg, init=start, image_size=inp.image_size)
        return {"pose": out.pose, "betas": out.betas, "transl": out.transl, "fitted": out.fitted}

    run.config = cfg  # type: ignore[attr-defined]
    return run


def oracle_method(model: BodyModel, inp: MethodInput) -> dict[str, torch.Tensor]:
    """The ground truth itself (sanity check of the evaluation path)."""
    return {k: inp.gt[k] for k in ("pose", "betas", "transl")}


def perturbed_oracle_method(model: BodyModel, inp: MethodInput, pose_sigma: float = 0.15) -> dict[str, torch.Tensor]:
    """A stand-in for a regressor until fitlib has one: the ground truth with seeded, independent errors
    (body joints ``pose_sigma`` rad per axis-angle component, orientation 0.1 rad, betas 0.5, depth 10 %),
    to measure how the fitter treats a good but imperfect ``init``. A real regressor's errors are
    correlated and biased; weights tuned on this stand-in are to be checked again on one."""
    g = torch.Generator().manual_seed(0)
    gt = {k: inp.gt[k].clone() for k in ("pose", "betas", "transl")}
    n = gt["pose"].shape[0]
    noise = lambda *shape: torch.randn(*shape, generator=g, dtype=gt["pose"].dtype)  # noqa: E731
    pose = gt["pose"].clone()
    pose[:, 1:] += pose_sigma * noise(n, 23, 3)
    pose[:, 0] = roma.rotvec_composition([0.1 * noise(n, 3), gt["pose"][:, 0]])
    transl = gt["transl"] * (1 + 0.1 * noise(n, 1))
    return {"pose": pose, "betas": gt["betas"] + 0.5 * noise(n, 10), "transl": transl}


METHODS: dict[str, Callable[[], Method]] = {
    "spin": lambda: fitter_method("spin"),
    "default": lambda: fitter_method("default"),
    "fast": lambda: fitter_method("fast"),
    "gt": lambda: oracle_method,
    "noisy_gt": lambda: perturbed_oracle_method,  # about as accurate as the default fitter here
    "noisy_gt_strong": lambda: functools.partial(perturbed_oracle_method, pose_sigma=0.07),  # twice as accurate
}
"""Method factories by name (``regressor`` gets added here). ``INIT+CONFIG`` (e.g. ``noisy_gt+default``)
refines the estimate of method INIT with a fitting config (see :func:`method_factory`)."""
ORACLES = ("gt", "noisy_gt", "noisy_gt_strong")
"""Methods that read the ground truth instead of fitting (no speed is reported for them)."""


def method_factory(name: str) -> Callable[[], Method]:
    """A method by name: a key of :data:`METHODS`; or a fitting config (a shipped config's name such as
    ``precise``, or a path to a ``.yaml``) with optional overrides, ``CONFIG@key=value@...`` (top-level
    settings, e.g. ``default@pose_prior=none@pose_starts=0``, or a loss weight in every stage that has
    it, e.g. ``default@weights.init_pull=0``); or ``INIT+CONFIG...``, the fit started from method
    INIT's estimate (e.g. ``noisy_gt+default``)."""
    if name in METHODS:
        return METHODS[name]
    init_name, plus, spec = name.rpartition("+")
    init = method_factory(init_name) if plus else None
    base, *overrides = spec.split("@")
    try:
        config = load_config(base)
    except (ValueError, FileNotFoundError):
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}, a shipped config, a config "
                         f".yaml file, CONFIG@key=value@..., or INIT+CONFIG") from None
    changes, weights = {}, {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"method {name!r}: override {item!r} is not key=value")
        if key.startswith("weights."):  # a loss weight, in every stage that has it
            weights[key.removeprefix("weights.")] = float(yaml.safe_load(value))
        else:
            changes[key] = yaml.safe_load(value)
    config = config.replace(**changes)
    for stage in config.stages:
        stage.weights.update({k: v for k, v in weights.items() if k in stage.weights})
    return lambda: fitter_method(config, None if init is None else init())


# ---------------------------------------------------------------------------------------- evaluation
def evaluate(model: BodyModel, seq: Sequence, pred: dict[str, torch.Tensor], rows: slice | None = None) -> dict[str, np.ndarray]:
    """Per person-frame metrics [N] (mm, px) of camera-frame predictions against ``seq``'s ground truth."""
    rows = rows or slice(None)
    with torch.no_grad():
        out = model(pred["pose"].reshape(-1, 24, 3), pred["betas"], pred["transl"], layout=LAYOUT, vertices=True)
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
        inp = MethodInput(seq.keypoints[rows], seq.K.expand(n, 3, 3), seq.image_size,
                          {k: v[rows] for k, v in seq.gt_params.items()})
        t0 = time.perf_counter()
        pred = method(model, inp)
        seconds += time.perf_counter() - t0
        if "fitted" in pred:
            unfitted += int((~pred["fitted"]).sum())
        parts.append(evaluate(model, seq, pred, rows))
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
                  out: str | Path | None = None, batch_size: int = 512, verbose: bool = True) -> dict:
    """Run the benchmark; returns ``{"summary": {method: metrics}, "sequences": [...], "table": str}``."""
    folder = Path(root) / "sequenceFiles" / split
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise FileNotFoundError(f"no sequence files in {folder}")
    factories = {m: method_factory(m) for m in methods}
    kp_source = None
    if keypoints != "poses2d":
        with np.load(keypoints, allow_pickle=False) as f:
            layout = str(f["layout"]) if "layout" in f.files else LAYOUT
            kp_source = {k: convert_keypoints(f[k], layout, LAYOUT) for k in f.files if k != "layout"}
    model = load_body_model(smpl_dir, gender="neutral")
    runners = {m: f() for m, f in factories.items()}
    per_row: dict[str, list[dict]] = {m: [] for m in methods}
    timing = {m: [0.0, 0, 0] for m in methods}  # seconds, people, not fitted
    seq_results = []
    for path in files:
        seq = build_sequence(load_sequence_file(path), smpl_dir, kp_source, max_frames)
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
    result = {"root": str(root), "split": split, "smpl_dir": str(smpl_dir), "keypoints": str(keypoints),
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="3DPW root (holding sequenceFiles/)")
    ap.add_argument("--smpl-dir", default="open", help="folder with SMPL_{NEUTRAL,MALE,FEMALE}.pkl, or 'open'")
    ap.add_argument("--split", default="test")
    ap.add_argument("--keypoints", default="poses2d", help="'poses2d' or an .npz of detections (see above)")
    ap.add_argument("--methods", default="spin,default", help=f"comma-separated, from {sorted(METHODS)}")
    ap.add_argument("--max-frames", type=int, default=None, help="score at most N valid frames per person")
    ap.add_argument("--batch-size", type=int, default=512, help="people per fitter call (0: whole sequence)")
    ap.add_argument("--out", default=None, help="folder for results.json, per_sequence.csv, table.md")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(True)
    res = run_benchmark(args.root, args.smpl_dir, args.split, args.keypoints,
                        [m.strip() for m in args.methods.split(",") if m.strip()], args.max_frames, args.out,
                        args.batch_size)
    print()
    print(res["table"])
    return res


if __name__ == "__main__":
    main()
