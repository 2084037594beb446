"""Training the regressor: losses built from :mod:`fitlib.losses`, a resumable, deterministic loop.

``train(config, out)`` (``fitlib train-regressor --config X --out DIR``) writes to ``DIR``:

* ``checkpoint.pt``: the resumable state (weights, optimiser, step, best validation score), written
  atomically every ``checkpoint_every`` steps and at each epoch end; a killed run started again with the
  same command continues from it and ends with the same weights as an uninterrupted run (batches are a
  function of (seed, step), dropout is seeded per step, the optimiser state is saved);
* ``log.jsonl``: one JSON object per logged step (losses) and per epoch (validation metrics);
* ``loss_curve.png``: training loss and validation PA-MPJPE-14 (drawn with OpenCV);
* ``regressor.pt`` / ``regressor_last.pt``: the weights with the best validation score / the last ones
  (:mod:`fitlib.regression.checkpoint` files, float16).

Validation: ``val_samples`` fixed samples from the validation clips (training clips held out by
``data.val_clips``; the evaluation clips are never read), scored by PA-MPJPE-14 (mm) of the hypothesis
with the lowest 2D error against the input keypoints, as :func:`fitlib.regress` picks it.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import roma
import torch

from fitlib import losses
from fitlib.body.layouts import get_layout
from fitlib.body.model import BodyModel, load_body_model
from fitlib.camera import project
from fitlib.evaluation import metrics
from fitlib.io.atomic import atomic_write
from fitlib.regression.checkpoint import open_model_identity, save_regressor
from fitlib.regression.model import Regressor, RegressorOutput
from fitlib.training.config import LossWeights, TrainConfig, load_train_config
from fitlib.datasets.batch import Batch
from fitlib.training.data import SampleGenerator

HIPS = (1, 2)
"""SMPL joints whose mean aligns predicted and true 3D joints."""


def _pose_rows(out: RegressorOutput):
    """Flatten iterations x people x hypotheses into rows: rotmat [N, 24, 3, 3], betas, pelvis, cam."""
    I, B, H = out.betas.shape[:3]
    return (out.rotmat.reshape(-1, 24, 3, 3), out.betas.reshape(-1, 10), out.pelvis.reshape(-1, 3),
            out.cam.reshape(-1, 3), (I, B, H))


def _grown_input(start: Regressor, net: Regressor, path) -> dict:
    """``start``'s weights for ``net``; where ``net``'s layout is ``start``'s followed by more points (COCO-17, then
    the feet of ``coco17_feet``), the keypoint encoder's input layer gets zero columns for them, so that ``net``
    starts as ``start`` on people without those points."""
    state = dict(start.state_dict())
    old, new = start.config.layout, net.config.layout
    if old == new or net.config.encoder != "keypoints" or start.config.encoder != "keypoints":
        return state
    a, b = get_layout(old).names, get_layout(new).names
    if b[:len(a)] != a:
        raise ValueError(f"{path}: its network reads layout {old!r}; the config's {new!r} does not start with its "
                         f"points, so the input layer cannot be carried over")
    w = state["encoder.inp.weight"]  # [hidden, 4 J]: (x, y, confidence, visible) per point, point after point
    grown = torch.zeros(w.shape[0], 4 * len(b), dtype=w.dtype, device=w.device)
    grown[:, :w.shape[1]] = w
    state["encoder.inp.weight"] = grown
    return state


def predicted_keypoints(model: BodyModel, out: RegressorOutput, layout: str):
    """Joints [I, B, H, 24, 3] and layout keypoints [I, B, H, J, 3] (camera frame) of every estimate."""
    rot, betas, pelvis, _, (I, B, H) = _pose_rows(out)
    pose = roma.rotmat_to_rotvec(rot)
    body = model(pose, betas, out.transl(model, pelvis, betas), layout=layout)
    J = body.keypoints.shape[1]
    return body.joints.view(I, B, H, 24, 3), body.keypoints.view(I, B, H, J, 3), body.keypoint_mask


def project_estimates(out: RegressorOutput, kp3d: torch.Tensor, K: torch.Tensor, mode: str) -> torch.Tensor:
    """Pixels [I, B, H, J, 2] of the estimates' keypoints ``kp3d`` [I, B, H, J, 3] (m) as the camera ``mode``
    sees them: ``cliff``: perspective with the intrinsics K [B, 3, 3]; ``weak`` / ``spin``: the crop camera's
    projection in box coordinates (:mod:`fitlib.regression.camera`), mapped to pixels with the box."""
    if mode == "cliff":
        return project(kp3d, K[None, :, None])
    from fitlib.regression.camera import spin_project, weak_perspective_project

    box = (spin_project if mode == "spin" else weak_perspective_project)(kp3d, out.pelvis, out.cam)
    return out.centre[None, :, None, None] + 0.5 * out.size[None, :, None, None, None] * box


def regressor_loss(model: BodyModel, out: RegressorOutput, batch: Batch, weights: LossWeights, layout: str,
                   mode: str = "cliff") -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss (a scalar) and its terms (batch means, for the log).

    Per IEF iteration and hypothesis, per sample: 2D reprojection against the detector-like keypoints and
    against exact 2D (:func:`fitlib.losses.reprojection_loss`, Geman-McClure in units of the person's 2D
    size, each point weighted by its confidence², masked by ``has_detections`` / ``has_gt2d``), hip-aligned
    3D joints (:func:`~fitlib.losses.keypoint_3d_loss`, masked by ``has_3d``), rotation-matrix and betas
    MSE (:func:`~fitlib.losses.smpl_param_loss`, masked by ``has_smpl``), the shape prior
    (:meth:`~fitlib.losses.PriorTerms.shape`) and the camera term (:func:`~fitlib.losses.camera_front_loss`).
    Hypothesis 0 gets its loss; with H > 1, ``wta`` x the minimum over hypotheses is added (winner takes all).
    Iterations are summed (or only the last counts, ``last_iteration_only``).
    """
    lay = get_layout(layout)
    joints, kp3d, mask = predicted_keypoints(model, out, lay)
    I, B, H = out.betas.shape[:3]
    proj = project_estimates(out, kp3d, batch.K, mode)
    ones = torch.ones(len(lay), dtype=proj.dtype, device=proj.device)
    det_xy, det_w, det_use = losses.clean_keypoints(batch.keypoints, mask, ones, 0.0, True)
    gt_xy, gt_w, gt_use = losses.clean_keypoints(batch.gt_keypoints2d, mask, ones, 0.5, True)
    has_gt2d = batch.has_gt2d[:, None]  # the person's size from exact 2D where there is some (pseudo-labels: none)
    ref_xy = torch.where(has_gt2d[..., None], gt_xy, det_xy)
    scale = losses.canonical_scale(ref_xy, torch.where(has_gt2d, gt_use, det_use)) / losses.CANONICAL_SIZE  # 1 / size (px)
    sigma = weights.robust_sigma
    n = float(len(lay))
    l2d_det = losses.reprojection_loss(proj, det_xy[None, :, None], det_w[None, :, None], scale[None, :, None], sigma) / n
    l2d_gt = losses.reprojection_loss(proj, gt_xy[None, :, None], gt_w[None, :, None], scale[None, :, None], sigma) / n
    l3d = losses.keypoint_3d_loss(joints, batch.joints[None, :, None], torch.ones(24, device=proj.device), root=HIPS) / 24
    gt_rot = roma.rotvec_to_rotmat(batch.pose)[None, :, None]
    lpose, lbetas = losses.smpl_param_loss(out.rotmat, gt_rot.expand_as(out.rotmat), out.betas,
                                           batch.betas[None, :, None].expand_as(out.betas), batch.has_smpl[None, :, None])
    lpose = lpose / 24
    lprior = losses.PriorTerms.shape(out.betas)
    lcam = losses.camera_front_loss(out.cam[..., 0])
    f = lambda m: m.to(proj.dtype)[None, :, None]  # noqa: E731
    w = weights
    terms = {"2d_det": w.keypoints2d_detected * l2d_det * f(batch.has_detections),
             "2d_gt": w.keypoints2d_gt * l2d_gt * f(batch.has_gt2d),
             "3d": w.keypoints3d * l3d * f(batch.has_3d), "pose": w.pose * lpose, "betas": w.betas * lbetas,
             "betas_prior": w.betas_prior * lprior, "camera": w.camera * lcam}
    per = sum(terms.values())  # [I, B, H]
    if w.last_iteration_only:
        per = per[-1:]
    total = per[..., 0]
    if H > 1:
        total = total + w.wta * per.min(-1).values
    loss = total.sum(0).mean()
    log = {k: float(v[-1, :, 0].detach().mean()) for k, v in terms.items()}
    log["loss"] = float(loss.detach())
    return loss, log


