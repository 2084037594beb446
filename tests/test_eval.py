"""Metrics of fitlib.eval on hand-computed cases."""
import math

import numpy as np
import pytest
import roma
import torch

from fitlib import eval as ev
from fitlib.skeleton import SMPL_JOINT_NAMES


def _joints(n=14, batch=(), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*batch, n, 3, generator=g, dtype=torch.float64) * 0.3).to(dtype)


def _tol(dtype):
    return 1e-9 if dtype == torch.float64 else 1e-5


def test_similarity_transform_gives_zero_pa_mpjpe(dtype):
    gt = _joints(dtype=dtype)
    R = roma.rotvec_to_rotmat(torch.tensor([0.3, -1.2, 2.0], dtype=dtype))
    pred = 1.7 * gt @ R.T + torch.tensor([0.5, -2.0, 4.0], dtype=dtype)
    assert float(ev.pa_mpjpe(pred, gt)) < _tol(dtype)
    assert torch.allclose(ev.procrustes_align(pred, gt), gt, atol=_tol(dtype) * 10)
    assert float(ev.mpjpe(pred, gt)) > 0.1  # root alignment does not undo rotation and scale


def test_pa_mpjpe_batched_matches_single():
    gt, pred = _joints(batch=(2, 3)), _joints(batch=(2, 3), seed=1)
    batched = ev.pa_mpjpe(pred, gt)
    assert batched.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert math.isclose(float(batched[i, j]), float(ev.pa_mpjpe(pred[i, j], gt[i, j])), rel_tol=1e-9)


def test_mirror_image_is_not_aligned_away():
    """Procrustes allows rotations, not reflections: a mirrored (non-symmetric) skeleton keeps an error."""
    gt = _joints()
    pred = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    assert float(ev.pa_mpjpe(pred, gt)) > 0.01


def test_pa_never_exceeds_root_aligned_or_plain_mpjpe():
    gt, pred = _joints(batch=(50,)), _joints(batch=(50,), seed=3) * 0.2 + _joints(batch=(50,))
    pa = ev.pa_mpjpe(pred, gt)
    assert (pa <= ev.mpjpe(pred, gt) + 1e-12).all()
    assert (pa <= ev.mpjpe(pred, gt, root_align=False) + 1e-12).all()


def test_mpjpe_hand_computed():
    gt = torch.zeros(4, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[1] = torch.tensor([3.0, 4.0, 0.0])  # one joint 5 away
    assert float(ev.mpjpe(pred, gt, root_align=False)) == pytest.approx(5 / 4)
    # uniform shift: removed by root alignment, kept without it
    shift = torch.tensor([0.1, -0.2, 0.2], dtype=torch.float64)
    gt = _joints()
    assert float(ev.mpjpe(gt + shift, gt)) == pytest.approx(0.0, abs=1e-12)
    assert float(ev.mpjpe(gt + shift, gt, root_align=False)) == pytest.approx(0.3)
    # root = mean of the LSP hips (indices 2, 3): moving only the hips by d moves every other joint by d
    pred = gt.clone()
    pred[[2, 3]] += torch.tensor([0.0, 0.0, 0.7], dtype=torch.float64)
    assert float(ev.mpjpe(pred, gt)) == pytest.approx(0.7 * 12 / 14)


def test_numpy_inputs_accepted():
    gt = _joints().numpy()
    assert float(ev.mpjpe(gt, gt)) == 0.0 and float(ev.pa_mpjpe(gt + 1.0, gt)) < 1e-9


def test_pve():
    gv = _joints(n=30)
    gj = _joints(n=24, seed=5)
    shift = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert float(ev.pve(gv + shift, gv, gj + shift, gj)) == pytest.approx(0.0, abs=1e-12)
    assert float(ev.pve(gv + shift, gv)) == pytest.approx(0.0, abs=1e-12)  # centroid alignment
    pv = gv.clone()
    pv[:3, 0] += 0.3  # 3 of 30 vertices off by 0.3, joints unchanged
    assert float(ev.pve(pv, gv, gj, gj)) == pytest.approx(0.03)
    assert float(ev.pve(gv, gv, gj + shift, gj)) == pytest.approx(float(shift.norm()))


def test_reprojection_error_with_invisible_points():
    gt = torch.zeros(4, 2, dtype=torch.float64)
    pred = torch.tensor([[3.0, 4.0], [0.0, 10.0], [100.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    vis = torch.tensor([True, True, False, True])
    assert float(ev.reprojection_error(pred, gt, vis)) == pytest.approx((5 + 10 + 0) / 3)
    assert float(ev.reprojection_error(pred, gt)) == pytest.approx(115 / 4)
    assert math.isnan(float(ev.reprojection_error(pred, gt, torch.zeros(4, dtype=torch.bool))))
    # a NaN target counts as invisible; a third (confidence) column is ignored
    gt_nan = gt.clone()
    gt_nan[2] = float("nan")
    assert float(ev.reprojection_error(pred, gt_nan)) == pytest.approx(15 / 3)
    with_conf = torch.cat([gt, torch.ones(4, 1, dtype=torch.float64)], -1)
    assert float(ev.reprojection_error(pred, with_conf, vis)) == pytest.approx(5.0)
    # batched, per-sample
    out = ev.reprojection_error(torch.stack([pred, gt]), torch.stack([gt, gt]), torch.stack([vis, vis]))
    assert out.shape == (2,) and float(out[1]) == 0.0


def test_lsp14_order():
    names = [SMPL_JOINT_NAMES[i] for i in ev.SMPL24_TO_LSP14]
    assert names == ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                     "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
                     "neck", "head"]
    j = torch.arange(24 * 3, dtype=torch.float64).reshape(24, 3)
    out = ev.lsp14(j[None].expand(5, 24, 3))
    assert out.shape == (5, 14, 3) and torch.equal(out[2, 0], j[8])
    assert np.array_equal(ev.lsp14(j.numpy()).numpy(), j[list(ev.SMPL24_TO_LSP14)].numpy())


def test_default_root_follows_the_joint_set():
    g = torch.Generator().manual_seed(1)
    gt24 = torch.randn(24, 3, generator=g, dtype=torch.float64)
    shifted = gt24 + torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert float(ev.mpjpe(shifted, gt24)) < 1e-12  # SMPL-24: root = its hips, a shift cancels
    moved = gt24.clone()
    moved[[1, 2]] += 0.1  # moving only the SMPL hips is a root change, not a uniform shift
    assert float(ev.mpjpe(moved, gt24)) > 0.05
    with pytest.raises(ValueError, match="no default root"):
        ev.mpjpe(torch.zeros(17, 3), torch.zeros(17, 3))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="same shape"):
        ev.pa_mpjpe(torch.zeros(14, 3), torch.zeros(24, 3))
    with pytest.raises(ValueError, match="24"):
        ev.lsp14(torch.zeros(17, 3))
