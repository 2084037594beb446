"""Training in the loop, end to end at a tiny size: label, train on pseudo-labels, resume."""
import json

import torch

from fitlib.regression.checkpoint import shipped_path
from fitlib.datasets.batch import Batch
from fitlib.training.loop import train_loop
from fitlib.training.pseudo_labels import PseudoLabels


def _config():
    return {"batch_size": 16, "epochs": 1, "steps_per_epoch": 4, "val_samples": 32, "checkpoint_every": 2,
            "log_every": 1, "loop": {"rounds": 1, "steps_per_round": 3, "pseudo_fraction": 0.5},
            "model": {"world_landmarks": True, "layout": "coco17_feet"},  # the shipped network's settings
            "data": {"p_world": 0.75, "p_feet": 0.5}}


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


def test_an_image_regressor_loops_on_real_photos(photo_set, detections_npz, tmp_path, open_model):
    """SPIN's loop on the image path: the label job runs the image regressor on each person's crop and refines
    it, and the next round trains on the photos' samples with those fits attached as their SMPL labels."""
    from fitlib.labels import LabelStore
    from fitlib.regression.checkpoint import load_regressor

    cfg = {"seed": 2, "batch_size": 4, "epochs": 1, "steps_per_epoch": 2, "warmup_steps": 1, "val_samples": 4,
           "checkpoint_every": 2, "log_every": 1,
           "model": {"encoder": "image", "image_size": 64, "camera": "spin", "head_hidden": 64, "dropout": 0.0},
           "images": {"train": [{"npz": str(detections_npz), "image_root": str(photo_set.root)}]},
           "loop": {"rounds": 1, "steps_per_round": 2}}
    out, store = tmp_path / "run", tmp_path / "labels.sqlite"
    rows = train_loop(cfg, out, store, [str(photo_set.root)], progress=False, body_model=open_model)
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["labels"]["fitted"] == len(photo_set.imgname) and rows[1]["labels"]["failed"] == 0
    with LabelStore(store) as st:
        labels = list(st.labels())
        assert len(st.jobs()) == 1  # one job: the default config with round 0's image regressor
    assert {lab.item for lab in labels} == set(photo_set.imgname)
    net, _ = load_regressor(out / "round_1" / "regressor.pt")
    assert net.config.encoder == "image"
    # the round's samples had their people's fits attached (what round 1 trained on)
    from fitlib.datasets.spin_data import SpinDataset
    from fitlib.training.image_samples import attach_pseudo_labels

    usable = sum(lab.valid and lab.has_smpl for lab in labels)
    assert usable >= 3 and attach_pseudo_labels(SpinDataset(detections_npz, photo_set.root, open_model), store) == usable
