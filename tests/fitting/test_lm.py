"""Batched Levenberg-Marquardt (fitlib/fitting/lm.py): correctness, per-sample independence, Jacobians."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

_LM_PATH = Path(__file__).resolve().parents[2] / "fitlib" / "fitting" / "lm.py"


def _load_lm():
    name = "fitlib.fitting.lm"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location("_fitlib_fitting_lm_under_test", _LM_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lm = _load_lm()
LMSettings, levenberg_marquardt, batched_jacobian = lm.LMSettings, lm.levenberg_marquardt, lm.batched_jacobian


def _tol(dtype, f32, f64):
    return f32 if dtype == torch.float32 else f64


# ---------------------------------------------------------------------------------------- problems


def _linear_problem(B, m, n, dtype, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(B, m, n, generator=g, dtype=torch.float64)
    b = torch.randn(B, m, generator=g, dtype=torch.float64) * noise
    A, b = A.to(dtype), b.to(dtype)

    def residuals(x, rows):
        return (A[rows] @ x.unsqueeze(-1)).squeeze(-1) - b[rows]

    return A, b, residuals


def _rosenbrock(x, rows):
    return torch.stack([10.0 * (x[:, 1] - x[:, 0] ** 2), 1.0 - x[:, 0]], dim=-1)


_T = torch.linspace(0.0, 2.0, 25, dtype=torch.float64)


def _exp_problems(B, dtype, seed=0, spread=0.5):
    """Fit a * exp(b * t) + c to noisy samples; returns (truth [B, 3], x0 [B, 3], residuals).

    1 <= |b| <= 2.5 keeps the three parameters identifiable (for b near 0, a and c trade off along a
    flat valley that no solver crosses in 30 iterations)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.5 + 1.5 * torch.rand(B, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(B, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    b = (1.0 + 1.5 * torch.rand(B, generator=g, dtype=torch.float64)) * sign
    c = -1.0 + 2.0 * torch.rand(B, generator=g, dtype=torch.float64)
    truth = torch.stack([a, b, c], -1)
    y = a[:, None] * torch.exp(b[:, None] * _T) + c[:, None]
    y = y + 0.01 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    x0 = truth + spread * torch.randn(B, 3, generator=g, dtype=torch.float64)
    y, t = y.to(dtype), _T.to(dtype)

    def residuals(x, rows):
        return x[:, :1] * torch.exp(x[:, 1:2] * t) + x[:, 2:3] - y[rows]

    return truth.to(dtype), x0.to(dtype), residuals


def _rodrigues(aa):
    th = torch.sqrt((aa * aa).sum(-1, keepdim=True) + 1e-20)
    k = aa / th
    kx, ky, kz = k.unbind(-1)
    z = torch.zeros_like(kx)
    K = torch.stack([z, -kz, ky, kz, z, -kx, -ky, kx, z], -1).reshape(*aa.shape[:-1], 3, 3)
    s, c = torch.sin(th)[..., None], torch.cos(th)[..., None]
    return torch.eye(3, dtype=aa.dtype, device=aa.device) + s * K + (1 - c) * (K @ K)


def _rotation_problems(B, dtype, seed=0, noise=0.01, spread=0.5, npts=10):
    """Rigid motions (axis-angle, translation) [B, 6] aligning a point set P onto noisy targets Q."""
    g = torch.Generator().manual_seed(seed)
    P = torch.randn(B, npts, 3, generator=g, dtype=torch.float64)
    truth = torch.cat([torch.randn(B, 3, generator=g, dtype=torch.float64),
                       torch.randn(B, 3, generator=g, dtype=torch.float64)], -1)
    Q = P @ _rodrigues(truth[:, :3]).transpose(1, 2) + truth[:, None, 3:]
    Q = Q + noise * torch.randn(Q.shape, generator=g, dtype=torch.float64)
    x0 = truth + spread * torch.randn(B, 6, generator=g, dtype=torch.float64)
    P, Q = P.to(dtype), Q.to(dtype)

    def residuals(x, rows):
        moved = P[rows] @ _rodrigues(x[:, :3]).transpose(1, 2) + x[:, None, 3:]
        return (moved - Q[rows]).reshape(x.shape[0], -1)

    return truth.to(dtype), x0.to(dtype), residuals


# ---------------------------------------------------------------------------------------- tests


def test_linear_least_squares_reaches_lstsq(dtype):
    A, b, residuals = _linear_problem(6, 30, 8, dtype)
    x_ref = torch.linalg.lstsq(A.double(), b.double().unsqueeze(-1)).solution.squeeze(-1)
    x0 = torch.randn(6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype) * 3
    x0_copy = x0.clone()
    res = levenberg_marquardt(residuals, x0)
    assert torch.equal(x0, x0_copy), "x0 was modified"
    assert res.x.dtype == dtype and res.x.shape == (6, 8)
    torch.testing.assert_close(res.x.double(), x_ref, atol=_tol(dtype, 1e-4, 1e-6), rtol=0)
    loss_ref = (A.double() @ x_ref.unsqueeze(-1)).squeeze(-1).sub(b.double()).square().sum(-1)
    torch.testing.assert_close(res.loss.double(), loss_ref, rtol=_tol(dtype, 1e-4, 1e-10), atol=0)
    assert res.converged.all()
    assert (res.iterations <= 5).all(), res.iterations
    # with the relative-decrease test off it goes on until no step lowers the loss: near the optimum a
    # loss change resolves x to about sqrt(eps) (monotone acceptance), so 1e-8, not 1e-15
    tight = levenberg_marquardt(residuals, x0, LMSettings(ftol=0.0, xtol=1e-12))
    torch.testing.assert_close(tight.x.double(), x_ref, atol=_tol(dtype, 1e-4, 1e-8), rtol=0)
    assert tight.converged.all() and (tight.iterations <= 8).all(), tight.iterations


def test_rosenbrock_batch_reaches_minimum(dtype):
    x0 = torch.tensor([[-1.2, 1.0], [2.0, 2.0], [-2.0, -1.0], [0.0, 0.0],
                       [0.5, -1.0], [3.0, 9.5], [-0.5, 3.0], [1.5, 0.5]], dtype=dtype)
    res = levenberg_marquardt(_rosenbrock, x0, LMSettings(max_iterations=200))
    assert res.converged.all(), res.iterations
    torch.testing.assert_close(res.x, torch.ones_like(x0), atol=_tol(dtype, 1e-3, 1e-7), rtol=0)
    assert (res.loss <= res.initial_loss).all()


@pytest.mark.parametrize("problem", ["exp", "rotation"])
def test_random_nonlinear_batch_is_monotone_and_converges(dtype, problem):
    make = _exp_problems if problem == "exp" else _rotation_problems
    truth, x0, residuals = make(64, dtype, seed=1, spread=0.5 if problem == "exp" else 1.0)
    res = levenberg_marquardt(residuals, x0)
    assert res.loss.shape == (64,) and res.converged.dtype == torch.bool
    assert res.iterations.dtype == torch.long
    assert (res.loss <= res.initial_loss).all()
    assert torch.isfinite(res.loss).all()
    assert res.converged.float().mean() >= 0.9, res.converged.float().mean()
    # the converged samples sit at a noise-level loss (a few wrong local minima of the exp fit allowed)
    n_res = residuals(x0[:1], torch.arange(1)).shape[1]
    near_noise = res.loss < 4 * n_res * 0.01 ** 2
    assert near_noise.float().mean() >= 0.85, near_noise.float().mean()
    if problem == "rotation":   # the fitted motions are the true ones (axis-angle compared as matrices)
        ok = res.converged & near_noise
        torch.testing.assert_close(_rodrigues(res.x[ok, :3]), _rodrigues(truth[ok, :3]), atol=0.03, rtol=0)
        torch.testing.assert_close(res.x[ok, 3:], truth[ok, 3:], atol=0.03, rtol=0)


def test_monotone_with_far_starts_and_nan_regions(dtype):
    # log residuals: steps into x <= 0 give NaN trial losses, which must count as rejections
    g = torch.Generator().manual_seed(3)
    target = torch.randn(32, 4, generator=g, dtype=torch.float64).to(dtype)
    x0 = (torch.rand(32, 4, generator=g, dtype=torch.float64) * 20 + 0.01).to(dtype)

    def residuals(x, rows):
        return torch.cat([torch.log(x) - target[rows], 0.1 * (x - 1.0)], -1)

    res = levenberg_marquardt(residuals, x0, LMSettings(max_iterations=60))
    assert (res.loss <= res.initial_loss).all()
    assert torch.isfinite(res.x).all() and (res.x > 0).all()
    assert res.converged.float().mean() >= 0.9


def test_garbage_sample_does_not_change_the_others(dtype):
    _, x0, residuals = _exp_problems(8, dtype, seed=2)
    alone = levenberg_marquardt(residuals, x0)
    # a hopeless start (huge residuals, 1e3 * exp(10 t)) and a start with a non-finite loss
    garbage = torch.tensor([[1e3, 10.0, -50.0], [1.0, float("inf"), 0.0]], dtype=dtype)
    x0_all = torch.cat([x0[:3], garbage[:1], x0[3:6], garbage[1:], x0[6:]])
    good = torch.tensor([0, 1, 2, 4, 5, 6, 8, 9])
    # the residual data of the garbage rows is an arbitrary copy of row 0
    data_row = torch.tensor([0, 1, 2, 0, 3, 4, 5, 0, 6, 7])

    def residuals_all(x, rows):
        return residuals(x, data_row[rows])

    res = levenberg_marquardt(residuals_all, x0_all)
    torch.testing.assert_close(res.x[good], alone.x, atol=1e-5, rtol=0)
    torch.testing.assert_close(res.loss[good], alone.loss, atol=1e-5, rtol=1e-5)
    assert torch.equal(res.converged[good], alone.converged)
    assert torch.equal(res.iterations[good], alone.iterations)
    assert res.loss[3] <= res.initial_loss[3] and torch.isfinite(res.initial_loss[3])
    # the non-finite start is returned untouched and not converged
    assert not res.converged[7] and torch.equal(res.x[7], x0_all[7]) and res.iterations[7] == 1


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_alone_equals_in_batch(dtype, mode):
    _, x0, residuals = _rotation_problems(8, dtype, seed=4, spread=1.5)
    together = levenberg_marquardt(residuals, x0, jacobian=mode)
    for i in range(8):
        # the sample alone: its own row index, so `residuals` reads the same data
        one = levenberg_marquardt(lambda x, rows: residuals(x, rows + i), x0[i:i + 1], jacobian=mode)
        torch.testing.assert_close(one.x[0], together.x[i], atol=1e-5, rtol=0)
        torch.testing.assert_close(one.loss[0], together.loss[i], atol=1e-7, rtol=1e-5)
        assert one.converged[0] == together.converged[i]
        assert one.iterations[0] == together.iterations[i]    # same path, not only the same end point
    assert together.converged.all()


def test_failed_cholesky_is_a_rejection_of_that_sample_only(monkeypatch):
    A, b, residuals = _linear_problem(4, 20, 5, torch.float64, seed=7)
    A[0, :, 0] *= 1e4                                     # marks sample 0: its (JᵀJ)[0, 0] is > 1e6
    x0 = torch.zeros(4, 5, dtype=torch.float64)
    clean = levenberg_marquardt(residuals, x0)
    real = torch.linalg.cholesky_ex
    failures = []

    def failing_cholesky_ex(a, **kwargs):
        L, info = real(a, **kwargs)
        fail = (a[:, 0, 0] > 1e6) & (len(failures) < 3)     # sample 0's first three factorisations
        failures.append(int(fail.sum()))
        return torch.where(fail[:, None, None], torch.nan, L), torch.where(fail, 1, info)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", failing_cholesky_ex)
    res = levenberg_marquardt(residuals, x0)
    assert sum(failures) == 3
    torch.testing.assert_close(res.x[1:], clean.x[1:], atol=0, rtol=0)
    assert torch.equal(res.iterations[1:], clean.iterations[1:])
    # sample 0 only had three rejections (damping 1e3 times larger); it still reaches the solution
    assert res.converged.all() and res.loss[0] <= res.initial_loss[0]
    torch.testing.assert_close(res.x[0], clean.x[0], atol=1e-6, rtol=1e-6)


def test_converged_samples_leave_the_batch():
    # row 0 starts at its optimum and converges at once; the others need many iterations
    x0 = torch.tensor([[1.0, 1.0], [-1.2, 1.0], [2.0, 2.0], [-2.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    seen = []

    def residuals(x, rows):
        seen.append(rows.clone())
        return _rosenbrock(x, rows)

    res = levenberg_marquardt(residuals, x0, LMSettings(max_iterations=200))
    assert res.converged.all()
    calls_with_row0 = sum(int((r == 0).any()) for r in seen)
    assert calls_with_row0 <= 2, calls_with_row0          # first Jacobian + one (rejected) trial
    assert len(seen) > 10 and all(r.numel() <= 4 for r in seen[2:])
    assert all(torch.equal(r, torch.sort(r).values) for r in seen)
    assert res.iterations[0] == 1 and (res.iterations[1:] > 5).all()
    # a sample is evaluated only while it is active: no call after the last sample converged
    assert sum(r.numel() for r in seen) < 5 * len(seen)


def test_sample_at_optimum_stays(dtype):
    # zero-residual optima (Rosenbrock at (1, 1); a consistent linear system) in a batch with other work
    x0 = torch.tensor([[1.0, 1.0], [-1.2, 1.0]], dtype=dtype)
    res = levenberg_marquardt(_rosenbrock, x0, LMSettings(max_iterations=200))
    assert res.converged.all()
    torch.testing.assert_close(res.x[0], x0[0], atol=1e-8, rtol=0)
    assert res.loss[0] == 0 and res.iterations[0] == 1

    A, b, residuals = _linear_problem(3, 20, 5, dtype, noise=0.0)
    x_star = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    b.copy_((A @ x_star.unsqueeze(-1)).squeeze(-1))
    res = levenberg_marquardt(residuals, x_star)
    assert res.converged.all()
    torch.testing.assert_close(res.x, x_star, atol=1e-8, rtol=0)


def test_sample_at_nonzero_residual_optimum_stays():
    A, b, residuals = _linear_problem(4, 30, 6, torch.float64, noise=1.0, seed=5)
    x_ref = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    res = levenberg_marquardt(residuals, x_ref)
    assert res.converged.all()
    torch.testing.assert_close(res.x, x_ref, atol=1e-8, rtol=0)
    assert (res.loss <= res.initial_loss).all()


def test_jacobians_forward_reverse_and_finite_differences():
    _, x0, residuals = _rotation_problems(5, torch.float64, seed=6)
    rows = torch.arange(5)
    r_f, J_f = batched_jacobian(residuals, x0, rows, "forward")
    r_r, J_r = batched_jacobian(residuals, x0, rows, "reverse")
    assert J_f.shape == (5, 30, 6)
    torch.testing.assert_close(r_f, residuals(x0, rows), atol=1e-14, rtol=0)
    torch.testing.assert_close(r_r, r_f, atol=1e-14, rtol=0)
    torch.testing.assert_close(J_r, J_f, atol=1e-12, rtol=0)
    h = 1e-6
    J_fd = torch.stack([(residuals(x0 + h * e, rows) - residuals(x0 - h * e, rows)) / (2 * h)
                        for e in torch.eye(6, dtype=torch.float64)], -1)
    torch.testing.assert_close(J_f, J_fd, atol=1e-7, rtol=0)
    # the Jacobian of a sample does not depend on the other samples (block structure)
    _, J_one = batched_jacobian(lambda x, r: residuals(x, r + 2), x0[2:3], rows[:1], "forward")
    torch.testing.assert_close(J_one[0], J_f[2], atol=1e-14, rtol=0)


def test_jacobian_detached_and_under_no_grad():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()

    def residuals(x, rows):
        return torch.sin(x) * w

    x = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    with torch.no_grad():
        r, J = batched_jacobian(residuals, x, torch.arange(4), "forward")
    assert not r.requires_grad and not J.requires_grad
    torch.testing.assert_close(J, torch.diag_embed(torch.cos(x.detach()) * w.detach()))
    res = levenberg_marquardt(residuals, x, jacobian="reverse")
    assert not res.x.requires_grad and res.converged.all()


def test_bad_arguments():
    x0 = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="damping_up"):
        levenberg_marquardt(_rosenbrock, x0, LMSettings(damping_up=1.0))
    with pytest.raises(ValueError, match="jacobian"):
        levenberg_marquardt(_rosenbrock, x0, jacobian="central")
    with pytest.raises(ValueError, match=r"\[2, m\]"):
        levenberg_marquardt(lambda x, rows: x.sum(), x0)
    with pytest.raises(ValueError, match="floating-point"):
        levenberg_marquardt(_rosenbrock, torch.zeros(2, 2, dtype=torch.long))


def test_max_iterations_zero_and_limit():
    x0 = torch.tensor([[-1.2, 1.0]], dtype=torch.float64)
    res = levenberg_marquardt(_rosenbrock, x0, LMSettings(max_iterations=0))
    assert torch.equal(res.x, x0) and not res.converged.any() and res.iterations[0] == 0
    torch.testing.assert_close(res.loss, torch.tensor([24.2], dtype=torch.float64))
    res = levenberg_marquardt(_rosenbrock, x0, LMSettings(max_iterations=3))
    assert res.iterations[0] == 3 and not res.converged[0] and res.loss[0] < res.initial_loss[0]
