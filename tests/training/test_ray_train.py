"""Data-parallel training through Ray Train on a local 2-CPU cluster: two workers give the weights one process
gives on the same batches (DDP averages the halves' gradients), and a run resumes from its checkpoint."""
import pytest
import torch

pytest.importorskip("ray.train.torch")  # pip install "fitlib[ray]"

from fitlib.training.ray_train import train_on_ray  # noqa: E402
from fitlib.training.trainer import train  # noqa: E402

TINY = {"seed": 3, "batch_size": 8, "epochs": 1, "steps_per_epoch": 4, "warmup_steps": 1, "checkpoint_every": 2,
        "log_every": 1, "val_samples": 8, "threads": 1,
        "model": {"encoder_hidden": 16, "encoder_blocks": 1, "head_hidden": 32, "hypotheses": 2, "dropout": 0.0}}


def _weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def test_two_workers_train_as_one_process(ray_cluster, tmp_path):
    cut = train_on_ray(TINY, tmp_path / "ray", workers=2, stop_after=2)  # "killed" after step 2's checkpoint
    assert cut["step"] == 2
    res = train_on_ray(TINY, tmp_path / "ray", workers=2)  # resumes
    assert res["step"] == 4 and (tmp_path / "ray" / "regressor.pt").is_file()
    train(TINY, tmp_path / "local", progress=False)
    a, b = _weights(tmp_path / "ray"), _weights(tmp_path / "local")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 1e-5, diff
    # and the workers did learn: the weights moved from their start
    start = train({**TINY, "epochs": 1, "steps_per_epoch": 1}, tmp_path / "one", progress=False)
    assert start["step"] == 1
    assert max(float((a[k] - _weights(tmp_path / "one")[k]).abs().max()) for k in a) > 1e-4


def test_an_image_regressor_trains_on_two_workers(ray_cluster, photo_set, detections_npz, tmp_path):
    """The image path on Ray: each worker crops its half of every batch (BatchNorm statistics are per worker,
    as in any data-parallel run without SyncBatchNorm)."""
    from fitlib.regression.checkpoint import load_regressor

    cfg = {"seed": 1, "batch_size": 4, "epochs": 1, "steps_per_epoch": 2, "warmup_steps": 1, "log_every": 1,
           "val_samples": 4, "threads": 1,
           "model": {"encoder": "image", "image_size": 64, "camera": "spin", "head_hidden": 64, "dropout": 0.0},
           "images": {"train": [{"npz": str(detections_npz), "image_root": str(photo_set.root)}], "loader_threads": 1}}
    res = train_on_ray(cfg, tmp_path / "img", workers=2)
    assert res["step"] == 2
    net, _ = load_regressor(tmp_path / "img" / "regressor.pt")
    assert net.config.encoder == "image"
