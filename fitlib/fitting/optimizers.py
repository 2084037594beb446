"""The optimisers of the fitter's stages, batched over people, each person its own problem.

An optimiser takes a stage objective ``problem(params, targets) -> loss [P]`` (one loss per
person), the starting :class:`fitlib.params.SMPLParams` of P people (all four fields), the
per-person ``targets`` (any object with ``index(rows)``), a :class:`~fitlib.fitting.config.Stage`
and the config; it updates the stage's parameters in place and returns ``(loss [P],
converged [P] bool, iterations [P] long)``.

* :func:`run_adam`: batched Adam with per-person best iterate and early stop (the default);
* :func:`run_lbfgs`: L-BFGS with a strong-Wolfe line search, one person at a time.

:func:`runner` picks the stage's optimiser and the number of CPU threads that suits its size.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator

import torch

from fitlib.fitting.config import FitConfig, Stage
from fitlib.params import SMPLParams

Objective = Callable[[SMPLParams, object], torch.Tensor]
"""A stage objective: (params of b people, their targets) -> loss [b]."""

SINGLE_THREAD_ROWS = 4096
"""On CPU, a stage on the fast path or a refine (:mod:`fitlib.fitting.refine`) with fewer rows (people x
starts) than this runs on one thread.

Its tensors are tiny ([rows, 24, 3, 4] and the like), so a second OpenMP thread costs more to wake
(OMP_WAIT_POLICY=PASSIVE, a shared machine) than it saves: measured on 2 cores, every stage of the
multistart fit of 64 people (64-832 rows) and the body stage of 512 people ran 1.2-1.6x faster on one
thread, while the 6656-row screening stage of 512 people ran 1.6x faster on two; the refine of 16-480
people ran 2x faster on one thread while another job used the second core, and 1.3x slower at 240-960
people when the second core was free (benchmarks/RESULTS.md). The full-mesh reference mode keeps torch's
setting.  The thread count is process-wide: it is restored when the block ends."""


def run_adam(problem: Objective, params: SMPLParams, targets, stage: Stage, config: FitConfig):
    """Batched Adam with per-person early stop. Updates ``params`` in place; returns (loss, converged, iters).

    Each person keeps the parameters of the lowest loss it has reached (Adam's steps are
    about ``lr`` long whatever the gradient, so the last iterate can be worse than an
    earlier one); a person stops when that best loss improved by less than ``ftol``
    (relative) over the last ``window`` iterations.
    """
    P = len(params)
    dev, dtype = params.transl.device, params.transl.dtype
    loss_out = torch.full((P,), float("nan"), dtype=dtype, device=dev)
    converged = torch.zeros(P, dtype=torch.bool, device=dev)
    iters = torch.zeros(P, dtype=torch.long, device=dev)
    ids = torch.arange(P, device=dev)
    opt = stage.params
    work = {k: getattr(params, k).clone() for k in SMPLParams.FIELDS}
    best = {k: work[k].clone() for k in opt}
    best_loss = torch.full((P,), float("inf"), dtype=dtype, device=dev)
    d = targets
    m = {k: torch.zeros_like(work[k]) for k in opt}
    v = {k: torch.zeros_like(work[k]) for k in opt}
    b1, b2, eps = 0.9, 0.999, 1e-8
    conv = config.convergence
    hist: list[torch.Tensor] = []

    def write_back(rows: torch.Tensor) -> None:
        for k in opt:
            getattr(params, k)[ids[rows]] = best[k][rows]
        loss_out[ids[rows]] = best_loss[rows]

    for it in range(stage.iterations):
        leaves = {k: (t.requires_grad_(True) if k in opt else t) for k, t in work.items()}
        loss = problem(SMPLParams(**leaves), d)
        grads = torch.autograd.grad(loss.sum(), [leaves[k] for k in opt])
        with torch.no_grad():
            loss = loss.detach()
            improved = loss < best_loss
            best_loss = torch.where(improved, loss, best_loss)
            for k in opt:
                best[k] = torch.where(improved.view(-1, *[1] * (best[k].ndim - 1)), leaves[k].detach(), best[k])
            t = it + 1
            # cosine decay to lr_final_ratio x lr: late iterations refine instead of jittering by lr
            frac = it / max(1, stage.iterations - 1)
            lr = stage.lr * (stage.lr_final_ratio + (1 - stage.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))
            step = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            for k, g in zip(opt, grads):
                m[k].mul_(b1).add_(g, alpha=1 - b1)
                v[k].mul_(b2).addcmul_(g, g, value=1 - b2)
                work[k] = leaves[k].detach() - step * m[k] / (v[k].sqrt() + eps)
        hist.append(best_loss)
        iters[ids] += 1
        if not conv.enabled or t < max(conv.min_iterations, conv.window + 1):
            continue
        old = hist[-conv.window - 1]
        done = (old - best_loss) <= conv.ftol * old.abs().clamp(min=1e-12)
        if bool(done.any()):
            write_back(done)
            converged[ids[done]] = True
            keep = ~done
            if not bool(keep.any()):
                return loss_out, converged, iters
            ids = ids[keep]
            best_loss = best_loss[keep]
            work = {k: x[keep] for k, x in work.items()}
            best = {k: x[keep] for k, x in best.items()}
            d = d.index(keep)
            m = {k: x[keep] for k, x in m.items()}
            v = {k: x[keep] for k, x in v.items()}
            hist = [h[keep] for h in hist[-conv.window - 1:]]
    write_back(torch.ones(len(ids), dtype=torch.bool, device=dev))
    return loss_out, converged, iters


def run_lbfgs(problem: Objective, params: SMPLParams, targets, stage: Stage, config: FitConfig):
    """L-BFGS (strong Wolfe line search), one person at a time. Same contract as :func:`run_adam`.

    A line search over the whole batch would give everyone the step the hardest person allows, so a
    person's fit would depend on who else is in the batch; here each person has its own optimiser
    (as smplify-x, which fits one person per run), at the price of a loop over people."""
    P = len(params)
    loss = torch.empty(P, dtype=params.transl.dtype, device=params.transl.device)
    converged = torch.zeros(P, dtype=torch.bool, device=loss.device)
    iters = torch.zeros(P, dtype=torch.long, device=loss.device)
    for i in range(P):
        leaves = {k: getattr(params, k)[i:i + 1].clone().requires_grad_(k in stage.params) for k in SMPLParams.FIELDS}
        person = targets.index(slice(i, i + 1))
        opt = torch.optim.LBFGS([leaves[k] for k in stage.params], lr=1.0, max_iter=stage.iterations,
                                line_search_fn="strong_wolfe", tolerance_change=config.convergence.ftol * 1e-3)

        def closure():
            opt.zero_grad()
            total = problem(SMPLParams(**leaves), person).sum()
            total.backward()
            return total

        opt.step(closure)
        n_iter = opt.state[opt._params[0]].get("n_iter", stage.iterations)
        with torch.no_grad():
            for k in SMPLParams.FIELDS:
                getattr(params, k)[i] = leaves[k].detach()[0]
            loss[i] = problem(params.index(slice(i, i + 1)), person)[0]
        converged[i], iters[i] = n_iter < stage.iterations, n_iter
    return loss, converged, iters


@contextlib.contextmanager
def threads_for(rows: int, device: torch.device, config: FitConfig) -> Iterator[None]:
    """Run the block (a stage or a refine of ``rows`` rows) on one CPU thread when it is small
    (:data:`SINGLE_THREAD_ROWS`); the caller's thread count is restored afterwards, also on error."""
    single = device.type == "cpu" and not config.full_mesh and rows < SINGLE_THREAD_ROWS
    before = torch.get_num_threads()
    if single and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def runner(config: FitConfig, stage: Stage | None = None):
    """The optimiser of a stage (its own ``optimizer`` setting, else the config's), run on the
    number of CPU threads that suits its size (:func:`threads_for`)."""
    name = (stage.optimizer if stage is not None and stage.optimizer else None) or config.optimizer
    run = run_adam if name == "adam" else run_lbfgs

    def run_stage(problem, params, targets, stage, config):
        with threads_for(len(params), params.transl.device, config):
            return run(problem, params, targets, stage, config)

    return run_stage
