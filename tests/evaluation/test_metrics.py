"""Metrics of fitlib.evaluation.metrics on hand-computed cases."""
import math

import numpy as np
import pytest
import roma
import torch

from fitlib.evaluation import metrics as ev
from fitlib.body.skeleton import SMPL_JOINT_NAMES


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


def test_mixed_dtypes_are_computed_in_the_wider_one():
    gt = _joints()
    pred = _joints(seed=1)
    reference = ev.pa_mpjpe(pred, gt)
    for a, b in ((pred.float(), gt), (pred, gt.float()), (pred.float(), gt.numpy()), (pred.numpy(), gt.float())):
        out = ev.pa_mpjpe(a, b)
        assert out.dtype == torch.float64
        assert float(out) == pytest.approx(float(reference), rel=1e-6)
    assert ev.pa_mpjpe(pred.float(), gt.float()).dtype == torch.float32  # no widening when both are float32
    assert ev.procrustes_align(pred.float(), gt).dtype == torch.float64
    assert float(ev.mpjpe(pred.float(), gt)) == pytest.approx(float(ev.mpjpe(pred, gt)), rel=1e-6)
    gv = _joints(n=30)
    assert float(ev.pve(gv.float(), gv, _joints(n=24).float(), _joints(n=24))) == pytest.approx(0.0, abs=1e-6)
    # integer tensors and lists become float64
    assert float(ev.mpjpe(torch.ones(14, 3, dtype=torch.int64), torch.zeros(14, 3, dtype=torch.int32),
                          root_align=False)) == pytest.approx(math.sqrt(3))
    px = torch.tensor([[3.0, 4.0]])
    assert float(ev.reprojection_error(px.float(), [[0.0, 0.0]])) == pytest.approx(5.0)


def test_non_finite_3d_input_names_the_argument():
    gt, pred = _joints(batch=(2,)), _joints(batch=(2,), seed=1)
    bad = pred.clone()
    bad[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="pa_mpjpe: pred holds non-finite"):
        ev.pa_mpjpe(bad, gt)
    with pytest.raises(ValueError, match="pa_mpjpe: gt holds non-finite"):
        ev.pa_mpjpe(pred, bad.numpy())
    with pytest.raises(ValueError, match="procrustes_align: gt holds non-finite"):
        ev.procrustes_align(pred, torch.full_like(gt, float("inf")))
    with pytest.raises(ValueError, match="mpjpe: pred holds non-finite"):
        ev.mpjpe(bad, gt)
    gv = _joints(n=30)
    with pytest.raises(ValueError, match="pve: pred_vertices holds non-finite"):
        ev.pve(gv * float("nan"), gv)
    with pytest.raises(ValueError, match="pve: gt_joints holds non-finite"):
        ev.pve(gv, gv, _joints(n=24), _joints(n=24) * float("nan"))


def test_bad_arguments_name_themselves():
    gt = _joints()
    with pytest.raises(ValueError, match="mpjpe: pred must be a numeric array"):
        ev.mpjpe([[1.0, 2.0, 3.0], [1.0, 2.0]], gt)
    with pytest.raises(ValueError, match="mpjpe: root"):
        ev.mpjpe(gt, gt, root=(2, 30))
    gv, gj = _joints(n=30), _joints(n=24)
    with pytest.raises(ValueError, match="pve: pass both"):
        ev.pve(gv, gv, gj, None)
    with pytest.raises(ValueError, match="pve: prediction and ground truth must have the same shape"):
        ev.pve(gv, gv, gj, gj[:20])
    with pytest.raises(ValueError, match="pve: root"):
        ev.pve(gv, gv, gj[:2], gj[:2])  # default root (1, 2): joint 2 missing


def test_reprojection_visible_mask_shape_checked():
    pred, gt = torch.zeros(2, 14, 2, dtype=torch.float64), torch.ones(2, 14, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"visible has shape \(3,\), expected \(2, 14\)"):
        ev.reprojection_error(pred, gt, visible=np.ones(3, bool))
    with pytest.raises(ValueError, match="visible has shape"):
        ev.reprojection_error(pred, gt, visible=torch.ones(14, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="visible has shape"):
        ev.reprojection_error(pred, gt, visible=torch.ones(1, 2, 14, dtype=torch.bool))  # would add a dim
    with pytest.raises(ValueError, match="pred_2d and gt_2d"):
        ev.reprojection_error(pred, gt[:, :13])
    # [J] broadcasts over the batch; 0/1 integers are flags
    vis = np.array([0, 1] * 7)
    out = ev.reprojection_error(pred, gt, vis)
    assert out.shape == (2,) and torch.allclose(out, torch.full((2,), math.sqrt(2), dtype=torch.float64))
    assert torch.equal(out, ev.reprojection_error(pred, gt, np.stack([vis, vis]).astype(bool)))
