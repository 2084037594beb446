"""The regressor's trainer: samples, one step lowers the loss, resuming after a kill, configs."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fitlib.datasets.mocap import EVAL_CLIPS
from fitlib.regression.model import Regressor
from fitlib.training.config import load_train_config
from fitlib.training.data import DataConfig, SampleGenerator
from fitlib.training.trainer import regressor_loss, train

TINY = {"seed": 3, "batch_size": 8, "epochs": 2, "steps_per_epoch": 3, "warmup_steps": 1, "checkpoint_every": 2,
        "log_every": 1, "val_samples": 8, "threads": 1,
        "model": {"encoder_hidden": 16, "encoder_blocks": 1, "head_hidden": 32, "hypotheses": 2}}


def test_samples_are_seeded_and_never_from_eval_clips(open_model):
    gen = SampleGenerator(open_model, seed=5)
    assert not set(gen.clips) & set(EVAL_CLIPS) and not set(gen.clips) & set(DataConfig().val_clips)
    a, b, c = gen.batch(7, 16), gen.batch(7, 16), gen.batch(8, 16)
    assert torch.equal(a.keypoints.nan_to_num(), b.keypoints.nan_to_num()) and torch.equal(a.pose, b.pose)
    assert not torch.equal(a.pose, c.pose)
    assert a.keypoints.shape == (16, 17, 3) and a.K.shape == (16, 3, 3)
    assert (a.transl[:, 2] > 1).all()  # in front of the camera
    # the exact 2D are the projections of the true keypoints
    from fitlib.camera import project
    kp = open_model(a.pose, a.betas, a.transl, layout="coco17").keypoints
    assert torch.allclose(project(kp, a.K), a.gt_keypoints2d[..., :2], atol=1e-2)
    with pytest.raises(ValueError, match="evaluation clips"):
        SampleGenerator(open_model, DataConfig(val_clips=["kick"]))


def test_one_step_lowers_the_loss_on_a_handful(open_model):
    cfg = load_train_config(TINY)
    torch.manual_seed(0)
    net = Regressor(cfg.model)
    net.head.drop1.p = net.head.drop2.p = 0.0
    batch = SampleGenerator(open_model, seed=1).batch(0, 6)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = regressor_loss(open_model, net(batch.keypoints, batch.K), batch, cfg.loss, "coco17")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[1] < losses[0] and losses[-1] < 0.4 * losses[0], losses


def test_resume_after_a_kill_matches_an_uninterrupted_run(open_model, tmp_path):
    full = train(TINY, tmp_path / "full", open_model, progress=False)
    part = train(TINY, tmp_path / "cut", open_model, progress=False, stop_after=4)  # "killed" after step 4
    assert part["step"] == 4
    (tmp_path / "cut" / "log.jsonl").open("a").write('{"step": 5, "loss"')  # a line cut by the kill
    resumed = train(TINY, tmp_path / "cut", open_model, progress=False)
    assert resumed["step"] == full["step"] == 6
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 7))
    assert [r["epoch"] for r in rows if "epoch" in r] == [1, 2]
    assert (tmp_path / "cut" / "loss_curve.png").stat().st_size > 1000
    assert (tmp_path / "cut" / "regressor.pt").is_file()
    with pytest.raises(ValueError, match="another config.*seed"):
        train({**TINY, "seed": 4}, tmp_path / "cut", open_model, progress=False)
    # a run started before a setting existed (its checkpoint's config lacks it) resumes with the default
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    old = json.loads(state["config"])
    del old["amp"], old["model"]["image_size"]
    state["config"] = json.dumps(old)
    torch.save(state, ckpt)
    assert train(TINY, tmp_path / "cut", open_model, progress=False)["step"] == 6


def test_config_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 8\nmodel: {hypotheses: 2, hiden: 3}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: model.hiden: is not a setting"):
        load_train_config(bad)
    bad.write_text("lr: fast\n")
    with pytest.raises(ValueError, match="bad.yaml: lr"):
        load_train_config(bad)
    with pytest.raises(ValueError, match="unknown training config"):
        load_train_config("nope")
    assert load_train_config("regressor").model.layout == "coco17"


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs" / "train").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_shipped_training_config_loads(path, open_model):
    """The configs the model card and RESULTS cite still match the settings (a renamed or removed setting is an
    error there), and their data settings make samples."""
    cfg = load_train_config(path)
    batch = SampleGenerator(open_model, cfg.data, layout=cfg.model.layout, seed=0).batch(0, 8)
    assert torch.isfinite(batch.pose).all()


def test_cli_train_regressor(tmp_path, monkeypatch):
    from fitlib.cli import main
    cfg = tmp_path / "tiny.yaml"
    import yaml
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    assert main(["train-regressor", "--config", str(cfg), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert (tmp_path / "run" / "regressor.pt").is_file()
    cfg.write_text("epochz: 1\n")
    assert main(["train-regressor", "--config", str(cfg), "--out", str(tmp_path / "run2")]) == 2


def test_weak_perspective_mode_trains(open_model):
    """SPIN's weak-perspective camera (no bbox_info, 2D loss in box coordinates) runs through the same loss."""
    cfg = load_train_config({**TINY, "model": {**TINY["model"], "camera": "weak", "hypotheses": 1}})
    torch.manual_seed(0)
    net = Regressor(cfg.model)
    assert net.head.fc1.in_features == 16 + 157  # no box condition
    batch = SampleGenerator(open_model, seed=2).batch(0, 4)
    loss, terms = regressor_loss(open_model, net(batch.keypoints, batch.K), batch, cfg.loss, "coco17", "weak")
    loss.backward()
    assert torch.isfinite(loss) and terms["2d_det"] > 0 and net.head.decpose.weight.grad.abs().sum() > 0


