"""How much of a method's 3D error is limbs pointing the wrong way in depth.

From 2D keypoints, each limb segment (upper arm, forearm, thigh, shin) can point towards the camera or away
from it with the same 2D projection. This script scores a method's fits on a 3DPW-format set (e.g. the
synthetic one of ``make_synthetic.py``) and then asks:

* of the segments the truth has well out of the image plane (depth over length above ``--deep``), how many
  point the right way in the fit;
* what PA-MPJPE-14 the fits would reach with each limb's two depth signs taken from the truth (each segment
  mirrored in depth about the view ray through its upper joint; that keeps its 2D under weak perspective, and
  in perspective moves it by the segment's image length times its change in depth over the distance (up to
  5 % of the person's height at 4 m, tested): a ceiling for anything that picks depth signs, not a method);
* and with them picked by the fitter's pose prior (the mixture's NLL plus the knee/elbow bend penalty),
  the information a 2D fit has.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/depth_signs.py --root /tmp/syn_full --methods regressor,default
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import roma
import torch

from fitlib.body.model import BodyModel, load_body_model
from fitlib.body.priors import angle_prior, load_pose_prior
from fitlib.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS, global_rotations, swing_rotvec
from fitlib.datasets.threedpw import build_sequence, load_sequence_file
from fitlib.evaluation import metrics
from fitlib.evaluation.methods import MethodInput, method_factory

J = SMPL_JOINT_NAMES.index
LIMBS = tuple((J(f"{s}_{a}"), J(f"{s}_{b}"), J(f"{s}_{c}")) for s in ("left", "right")
              for a, b, c in (("shoulder", "elbow", "wrist"), ("hip", "knee", "ankle")))
"""(upper joint, middle joint, end joint) of the four limbs."""


def _turn_bone(model: BodyModel, pose, betas, transl, parent: int, child: int, target: torch.Tensor):
    """Poses [n, 72] with joint ``parent`` turned (along the shortest arc, its subtree with it) so that the bone to
    ``child`` points along ``target`` [n, 3]."""
    joints = model(pose, betas, transl).joints
    turn = roma.rotvec_to_rotmat(swing_rotvec(joints[:, child] - joints[:, parent], target))
    local = roma.rotvec_to_rotmat(pose.reshape(-1, 24, 3)).clone()
    up = global_rotations(pose)[:, SMPL_PARENTS[parent]]
    local[:, parent] = up.transpose(-1, -2) @ turn @ up @ local[:, parent]
    return roma.rotmat_to_rotvec(local).reshape(-1, 72)


def _mirrored(d: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """Bone directions ``d`` [n, 3] mirrored in depth about the view ray through the points ``at`` [n, 3]."""
    v = torch.nn.functional.normalize(at, dim=-1)
    return d - 2 * (d * v).sum(-1, keepdim=True) * v


def limb_variants(model: BodyModel, pose, betas, transl, limb) -> list[torch.Tensor]:
    """The four depth-sign variants [n, 72] of one limb (as is, lower segment mirrored, upper, both)."""
    p, c, e = limb
    joints = model(pose, betas, transl).joints
    upper, lower = joints[:, c] - joints[:, p], joints[:, e] - joints[:, c]
    out = []
    for flip_upper, flip_lower in itertools.product((False, True), repeat=2):
        q = pose
        if flip_upper:
            q = _turn_bone(model, q, betas, transl, p, c, _mirrored(upper, joints[:, p]))
        if flip_upper or flip_lower:
            q = _turn_bone(model, q, betas, transl, c, e, _mirrored(lower, joints[:, c]) if flip_lower else lower)
        out.append(q)
    return out


def depth_share(joints: torch.Tensor) -> torch.Tensor:
    """[n, 8] each limb segment's extent along the view ray through its upper joint, over its length."""
    out = []
    for p, c, e in LIMBS:
        for a, b in ((p, c), (c, e)):
            d = joints[:, b] - joints[:, a]
            out.append((d * torch.nn.functional.normalize(joints[:, a], dim=-1)).sum(-1) / d.norm(dim=-1))
    return torch.stack(out, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="3DPW-format root (sequenceFiles/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--keypoints", default="poses2d", help="'poses2d' or a detections .npz (benchmarks/threedpw.py)")
    ap.add_argument("--methods", default="regressor,default", help="comma-separated benchmark methods")
    ap.add_argument("--deep", type=float, default=0.4, help="segments counted: depth over length above this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_body_model("open")
    prior = load_pose_prior()
    kp_source, layout = None, "coco17"
    if args.keypoints != "poses2d":
        with np.load(args.keypoints) as f:
            layout = str(f["layout"]) if "layout" in f.files else layout
            kp_source = {k: f[k] for k in f.files if k != "layout"}
    methods = {m: method_factory(m)() for m in args.methods.split(",")}
    rows = {m: {k: [] for k in ("fit", "truth", "prior", "right", "deep")} for m in methods}
    for path in sorted((Path(args.root) / "sequenceFiles" / args.split).glob("*.pkl")):
        seq = build_sequence(load_sequence_file(path), "open", kp_source, None, layout=layout)
        n = len(seq.person)
        inp = MethodInput(seq.keypoints, seq.K.expand(n, 3, 3), seq.image_size, seq.gt_params, seq.layout)
        gt14 = metrics.lsp14(seq.gt_joints.double())
        gt_share = depth_share(seq.gt_joints.float())
        for name, method in methods.items():
            pred = method(model, inp).params
            pose, betas, transl = pred.pose.reshape(n, 72).float(), pred.betas.float(), pred.transl.float()
            with torch.no_grad():
                def error(q):
                    return 1000 * metrics.pa_mpjpe(metrics.lsp14(model(q, betas, transl).joints.double()), gt14)

                def nll(q):
                    return prior(q[:, 3:]) + angle_prior(q[:, 3:])

                by_truth, by_prior = pose, pose
                for limb in LIMBS:
                    v = limb_variants(model, by_truth, betas, transl, limb)
                    by_truth = torch.stack(v)[torch.stack([error(q) for q in v]).argmin(0), torch.arange(n)]
                    v = limb_variants(model, by_prior, betas, transl, limb)
                    by_prior = torch.stack(v)[torch.stack([nll(q) for q in v]).argmin(0), torch.arange(n)]
                share = depth_share(model(pose, betas, transl).joints)
                r = rows[name]
                r["fit"].append(error(pose))
                r["truth"].append(error(by_truth))
                r["prior"].append(error(by_prior))
                deep = gt_share.abs() > args.deep
                r["deep"].append(deep)
                r["right"].append(deep & (torch.sign(share) == torch.sign(gt_share)))
        print(f"{path.stem}: {n} people", flush=True)
    print("\n| method | PA-MPJPE-14 (mm) | deep segments the right way | depth signs from the truth (ceiling) "
          "| depth signs by the pose prior |\n|---|---|---|---|---|")
    for name, r in rows.items():
        c = {k: torch.cat(v) for k, v in r.items()}
        right = float(c["right"].sum() / c["deep"].sum())
        print(f"| {name} | {float(c['fit'].mean()):.1f} | {100 * right:.1f} % of {int(c['deep'].sum())} | "
              f"{float(c['truth'].mean()):.1f} | {float(c['prior'].mean()):.1f} |")


if __name__ == "__main__":
    main()
