"""Regressor files: round trip, clear errors for damaged and mismatched files, the shipped weights."""
import json

import pytest
import torch

from fitlib.regression import checkpoint as ck
from fitlib.regression.model import Regressor, RegressorConfig

SMALL = RegressorConfig(encoder_hidden=16, encoder_blocks=1, head_hidden=32, hypotheses=2)


def _kp(B=3):
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(B, 17, 3, generator=g) * torch.tensor([640.0, 480.0, 1.0])
    return kp, torch.tensor([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]]).expand(B, 3, 3)


def test_round_trip(tmp_path):
    torch.manual_seed(1)
    net = Regressor(SMALL).eval()
    path = ck.save_regressor(tmp_path / "r.pt", net, info={"seed": 1})
    back, header = ck.load_regressor(path, layout="coco17", body_model=ck.open_model_identity())
    assert header["info"] == {"seed": 1} and header["config"] == SMALL.model_dump()
    kp, K = _kp()
    with torch.no_grad():
        assert torch.allclose(net(kp, K).rotmat, back(kp, K).rotmat, atol=1e-6)
    half = ck.save_regressor(tmp_path / "h.pt", net, half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    with torch.no_grad():
        assert torch.allclose(net(kp, K).pelvis, ck.load_regressor(half)[0](kp, K).pelvis, rtol=1e-2, atol=1e-2)


def test_damaged_and_mismatched_files(tmp_path):
    net = Regressor(SMALL)
    path = ck.save_regressor(tmp_path / "r.pt", net)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cut.pt.*damaged"):
        ck.load_regressor(cut)
    other = tmp_path / "other.pt"
    torch.save({"a": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="other.pt.*not a fitlib regressor"):
        ck.load_regressor(other)
    with pytest.raises(ValueError, match="r.pt.*layout 'coco17', expected 'body25'"):
        ck.load_regressor(path, layout="body25")
    with pytest.raises(ValueError, match="r.pt.*body model 'open:.*expected 'smpl_neutral'"):
        ck.load_regressor(path, body_model="smpl_neutral")
    data = torch.load(path, weights_only=True)
    header = json.loads(data["header"])
    for change, match in (({"version": 99}, "version 99"), ({"config": {**header["config"], "head_hidden": 64}},
                                                            "do not match.*fc1")):
        bad = tmp_path / "bad.pt"
        torch.save({**data, "header": json.dumps({**header, **change})}, bad)
        with pytest.raises(ValueError, match="bad.pt.*" + match):
            ck.load_regressor(bad)
    with pytest.raises(FileNotFoundError):
        ck.load_regressor(tmp_path / "missing.pt")


def test_shipped_weights_load_and_beat_the_mean_pose(open_model):
    """The shipped network on a few held-out validation samples (training clips it did not train on):
    far better than its own mean-pose start, and within a generous bound."""
    from fitlib.evaluation import metrics
    from fitlib.training.data import SampleGenerator
    from fitlib.training.trainer import predicted_keypoints

    path = ck.shipped_path()
    assert path.is_file() and path.stat().st_size < 8e6
    net, header = ck.load_regressor(layout="coco17_feet", body_model=ck.open_model_identity())
    gen = SampleGenerator(open_model, split="val", layout="coco17_feet", seed=123)  # feet for half of them
    b = gen.batch(0, 64)
    with torch.no_grad():
        out = net(b.keypoints, b.K)
        joints = predicted_keypoints(open_model, out, "coco17_feet")[0][-1, :, 0]
        mean = open_model(torch.zeros(64, 24, 3), torch.zeros(64, 10)).joints
    gt = metrics.lsp14(b.joints)
    err = float(metrics.pa_mpjpe(metrics.lsp14(joints), gt).mean()) * 1000
    base = float(metrics.pa_mpjpe(metrics.lsp14(mean), gt).mean()) * 1000
    assert err < 0.7 * base and err < 110, (err, base)
