"""Training in the loop, end to end at a tiny size: label, train on pseudo-labels, resume."""
import json

import numpy as np
import torch

from fitlib.regression.checkpoint import shipped_path
from fitlib.training.data import Batch
from fitlib.training.loop import train_loop
from fitlib.training.pseudo_labels import PseudoLabels


def _config():
    return {"batch_size": 16, "epochs": 1, "steps_per_epoch": 4, "val_samples": 32, "checkpoint_every": 2,
            "log_every": 1, "loop": {"rounds": 1, "steps_per_round": 3, "pseudo_fraction": 0.5}}


def test_loop_trains_on_its_own_labels_and_resumes(tiny_3dpw, tmp_path, open_model):
    root, _ = tiny_3dpw
    out, store = tmp_path / "run", tmp_path / "labels.sqlite"
    rows = train_loop(_config(), out, store, [str(root)], init_weights=shipped_path(), progress=False,
                      body_model=open_model)
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["labels"]["fitted"] == 4 and rows[1]["pseudo_labels"] >= 3
    assert (out / "round_1" / "regressor.pt").is_file()
    assert json.loads((out / "loop.json").read_text())[-1]["round"] == 1
    w1 = (out / "round_1" / "regressor.pt").read_bytes()
    again = train_loop(_config(), out, store, [str(root)], init_weights=shipped_path(), progress=False,
                       body_model=open_model)
    assert again[1]["labels"]["fitted"] == 0  # the round's labelling was done: nothing refitted
    assert (out / "round_1" / "regressor.pt").read_bytes() == w1  # and its training finished: unchanged

    labels = PseudoLabels(store, open_model)
    b = labels.batch(0, 8)
    assert isinstance(b, Batch) and b.keypoints.shape == (8, 17, 3)
    assert not b.has_3d.any() and not b.has_gt2d.any() and b.has_detections.all()
    assert torch.equal(labels.batch(3, 8).pose, labels.batch(3, 8).pose)  # reproducible per step
    # the label's parameters reproduce its keypoints: supervision and 2D agree
    from fitlib.camera import project

    body = open_model(b.pose, b.betas, b.transl, layout="coco17")
    err = (project(body.keypoints, b.K) - b.keypoints[..., :2]).norm(dim=-1)
    conf = b.keypoints[..., 2] > 0.3
    assert float(err[conf].median()) < 25.0
