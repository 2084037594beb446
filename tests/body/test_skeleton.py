"""fitlib.body.skeleton's rotation helpers."""
import pytest
import roma
import torch

from fitlib.body.skeleton import swing_rotvec


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_swing_takes_one_direction_to_the_other_along_the_shortest_arc(dtype):
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(50, 3, generator=g, dtype=dtype), 3 * torch.randn(50, 3, generator=g, dtype=dtype)
    r = swing_rotvec(u, v)
    assert r.shape == (50, 3) and r.dtype == dtype
    turned = (roma.rotvec_to_rotmat(r) @ u[..., None])[..., 0]
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(turned / turned.norm(dim=-1, keepdim=True), v / v.norm(dim=-1, keepdim=True), atol=tol)
    # the shortest arc: the angle between the directions, about an axis normal to both
    cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    assert torch.allclose(r.norm(dim=-1), torch.acos(cos.clamp(-1, 1)), atol=10 * tol)
    assert torch.allclose((r * u).sum(-1), torch.zeros(50, dtype=dtype), atol=10 * tol)
    assert swing_rotvec(u, 2 * u).norm(dim=-1).max() < tol  # parallel: no turn (to rounding)
    assert swing_rotvec(u[:1], v).shape == (50, 3)  # broadcasts