def test_extra_poses_join_the_motion_as_a_clip(open_model):
    """Camera-frame poses (pseudo-labels) become one more training clip, their root turned back to the mocap's
    y-up frame; validation never sees them."""
    import roma

    gen = SampleGenerator(open_model, DataConfig(clips=["climb_seq_0"]), seed=1)
    body = gen.poses[:5].clone()  # y-up mocap frames
    flip = roma.rotvec_to_rotmat(torch.tensor([np.pi, 0.0, 0.0]))
    cam = body.clone()
    cam[:, 0] = roma.rotmat_to_rotvec(flip @ roma.rotvec_to_rotmat(body[:, 0]))  # as the camera sees them upright
    extra = SampleGenerator(open_model, DataConfig(clips=["climb_seq_0"]), seed=1, extra_poses=cam)
    assert extra.clips == ["climb_seq_0", "extra_poses"] and len(extra.poses) == len(gen.poses) + 5
    assert torch.allclose(roma.rotvec_to_rotmat(extra.poses[-5:]), roma.rotvec_to_rotmat(body), atol=1e-5)
    assert extra.batch(0, 64).pose.shape == (64, 24, 3)
    val = SampleGenerator(open_model, split="val", extra_poses=cam)
    assert "extra_poses" not in val.clips


def test_world_landmark_samples_and_starting_from_a_2d_network(open_model, tmp_path):
    """Samples carry simulated world landmarks for p_world of the people (NaN rows for the rest), near the
    bodies' exact points; a run with the branch starts from a 2D-only network's weights."""
    from fitlib.body.layouts import get_layout
    from fitlib.datasets.synthetic import look_at_person
    from fitlib.body.layouts import WORLD_POINTS

    gen = SampleGenerator(open_model, DataConfig(p_world=0.5, world_sigma=(0.02, 0.02)), seed=2)
    b = gen.batch(0, 400)
    has = torch.isfinite(b.world).all(-1).all(-1)
    assert b.world.shape == (400, len(WORLD_POINTS), 3) and 0.4 < has.float().mean() < 0.6
    assert torch.equal(gen.batch(0, 400).world.nan_to_num(), b.world.nan_to_num())  # seeded
    pts = open_model(b.pose, b.betas, b.transl, layout="mediapipe33").keypoints.double().numpy()
    pts = pts[:, [get_layout("mediapipe33").index(n) for n in WORLD_POINTS]]
    hips = pts[:, [WORLD_POINTS.index("left_hip"), WORLD_POINTS.index("right_hip")]].mean(1)
    err = np.linalg.norm(b.world.double().numpy() - look_at_person(pts, hips), axis=-1)[has.numpy()]
    assert 0.02 < np.median(err) < 0.12  # per-point noise, scale and depth errors, a few inverted limbs
    assert SampleGenerator(open_model, seed=2).batch(0, 4).world is None  # p_world 0: none at all

    train(TINY, tmp_path / "flat", open_model, progress=False)
    world_cfg = {**TINY, "model": {**TINY["model"], "world_landmarks": True}, "data": {"p_world": 0.75}}
    res = train(world_cfg, tmp_path / "world", open_model, progress=False, init_weights=tmp_path / "flat" / "regressor.pt")
    assert res["step"] == 6
    other = {**TINY, "model": {**TINY["model"], "world_landmarks": True, "head_hidden": 16}}
    with pytest.raises(ValueError, match="does not match"):
        train(other, tmp_path / "bad", open_model, progress=False, init_weights=tmp_path / "flat" / "regressor.pt")


def test_a_world_network_does_not_start_a_2d_config(open_model, tmp_path):
    world_cfg = {**TINY, "model": {**TINY["model"], "world_landmarks": True}, "data": {"p_world": 0.5}}
    train(world_cfg, tmp_path / "world", open_model, progress=False)
    with pytest.raises(ValueError, match="has the world-landmark branch: set model.world_landmarks: true"):
        train(TINY, tmp_path / "flat", open_model, progress=False, init_weights=tmp_path / "world" / "regressor.pt")


