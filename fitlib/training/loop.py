"""Training in the loop (SPIN's idea, on fitlib's store): the regressor initialises the fitter, the refined fits
are kept per sample when better than the stored ones, and the stored valid fits supervise the regressor.

``fitlib train-regressor --loop --store S --unlabelled SOURCE...``: a first run as without ``--loop`` (or
``--init`` weights), then ``loop.rounds`` rounds of (1) a label job over the unlabelled sources
(:func:`fitlib.labels.run_label_job`, 2D keypoints only: detected or given) with the current regressor as the
fitter's init, written to the store as round ``r``; (2) ``loop.steps_per_round`` training steps from the
current weights on batches mixing synthetic 3D-supervised samples and the store's pseudo-labels
(:class:`~fitlib.training.pseudo_labels.PseudoLabels`). Each round has its run folder ``round_<r>/``.

An image regressor (``model.encoder: image``) loops the same way, as SPIN does: the label job runs it on each
person's crop (the sources are then the image sets' images), and in (2) the store's fits supervise the samples
of the image sets they match (same image, overlapping box: ``images.pseudo_labels``) instead of synthetic
samples.

Resumable: a killed loop started again skips finished rounds (their weights exist), the label job skips the
items its regressor already labelled, and a training run resumes from its checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

from fitlib.io.atomic import atomic_write
from fitlib.training.config import load_train_config
from fitlib.training.trainer import train


def round_config(cfg, r: int):
    """The training config of loop round ``r`` (>= 1): one epoch of ``loop.steps_per_round`` steps at ``loop.lr``."""
    steps = cfg.loop.steps_per_round
    return cfg.model_copy(update={"epochs": 1, "steps_per_epoch": steps, "lr": cfg.loop.lr,
                                  "warmup_steps": min(cfg.warmup_steps, steps // 5), "seed": cfg.seed + 1000 * r,
                                  "checkpoint_every": min(cfg.checkpoint_every, steps)})


def train_loop(config, out: str | Path, store: str | Path, unlabelled: list[str], *, init_weights: str | Path | None = None,
               ray: str | bool | None = None, progress: bool = True, body_model=None) -> list[dict]:
    """Run (or resume) training in the loop; returns one row per round (the label job's counts, the training's
    validation metrics, the weights' path), also written to ``out/loop.json``.

    Args:
        config: a training config with its ``loop`` section.
        out: the run folder (``round_0/`` ... ``round_<R>/``).
        store: the label store file.
        unlabelled: label sources (:func:`fitlib.labels.items`): images, videos, keypoint files, 3DPW-format
            sets (their ground truth unused).
        init_weights: a regressor to start from instead of the first run.
        ray: run the label jobs on Ray (see :func:`fitlib.labels.run_label_job`).
        body_model: ``"open"`` (default) or an SMPL file / folder (label jobs and training), or the loaded open
            model.
    """
    from fitlib.body.model import load_body_model
    from fitlib.fitting import load_config
    from fitlib.labels import items, run_label_job
    from fitlib.training.pseudo_labels import PseudoLabels

    cfg = load_train_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if body_model is None or isinstance(body_model, (str, Path)):
        label_model = str(body_model or "open")
        model = load_body_model(label_model)
    else:  # a loaded model: the label jobs need what it was loaded from
        model, label_model = body_model, "open"
        if body_model.name != "open":
            raise ValueError("train_loop: pass an SMPL body model as its file or folder (the label jobs load it too)")
    history: list[dict] = []
    if init_weights is None:
        res = train(cfg, out / "round_0", model, progress=progress)
        current = Path(res["out"]) / "regressor.pt"
        history.append({"round": 0, "val": res["last"], "weights": str(current)})
    else:
        current = Path(init_weights)
        history.append({"round": 0, "val": None, "weights": str(current)})
    for r in range(1, cfg.loop.rounds + 1):
        fit_cfg = load_config(cfg.loop.fit_config)
        if fit_cfg.start != "regressor":
            raise ValueError(f"loop.fit_config {cfg.loop.fit_config!r} does not start from the regressor (start: "
                             f"{fit_cfg.start}); the loop needs one that does")
        fit_cfg = fit_cfg.replace(regressor=str(current))
        summary = run_label_job(items(unlabelled, every=cfg.loop.every), store, model=label_model, config=fit_cfg,
                                label_config=cfg.loop.label_config, round=r, ray=ray, progress=progress)
        rcfg = round_config(cfg, r)
        if cfg.model.encoder == "image":  # the store's fits supervise the image sets' samples they match
            rcfg = rcfg.model_copy(update={"images": rcfg.images.model_copy(update={"pseudo_labels": str(store)})})
            pseudo = None
        else:
            pseudo = PseudoLabels(store, model, cfg.model.layout, smpl_only=cfg.loop.smpl_only)
        motion = pseudo.pose[pseudo.has_smpl] if pseudo is not None and cfg.loop.as_motion else None
        res = train(rcfg, out / f"round_{r}", model, progress=progress, init_weights=current,
                    pseudo_labels=pseudo, info={"loop_round": r, "store": str(store)}, extra_poses=motion)
        current = Path(res["out"]) / "regressor.pt"
        row = {"round": r, "labels": {k: getattr(summary, k) for k in
                                      ("fitted", "new", "replaced", "kept", "invalid", "failed")},
               "val": res["last"], "weights": str(current)}
        if pseudo is not None:
            row.update(pseudo_labels=len(pseudo), with_smpl=int(pseudo.has_smpl.sum()))
        history.append(row)
        with atomic_write(out / "loop.json") as fh:
            fh.write(json.dumps(history, indent=1).encode())
    return history