def select_hypothesis(proj: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """[B] index of the hypothesis whose projected keypoints ``proj`` [B, H, J, 2] are closest (mean px,
    over ``visible`` [B, J] points, confidence weighted) to the input ``keypoints`` [B, J, 3]."""
    w = torch.where(visible, torch.nan_to_num(keypoints[..., 2]), torch.zeros_like(keypoints[..., 2]))
    d = (proj - torch.nan_to_num(keypoints[:, None, :, :2])).norm(dim=-1)  # [B, H, J]
    err = (d * w[:, None]).sum(-1) / w.sum(-1, keepdim=True).clamp_min(1e-9)
    return err.argmin(-1)


def forward_batch(net, batch: Batch) -> RegressorOutput:
    """The network (or its DDP wrapper) on a batch: keypoints, intrinsics and, for an image network, the crops
    and their boxes, and the world landmarks where the batch has them."""
    return net(batch.keypoints, batch.K, batch.images, batch.centre, batch.size, world=batch.world)


@torch.no_grad()
def validate(net: Regressor, model: BodyModel, gen, samples: int, batch_size: int = 512) -> dict:
    """Validation metrics on ``samples`` fixed samples of ``gen`` (anything with ``batch(step, n) -> Batch``):
    PA-MPJPE-14 and MPJPE-14 (mm, over the samples with 3D) of the selected hypothesis (by 2D error), of
    hypothesis 0 and of the best one (an oracle); ``err2d_px``: the selected hypothesis' mean distance (px)
    to the exact 2D points (the detections where a sample has none). Metrics without samples are NaN."""
    was = net.training
    net.eval()
    keys = ("pa_mpjpe14", "mpjpe14", "pa_mpjpe14_h0", "pa_mpjpe14_oracle", "err2d_px")
    res: dict[str, list] = {k: [] for k in keys}
    layout, mode = net.config.layout, net.config.camera
    dev = next(net.parameters()).device
    for step in range(math.ceil(samples / batch_size)):
        b = gen.batch(step, min(batch_size, samples - step * batch_size)).to(dev)
        out = forward_batch(net, b)
        joints, kp3d, mask = predicted_keypoints(model, out, layout)
        proj = project_estimates(out, kp3d, b.K, mode)[-1]  # [B, H, J, 2]
        joints = joints[-1]
        pick = select_hypothesis(proj, b.keypoints, out.visible & mask)
        rows = torch.arange(len(pick), device=dev)
        ref = torch.where(b.has_gt2d[:, None, None], b.gt_keypoints2d, b.keypoints)
        use = torch.isfinite(ref).all(-1) & (ref[..., 2] > 0) & mask
        d = (proj[rows, pick] - ref[..., :2].nan_to_num()).norm(dim=-1)
        n = use.sum(-1)
        res["err2d_px"].append(((d * use).sum(-1) / n.clamp_min(1))[n > 0])
        m3 = b.has_3d
        if m3.any():
            gt14 = metrics.lsp14(b.joints[m3].double())
            j3 = joints[m3]
            pa_all = torch.stack([metrics.pa_mpjpe(metrics.lsp14(j3[:, h].double()), gt14)
                                  for h in range(j3.shape[1])], 1) * 1000  # [B3, H]
            p3 = pick[m3]
            sel = j3[torch.arange(len(p3), device=dev), p3]
            res["pa_mpjpe14"].append(pa_all.gather(1, p3[:, None])[:, 0])
            res["pa_mpjpe14_h0"].append(pa_all[:, 0])
            res["pa_mpjpe14_oracle"].append(pa_all.min(1).values)
            res["mpjpe14"].append(metrics.mpjpe(metrics.lsp14(sel.double()), gt14, root=metrics.LSP14_HIPS) * 1000)
    net.train(was)
    return {k: float(torch.cat(v).double().mean()) if v and sum(len(t) for t in v) else float("nan")
            for k, v in res.items()}


def val_score(v: dict) -> float:
    """What selects the best weights: PA-MPJPE-14 where the validation samples have 3D, else the 2D error."""
    return v["pa_mpjpe14"] if math.isfinite(v["pa_mpjpe14"]) else v["err2d_px"]


def _lr(cfg: TrainConfig, step: int) -> float:
    total = cfg.epochs * cfg.steps_per_epoch
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _save_state(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            pass
    return rows


def plot_curves(rows: list[dict], path: Path) -> None:
    """Training loss (left axis, log) and validation PA-MPJPE-14 (right; the 2D error in px when the validation
    samples have no 3D) against step, as a PNG (OpenCV)."""
    import cv2

    W, Hh, m = 900, 500, 60
    img = np.full((Hh, W, 3), 255, np.uint8)
    tr = [(r["step"], r["loss"]) for r in rows if "loss" in r and r["loss"] > 0]
    va = [(r["step"], r["val_pa_mpjpe14"]) for r in rows if math.isfinite(r.get("val_pa_mpjpe14", math.nan))]
    what = "PA-MPJPE-14", "mm"
    if not va:  # 2D-only validation (an image regressor on 2D-labelled sets)
        va = [(r["step"], r["val_err2d_px"]) for r in rows if math.isfinite(r.get("val_err2d_px", math.nan))]
        what = "2D error", "px"
    if not tr:
        return
    smax = max(s for s, _ in tr + va) or 1
    def curve(pts, lo, hi, colour, log=False):  # noqa: E306
        if not pts:
            return
        f = (lambda v: math.log10(v)) if log else (lambda v: v)
        a, b = f(lo), f(hi)
        xy = [(int(m + (W - 2 * m) * s / smax), int(Hh - m - (Hh - 2 * m) * (f(v) - a) / max(b - a, 1e-9)))
              for s, v in pts]
        cv2.polylines(img, [np.array(xy, np.int32)], False, colour, 1 if len(pts) > 50 else 2, cv2.LINE_AA)
    lv = [v for _, v in tr]
    curve(tr, min(lv), max(lv), (200, 80, 0), log=True)
    if va:
        vv = [v for _, v in va]
        curve(va, min(vv) * 0.95, max(vv) * 1.05, (0, 0, 220))
        cv2.putText(img, f"val {what[0]} (red): {vv[-1]:.1f} {what[1]} (best {min(vv):.1f})", (m, 30),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 220), 1, cv2.LINE_AA)
    cv2.putText(img, f"train loss (blue, log): {min(lv):.3g}..{max(lv):.3g}", (m, 52), cv2.FONT_HERSHEY_SIMPLEX,
                0.55, (200, 80, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (m, m), (W - m, Hh - m), (0, 0, 0), 1)
    cv2.putText(img, f"step 0..{smax}", (m, Hh - 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    with atomic_write(path) as fh:
        fh.write(png.tobytes())


def train(config, out: str | Path, body_model: BodyModel | str | Path | None = None, progress: bool = True,
          stop_after: int | None = None, info: dict | None = None, init_weights: str | Path | None = None,
          pseudo_labels=None, encoder_weights: str | Path | None = None, extra_poses: torch.Tensor | None = None) -> dict:
    """Train (or resume) a regressor in ``out``; returns the final validation metrics and paths.

    The data: a keypoint regressor trains on synthetic samples (:class:`SampleGenerator`) plus, in the loop,
    pseudo-labels; an image regressor (``model.encoder: image``) on the SPIN-format sets of ``images``
    (:class:`~fitlib.training.image_samples.ImageSamples`, with the store's pseudo-labels matched in).

    Data-parallel when ``torch.distributed`` is initialised (e.g. by Ray Train's ``TorchTrainer``,
    :mod:`fitlib.training.ray_train`): every worker draws the same batch of ``batch_size`` samples and
    computes its share (``rank::world_size``), gradients are averaged (DDP); rank 0 alone writes the log,
    checkpoints and weights (a multi-machine run needs ``out`` on storage all workers see, to resume).

    Args:
        config: a training config (:func:`~fitlib.training.config.load_train_config`).
        out: the run folder.
        body_model: the model the samples are posed with and the network is trained for (a
            :class:`BodyModel`, ``"open"`` (default) or an SMPL file / folder; recorded in the weights' header).
        stop_after: stop (as if killed, after a checkpoint) at this step (for tests of resuming).
        info: recorded in the saved weights' header.
        init_weights: a regressor file to start from (same network settings, or the same without the world-landmark
            branch, which then starts at zero) instead of random weights.
        pseudo_labels: a :class:`~fitlib.training.pseudo_labels.PseudoLabels`: that fraction of each batch
            (``loop.pseudo_fraction``) comes from it, the rest is synthetic (keypoint regressors).
        encoder_weights: ImageNet (torchvision ``resnet50``) or SPIN backbone weights for a new image
            regressor's ResNet-50 (:func:`fitlib.regression.resnet.load_backbone_weights`).
        extra_poses: [M, 24, 3] camera-frame poses added to the synthetic samples' motion (keypoint regressors;
            :class:`SampleGenerator`).
    """
    from tqdm import tqdm

    cfg: TrainConfig = load_train_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = body_model if isinstance(body_model, BodyModel) else load_body_model(body_model or "open")
    identity = open_model_identity() if model.name == "open" else f"smpl:{model.name}"
    dev = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if cfg.device == "auto" else cfg.device))
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
    if dist and dev.type == "cuda" and cfg.device == "auto":
        dev = torch.device("cuda", torch.cuda.current_device())
    # the loss's copy of the body model on the training device (samples are posed on the CPU)
    loss_model = model if dev == model.joint_template.device else copy.deepcopy(model).to(dev)
    torch.manual_seed(cfg.seed)
    net = Regressor(cfg.model).to(dev)
    if encoder_weights is not None:
        if cfg.model.encoder != "image":
            raise ValueError("encoder weights are for an image regressor (model.encoder: image)")
        from fitlib.regression.resnet import load_backbone_weights

        load_backbone_weights(net.encoder.backbone, encoder_weights)
    if init_weights is not None:
        from fitlib.regression.checkpoint import load_regressor

        start, _ = load_regressor(init_weights, dev)
        # a network without the world-landmark branch starts one with it (the branch starts at zero)
        adds_world = cfg.model.world_landmarks and not start.config.world_landmarks
        state = _grown_input(start, net, init_weights)
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes differ
            raise ValueError(f"{init_weights}: its network does not match the config's model settings ({exc})") from None
        if unexpected or any(not (adds_world and k.startswith("encoder.world_inp.")) for k in missing):
            hint = (" (it has the world-landmark branch: set model.world_landmarks: true)"
                    if start.config.world_landmarks and not cfg.model.world_landmarks else "")
            raise ValueError(f"{init_weights}: its network does not match the config's model settings{hint} "
                             f"(missing {missing}, unexpected {unexpected})")
    n_pseudo = 0 if pseudo_labels is None else int(round(cfg.batch_size * cfg.loop.pseudo_fraction))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val_samples = cfg.val_samples
    if cfg.model.encoder == "image":
        from fitlib.training.image_samples import ImageSamples

        if pseudo_labels is not None:
            raise ValueError("an image regressor takes its pseudo-labels from images.pseudo_labels (a label store)")
        img = cfg.images
        train_gen = ImageSamples(img.train, model, cfg.model.layout, cfg.model.image_size, img.augment, cfg.seed,
                                 "train", img.loader_threads, img.pseudo_labels)
        val_gen = ImageSamples(img.val or img.train, model, cfg.model.layout, cfg.model.image_size, None, cfg.seed + 1,
                               "val", img.loader_threads)
        val_samples = min(val_samples, len(val_gen))
    else:
        train_gen = SampleGenerator(model, cfg.data, "train", cfg.model.layout, cfg.seed, extra_poses=extra_poses)
        val_gen = SampleGenerator(model, cfg.data, "val", cfg.model.layout, cfg.seed + 1)
    use_amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    train_net = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    lead = rank == 0
    ckpt, log_path = out / "checkpoint.pt", out / "log.jsonl"
    step, best, seconds = 0, float("inf"), 0.0
    cfg_json = cfg.model_dump_json(exclude={"device"})  # a run may resume on another device
    if ckpt.is_file():
        try:
            state = torch.load(ckpt, map_location=dev, weights_only=True)
        except Exception as exc:
            raise ValueError(f"{ckpt}: cannot resume, the checkpoint is damaged ({exc}); delete it to start over") from None
        saved = state.get("config", "{}")
        try:  # settings added to fitlib since the run started take their defaults
            saved = TrainConfig.model_validate_json(saved).model_dump_json(exclude={"device"})
        except ValueError:
            pass
        if saved != cfg_json:
            old = json.loads(saved)
            new = json.loads(cfg_json)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f"{ckpt}: the run in {out} was started with another config (differs in {diff}); "
                             f"use a new --out folder or the same config")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best, seconds = int(state["step"]), float(state["best"]), float(state["seconds"])
    rows = [r for r in _read_log(log_path) if r["step"] <= step]
    if lead:
        with atomic_write(log_path) as fh:  # drop what a killed run logged after its last checkpoint
            fh.write("".join(json.dumps(r) + "\n" for r in rows).encode())
    total = cfg.epochs * cfg.steps_per_epoch
    meta = {"config": cfg.model_dump(), **(info or {})}

    def checkpoint():
        if not lead:
            return
        _save_state(ckpt, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step, "best": best,
                           "seconds": seconds, "config": cfg_json})

    net.train()
    bar = tqdm(total=total, initial=step, desc="train-regressor", unit="step", disable=not (progress and lead),
               dynamic_ncols=True)
    logf = open(log_path, "a") if lead else open(os.devnull, "w")
    try:
        while step < total:
            t0 = time.perf_counter()
            if cfg.model.encoder == "image":
                batch = train_gen.batch(step, cfg.batch_size, shard=(rank, world))
            else:
                parts = [train_gen.batch(step, cfg.batch_size - n_pseudo)] if n_pseudo < cfg.batch_size else []
                if n_pseudo:
                    parts.append(pseudo_labels.batch(step, n_pseudo, cfg.seed))
                batch = Batch.cat(parts)
                if world > 1:
                    batch = batch.rows(slice(rank, None, world))
            batch = batch.to(dev)
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, step)
            torch.manual_seed((cfg.seed * 1_000_003 + step) * world + rank)  # dropout, reproducible on resume
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                outp = forward_batch(train_net, batch)
            if use_amp:  # the loss in float32
                outp = dataclasses.replace(outp, **{f.name: getattr(outp, f.name).float() for f in dataclasses.fields(outp)
                                                    if isinstance(getattr(outp, f.name), torch.Tensor)})
            loss, terms = regressor_loss(loss_model, outp, batch, cfg.loss, cfg.model.layout, cfg.model.camera)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            step += 1
            seconds += time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items() if k in ("loss", "2d_det", "3d", "pose")})
            if step % cfg.log_every == 0:
                logf.write(json.dumps({"step": step, "lr": _lr(cfg, step - 1), "seconds": round(seconds, 2),
                                       **terms}) + "\n")
                logf.flush()
            epoch_end = step % cfg.steps_per_epoch == 0
            if epoch_end and lead:
                v = validate(net, loss_model, val_gen, val_samples, 64 if cfg.model.encoder == "image" else 512)
                row = {"step": step, "epoch": step // cfg.steps_per_epoch, "seconds": round(seconds, 2),
                       **{f"val_{k}": round(x, 3) for k, x in v.items()}}
                logf.write(json.dumps(row) + "\n")
                logf.flush()
                if math.isfinite(v["pa_mpjpe14"]):
                    bar.write(f"epoch {row['epoch']}: val PA-MPJPE-14 {v['pa_mpjpe14']:.1f} mm (h0 "
                              f"{v['pa_mpjpe14_h0']:.1f}, oracle {v['pa_mpjpe14_oracle']:.1f}), MPJPE-14 "
                              f"{v['mpjpe14']:.1f} mm, 2D {v['err2d_px']:.1f} px")
                else:
                    bar.write(f"epoch {row['epoch']}: val 2D error {v['err2d_px']:.1f} px (no 3D in the validation samples)")
                net.eval()
                save_regressor(out / "regressor_last.pt", net, identity,
                               {**meta, "step": step, "val": v}, half=True)
                if val_score(v) < best:
                    best = val_score(v)
                    save_regressor(out / "regressor.pt", net, identity,
                                   {**meta, "step": step, "val": v}, half=True)
                net.train()
                plot_curves(_read_log(log_path), out / "loss_curve.png")
            if epoch_end or step % cfg.checkpoint_every == 0:
                checkpoint()
            if stop_after is not None and step >= stop_after:
                break
    finally:
        logf.close()
        bar.close()
    rows = _read_log(log_path)
    vals = [r for r in rows if "epoch" in r]
    return {"step": step, "best_val": best, "last": vals[-1] if vals else None, "seconds": seconds,
            "out": str(out)}
