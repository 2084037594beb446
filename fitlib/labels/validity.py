"""Which fits are valid pseudo-labels, as the careful peers filter them (rules: :class:`LabelRules`).

A label is *valid* when it has enough confident keypoints, a score below ``max_score`` and a finite fit.
It *has SMPL* (its pose and betas may supervise a network) when it is valid, every |beta| is within
``max_abs_beta``, its body pose is plausible under the shipped pose prior (``max_prior_nll``) and within the
prior's joint ranges (``limit_tolerance``). A valid label without SMPL still supervises in 2D. Pose and
betas are kept both or neither.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fitlib.body.priors import PosePrior
from fitlib.labels.config import LabelRules
from fitlib.params import SMPLParams


@dataclass
class Verdict:
    """Per-person outcome of :func:`check_labels` (P people)."""

    valid: torch.Tensor  # [P] bool
    has_smpl: torch.Tensor  # [P] bool (implies valid)
    reasons: list[str]  # P texts: "" for a valid label with SMPL, else why not (e.g. "score 14.2 > 12")


def check_labels(params: SMPLParams, score: torch.Tensor, confident: torch.Tensor, rules: LabelRules,
                 prior: PosePrior) -> Verdict:
    """Judge P fits.

    Args:
        params: the fits (axis-angle radians, metres).
        score: [P] their scores (:func:`fitlib.labels.score.score_params`, canonical px; NaN: none).
        confident: [P] number of confident keypoints of each person.
        rules: the thresholds.
        prior: the pose prior (NLL and joint ranges).
    """
    P = len(params)
    pose = params.body_pose.detach().to(prior.transform.dtype).cpu()
    betas = params.betas.detach().cpu()
    finite = torch.isfinite(pose).all(-1) & torch.isfinite(betas).all(-1) & torch.isfinite(params.transl.detach().cpu()).all(-1)
    pose0 = torch.where(finite[:, None], pose, torch.zeros_like(pose))
    with torch.no_grad():
        nll = prior(pose0)
    lo, hi = prior.joint_ranges.unbind(-1)
    excess = (torch.relu(lo - pose0) + torch.relu(pose0 - hi)).amax(-1)
    score = score.detach().cpu()
    valid, has_smpl, reasons = [], [], []
    for i in range(P):
        why = []
        if int(confident[i]) < rules.min_points:
            why.append(f"{int(confident[i])} confident keypoints < {rules.min_points}")
        if not bool(finite[i]):
            why.append("not fitted")
        elif not float(score[i]) <= rules.max_score:
            why.append(f"score {float(score[i]):.1f} > {rules.max_score:g}")
        ok = not why
        smpl_why = []
        if ok:
            b = float(betas[i].abs().max())
            if b > rules.max_abs_beta:
                smpl_why.append(f"|beta| {b:.1f} > {rules.max_abs_beta:g}")
            if float(nll[i]) > rules.max_prior_nll:
                smpl_why.append(f"pose prior NLL {float(nll[i]):.0f} > {rules.max_prior_nll:g}")
            if float(excess[i]) > rules.limit_tolerance:
                smpl_why.append(f"joint {float(excess[i]):.2f} rad beyond its range")
        valid.append(ok)
        has_smpl.append(ok and not smpl_why)
        reasons.append("; ".join(why + smpl_why))
    return Verdict(torch.tensor(valid, dtype=torch.bool), torch.tensor(has_smpl, dtype=torch.bool), reasons)
