"""Label jobs on a Ray cluster (``pip install "fitlib[ray]"``).

Each worker is a Ray actor holding one :class:`~fitlib.labels.job.LabelWorker` (one Fitter, one CPU, or one
GPU when the cluster has them and ``device="cuda"``); shards of items go out to whichever actor is free and
their outcomes come back to the driver, which alone writes the store (:func:`fitlib.labels.job.update_store`),
so the store's guarantees stay those of a local job. Ray does the scheduling and the retries: an actor that
dies is restarted and the shard it was working on is sent again (``max_restarts`` / ``max_task_retries``), so
a job's results equal the local job's. At most ``2 x workers`` shards are in flight, so a long source is never
held in memory at once.

Clusters (Ray's own commands)::

    ray start --head --port=6379                 # on the first machine
    ray start --address=HEAD_IP:6379             # on every other machine
    fitlib label SOURCE... --store labels.sqlite --ray HEAD_IP:6379

Without an address, ``--ray`` joins the cluster this machine belongs to or starts a local one. Image files
are read by the workers: on several machines they must be at the same path on each (a shared file system);
video frames and keypoint samples travel with the shards.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from fitlib.labels.job import ItemOutcome, LabelWorker
from fitlib.labels.sources import Item

MAX_RESTARTS = 4
"""How often Ray restarts a dead worker (and resends its shard) before the job fails."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError('label jobs on Ray need Ray: pip install "fitlib[ray]"') from None
    return ray


def connect(address: str | None = None, num_cpus: int | None = None):
    """Join the Ray cluster at ``address`` (None: the one this machine belongs to, else a new local one with
    ``num_cpus`` CPUs). Returns the ``ray`` module. Does nothing when Ray is already initialised."""
    ray = _ray()
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            try:
                ray.init(address="auto", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError):
                ray.init(num_cpus=num_cpus, log_to_driver=False)
    return ray


def run_shards_on_ray(shards: Iterable[list[Item]], address: str | None, workers: int | None,
                      worker_args: dict) -> Iterator[list[ItemOutcome]]:
    """Process shards on Ray actors; yields each shard's outcomes as it completes (in completion order).

    Args:
        shards: lists of items.
        address: the cluster (see :func:`connect`).
        workers: number of actors (default: the cluster's CPUs, at least 1).
        worker_args: :class:`LabelWorker`'s keyword arguments (the model as ``"open"`` or a path every
            machine can read, configs as dicts).
    """
    ray = connect(address)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    gpu = 1 if str(worker_args.get("device") or "").startswith("cuda") else 0
    Actor = ray.remote(num_cpus=1, num_gpus=gpu, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(LabelWorker)
    actors = [Actor.remote(threads=1, **worker_args) for _ in range(workers)]
    try:
        pool = ray.util.ActorPool(actors)
        pending = 0
        it = iter(shards)
        exhausted = False
        while True:
            while not exhausted and pending < 2 * workers:
                shard = next(it, None)
                if shard is None:
                    exhausted = True
                    break
                pool.submit(lambda a, s: a.process.remote(s), shard)
                pending += 1
            if not pending:
                return
            yield pool.get_next_unordered()
            pending -= 1
    finally:
        for a in actors:
            ray.kill(a)

