"""The config-independent label score and the camera re-estimation."""
import math

import pytest
import torch

from fitlib.camera import project
from fitlib.datasets.threedpw import build_sequence, load_sequence_file
from fitlib.labels.score import SCORE_SIGMA, confident_points, estimate_translation, score_params, score_points


@pytest.fixture(scope="module")
def seq(label_set):
    path = sorted((label_set / "sequenceFiles" / "test").glob("*.pkl"))[1]
    return build_sequence(load_sequence_file(path), "open", dtype=torch.float64)


def _exact(open_model, seq):
    """Exact projections of the true bodies, confidence 1."""
    p = seq.gt_params
    body = open_model(p.pose.float(), p.betas.float(), p.transl.float(), layout="coco17")
    xy = project(body.keypoints.double(), seq.K.double())
    return torch.cat([xy, torch.ones_like(xy[..., :1])], -1), body.keypoint_mask


def test_exact_keypoints_score_zero_and_noise_raises_it(open_model, seq):
    kp, _ = _exact(open_model, seq)
    s0, _ = score_params(open_model, seq.gt_params, kp, seq.K, "coco17", reestimate=False)
    assert s0.max() < 0.05
    noisy = kp.clone()
    noisy[..., :2] += torch.randn(noisy[..., :2].shape, generator=torch.Generator().manual_seed(0)) * 5
    s1, _ = score_params(open_model, seq.gt_params, noisy, seq.K, "coco17", reestimate=False)
    assert (s1 > s0 + 0.3).all()


def test_score_is_in_canonical_pixels_and_robust():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(4, 17, 2, generator=g, dtype=torch.float64) * 300
    kp = torch.cat([target, torch.ones(4, 17, 1, dtype=torch.float64)], -1)
    proj = target + 2.0
    conf = torch.ones(4, 17, dtype=torch.float64)
    s = score_points(proj, kp, conf)
    # the same people twice as large in pixels with the same relative error score the same
    s2 = score_points(proj * 2, torch.cat([target * 2, kp[..., 2:]], -1), conf)
    assert torch.allclose(s, s2, atol=1e-9)
    # one point 10,000 px off: the score saturates below sigma instead of exploding
    far = proj.clone()
    far[:, 0] += 10_000
    s3 = score_points(far, kp, conf)
    assert (s3 > s).all() and (s3 < SCORE_SIGMA / math.sqrt(17) + s + 1e-6).all()


def test_low_confidence_points_do_not_count():
    kp = torch.tensor([[[10.0, 10.0, 0.9], [50.0, 80.0, 0.9], [90.0, 10.0, 0.29]]], dtype=torch.float64)
    conf = confident_points(kp, torch.ones(3, dtype=torch.bool))
    assert conf[0, 2] == 0 and conf[0, 0] == pytest.approx(0.9)
    proj = kp[..., :2].clone()
    proj[0, 2] += 500.0  # the unconfident point is far off: no effect
    assert score_points(proj, kp, conf)[0] < 1e-9


def test_translation_is_reestimated_exactly(open_model, seq):
    kp, mask = _exact(open_model, seq)
    p = seq.gt_params
    body = open_model(p.pose.float(), p.betas.float(), None, layout="coco17")
    conf = confident_points(kp, mask)
    t = estimate_translation(body.keypoints.double(), kp, conf, seq.K.double().expand(len(p), 3, 3))
    assert torch.allclose(t, p.transl.double(), atol=2e-3)
    moved = p.replace(transl=p.transl + torch.tensor([0.2, -0.1, 0.5], dtype=p.transl.dtype))
    s_moved, _ = score_params(open_model, moved, kp, seq.K, "coco17", reestimate=False)
    s_re, t_re = score_params(open_model, moved, kp, seq.K, "coco17", reestimate=True)
    assert (s_moved > 1.0).all() and (s_re < 0.1).all()
    assert torch.allclose(t_re.double(), p.transl.double(), atol=2e-3)
