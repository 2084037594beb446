"""Data-parallel training on a Ray cluster through Ray Train (``pip install "fitlib[ray]"``).

:func:`train_on_ray` runs :func:`fitlib.training.trainer.train` in ``workers`` processes of a Ray Train
``TorchTrainer``: Ray starts the workers (one GPU each with ``use_gpu``, else one CPU), sets up
``torch.distributed`` (NCCL on GPUs, Gloo on CPUs) and restarts a failed run; the trainer wraps the network in
DDP, each worker computes its share of every batch and rank 0 writes the log, the checkpoints and the weights.
A killed run started again resumes from ``out/checkpoint.pt`` like a local one.

Clusters (Ray's own commands)::

    ray start --head --port=6379                  # on the first machine
    ray start --address=HEAD_IP:6379              # on every other machine
    fitlib train-regressor --config my.yaml --out /shared/run --ray HEAD_IP:6379 --workers 8 --gpu

Every machine needs fitlib installed and the image sets at the same paths; ``out`` must be on storage all
workers see for a multi-machine run to resume (rank 0 writes it, every worker reads it when resuming).
"""
from __future__ import annotations

from pathlib import Path

from fitlib.labels.ray_backend import connect


def _worker(args: dict) -> None:
    """One Ray Train worker: the local trainer, data-parallel (``torch.distributed`` is set up by Ray)."""
    import ray.train

    from fitlib.training.trainer import train

    res = train(args["config"], args["out"], args.get("model"), progress=False, stop_after=args.get("stop_after"), info=args.get("info"),
                init_weights=args.get("init_weights"), encoder_weights=args.get("encoder_weights"))
    ray.train.report({"step": res["step"], "best_val": res["best_val"]})


def train_on_ray(config, out: str | Path, *, address: str | None = None, workers: int = 2, use_gpu: bool = False,
                 model: str | Path = "open", stop_after: int | None = None, info: dict | None = None,
                 init_weights: str | Path | None = None, encoder_weights: str | Path | None = None) -> dict:
    """Train (or resume) a regressor with ``workers`` data-parallel Ray Train workers; returns ``step``, ``best_val``
    (the best validation score) and ``seconds`` of rank 0's last checkpoint, ``last`` (the last validation row of
    the log) and ``out``, as :func:`~fitlib.training.trainer.train` does.

    Args:
        config: a training config (name, path, dict or :class:`~fitlib.training.config.TrainConfig`), resolved
            here and sent to the workers as settings.
        out: the run folder (absolute path used; see the module doc for clusters).
        address: the Ray cluster (None: the one this machine belongs to, else a new local one).
        workers: data-parallel workers; use_gpu: one GPU per worker.
        model: the body model, ``"open"`` or an SMPL file / folder (each worker loads it).
        stop_after, info, init_weights, encoder_weights: as for :func:`~fitlib.training.trainer.train`.
    """
    from fitlib.training.config import load_train_config

    connect(address)
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise ImportError(f'training on Ray needs Ray Train: pip install "fitlib[ray]" ({exc})') from None
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cfg = load_train_config(config)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args = {"config": cfg.model_dump(), "out": str(out), "stop_after": stop_after, "info": info,
            "model": "open" if str(model) == "open" else str(Path(model).resolve()),
            "init_weights": None if init_weights is None else str(Path(init_weights).resolve()),
            "encoder_weights": None if encoder_weights is None else str(Path(encoder_weights).resolve())}
    trainer = TorchTrainer(_worker, train_loop_config=args,
                           scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
                           run_config=RunConfig(name="fitlib-train", storage_path=str(out / "ray")))
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"training on Ray failed: {result.error}")
    import torch

    from fitlib.training.trainer import _read_log

    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)  # rank 0's last checkpoint
    vals = [r for r in _read_log(out / "log.jsonl") if "epoch" in r]
    return {"step": int(state["step"]), "best_val": float(state["best"]), "seconds": float(state["seconds"]),
            "last": vals[-1] if vals else None, "out": str(out)}
