"""SMPLParams: the one parameter record (construction, checks, numpy round trip, batching)."""
import math

import numpy as np
import pytest
import torch

from fitlib.params import SMPLParams, as_params


def _params(n=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return SMPLParams(torch.randn(n, 3, generator=g, dtype=dtype), torch.randn(n, 69, generator=g, dtype=dtype),
                      torch.randn(n, 10, generator=g, dtype=dtype), torch.tensor([[0.1, 0.2, 3.0]] * n, dtype=dtype))


def test_pose_round_trip(dtype):
    p = _params(4, dtype)
    assert p.pose.shape == (4, 24, 3) and p.pose.dtype == dtype
    again = SMPLParams.from_pose(p.pose, p.betas, p.transl)
    assert torch.equal(again.global_orient, p.global_orient) and torch.equal(again.body_pose, p.body_pose)
    assert torch.equal(SMPLParams.from_pose(p.pose.reshape(4, 72)).body_pose, p.body_pose)
    with pytest.raises(ValueError, match="72"):
        SMPLParams.from_pose(torch.zeros(4, 70))
    with pytest.raises(ValueError, match="needs both"):
        SMPLParams(betas=p.betas).pose


def test_numpy_round_trip():
    p = _params()
    arrays = p.numpy()
    assert sorted(arrays) == sorted(SMPLParams.FIELDS) and arrays["body_pose"].dtype == np.float64
    back = SMPLParams.from_numpy(arrays, dtype=torch.float64)
    for k in SMPLParams.FIELDS:
        assert torch.equal(getattr(back, k), getattr(p, k))
    from_pose = SMPLParams.from_numpy({"pose": p.pose.numpy().reshape(3, 72), "betas": arrays["betas"]},
                                      dtype=torch.float64)
    assert from_pose.given() == ("global_orient", "body_pose", "betas") and torch.equal(from_pose.pose, p.pose)


def test_index_cat_len():
    p = _params(5)
    assert len(p) == 5 and len(p.index(slice(1, 3))) == 2 and len(SMPLParams()) == 0
    both = SMPLParams.cat([p.index(slice(0, 2)), p.index(slice(2, 5))])
    assert torch.equal(both.pose, p.pose)
    with pytest.raises(ValueError, match="different fields"):
        SMPLParams.cat([p, SMPLParams(betas=p.betas)])


@pytest.mark.parametrize("value, match", [
    ({"pose": torch.zeros(2, 72)}, "for 3 people"),
    ({"betas": [["a"] * 10] * 3}, "not numeric"),
    ({"transl": torch.tensor([[0, 0, math.nan]] * 3)}, "NaN"),
    ({"transl": torch.tensor([[0, 0, -1.0]] * 3)}, "behind the camera"),
    ({"pose": torch.zeros(3, 72), "body_pose": torch.zeros(3, 69)}, "both"),
    ({"poses": torch.zeros(3, 72)}, "unknown entries"),
    ([1, 2, 3], "init must be"),
])
def test_as_params_names_the_problem(value, match):
    with pytest.raises(ValueError, match=match):
        as_params(value, 3)


def test_as_params_takes_records_and_results():
    p = _params()
    checked = as_params(p, 3, torch.float32)
    assert checked.body_pose.dtype == torch.float32 and checked.body_pose is not p.body_pose

    class Result:  # what FitResult offers: a params record
        params = p
    assert torch.allclose(as_params(Result(), 3, torch.float64).pose, p.pose)