def test_foot_samples_and_a_coco17_network_growing_feet(open_model, tmp_path):
    """A network reading coco17_feet gets samples with the feet for p_feet of the people (simulated in BODY_25,
    near the exact projections); a COCO-17 network starts it, unchanged on people without feet."""
    from fitlib.camera import project
    from fitlib.regression.checkpoint import load_regressor
    from fitlib.training.trainer import _grown_input

    gen = SampleGenerator(open_model, DataConfig(p_feet=0.5), layout="coco17_feet", seed=4)
    b = gen.batch(0, 400)
    feet = b.keypoints[:, 17:]
    has = (feet[..., 2] > 0).any(-1)
    assert b.keypoints.shape == (400, 23, 3) and 0.35 < has.float().mean() < 0.6  # some detections are dropped
    exact = project(open_model(b.pose, b.betas, b.transl, layout="coco17_feet").keypoints, b.K)[:, 17:]
    seen = feet[..., 2] > 0
    err = (feet[..., :2] - exact).norm(dim=-1)[seen] / (b.gt_keypoints2d[..., :2].nan_to_num().amax(1)
                                                        - b.gt_keypoints2d[..., :2].nan_to_num().amin(1)).norm(dim=-1)[:, None].expand(-1, 6)[seen]
    assert err.median() < 0.05  # within a few % of the body's size (swaps and poor points aside)
    assert not (SampleGenerator(open_model, DataConfig(p_feet=0.0), layout="coco17_feet", seed=4)
                .batch(0, 50).keypoints[:, 17:, 2] > 0).any()

    train(TINY, tmp_path / "flat", open_model, progress=False)
    start, _ = load_regressor(tmp_path / "flat" / "regressor.pt")
    cfg = start.config.model_copy(update={"layout": "coco17_feet"})
    net = Regressor(cfg)
    net.load_state_dict(_grown_input(start, net, "flat"))
    net.eval()
    kp17 = b.keypoints[:8, :17]
    no_feet = torch.cat([kp17, torch.full((8, 6, 3), float("nan"))], 1)
    with torch.no_grad():
        a, c = start(kp17, b.K[:8]), net(no_feet, b.K[:8])
    assert torch.allclose(a.rotmat[-1], c.rotmat[-1], atol=1e-6) and torch.allclose(a.pelvis[-1], c.pelvis[-1], atol=1e-6)
    feet_cfg = {**TINY, "model": {**TINY["model"], "layout": "coco17_feet"}, "data": {"p_feet": 0.5}}
    assert train(feet_cfg, tmp_path / "feet", open_model, progress=False,
                 init_weights=tmp_path / "flat" / "regressor.pt")["step"] == 6
    with pytest.raises(ValueError, match="cannot be carried over"):  # a feet network into a COCO-17 config
        train(TINY, tmp_path / "b", open_model, progress=False, init_weights=tmp_path / "feet" / "regressor.pt")


def test_anatomical_random_poses(open_model):
    """With every pose random and p_anatomical 1, the samples' poses are the anatomical sampler's: no thigh
    swings more than 40° backwards (at 0, the default, about random axes, some do)."""
    def backwards(p_anatomical):
        cfg = DataConfig(p_mocap=0.0, p_mixed=0.0, p_prior=0.0, p_mirror=0.0, p_anatomical=p_anatomical)
        batch = SampleGenerator(open_model, cfg, seed=6).batch(0, 512)
        pose = batch.pose.clone()
        pose[:, 0] = 0  # in the pelvis frame
        j = open_model(pose, batch.betas).joints
        thigh = j[:, [4, 5]] - j[:, [1, 2]]  # hips to knees
        return float((torch.atan2(thigh[..., 2], -thigh[..., 1]) < -np.radians(40)).float().mean())

    assert backwards(1.0) == 0 and backwards(0.0) > 0.005


def test_anatomical_limbs_on_real_frames(open_model):
    """With every pose mixed and p_anatomical_limbs 1, most knees are no training frame's (the anatomical sampler's)
    while every spine is a real frame's; at 0 (the default) every knee is a real frame's too (or its mirror image)."""
    from fitlib.datasets.mocap import mirror_pose

    plain = dict(p_mocap=0.0, p_mixed=1.0, mocap_jitter=0.0, p_mirror=0.0, unobserved_scale=0.0)
    default = SampleGenerator(open_model, DataConfig(**plain), seed=4)
    limbs = SampleGenerator(open_model, DataConfig(**plain, p_anatomical_limbs=1.0), seed=4)
    real = default.poses.reshape(-1, 72)
    real = torch.cat([real, mirror_pose(real)]).reshape(-1, 24, 3)
    knee, spine = 4, 6  # left_knee, spine3

    def in_real(rows, j):  # [B] bool: the joint's rotation is some real (or mirrored) frame's
        return (rows[:, None, j] - real[None, :, j]).abs().amax(-1).lt(1e-6).any(-1)

    a, b = default.batch(0, 128).pose, limbs.batch(0, 128).pose
    assert in_real(a, knee).all() and in_real(a, spine).all()
    mixed_knee = ~in_real(b, knee)
    assert mixed_knee.float().mean() > 0.7 and in_real(b, spine).all()  # 80 % of the groups are mixed in
