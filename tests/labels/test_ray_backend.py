"""Label jobs on a local Ray cluster: the same store as the local job, also when a worker dies."""
import os
import signal

import numpy as np
import pytest

pytest.importorskip("ray")

from fitlib.labels import LabelStore, items, run_label_job  # noqa: E402


def _labels(path):
    with LabelStore(path) as st:
        return {lab.key: lab for lab in st.labels()}


def _kill_one_worker() -> bool:
    """SIGKILL one Ray worker process holding a LabelWorker actor (found by its process title, Linux)."""
    from pathlib import Path

    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and b"LabelWorker" in title:
            os.kill(int(proc.name), signal.SIGKILL)
            return True
    return False


def test_ray_job_equals_local_job_even_when_a_worker_dies(ray_cluster, label_set, tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("batch_images: 2\n")
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray worker runs: the same float32 sums
    try:
        local = run_label_job(items([label_set]), tmp_path / "local.sqlite", label_config=str(cfg), progress=False)
    finally:
        torch.set_num_threads(threads)
    killed = []

    def kill_after_first(summary):
        if not killed:
            killed.append(_kill_one_worker())

    remote = run_label_job(items([label_set]), tmp_path / "ray.sqlite", label_config=str(cfg), ray=True, workers=2,
                           progress=False, on_shard=kill_after_first)
    assert killed == [True]
    assert (remote.done, remote.fitted, remote.new, remote.invalid) == (local.done, local.fitted, local.new, local.invalid)
    a, b = _labels(tmp_path / "local.sqlite"), _labels(tmp_path / "ray.sqlite")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].pose, b[k].pose, atol=1e-6)
        assert a[k].valid == b[k].valid
