"""3DPW benchmark: fit SMPL to 2D keypoints of 3DPW's sequences and score it against the ground truth
(the code lives in :mod:`fitlib.evaluation.benchmark`; this script is its command line).

Reads 3DPW's ``sequenceFiles/<split>/*.pkl`` (latin-1 pickles; fields ``poses``, ``betas``,
``trans``, ``genders``, ``cam_poses``, ``cam_intrinsics``, ``poses2d``, ``campose_valid``,
``img_frame_ids``), or the synthetic stand-in written by ``benchmarks/make_synthetic.py``.

Ground truth: each person's gendered SMPL model (``genders`` 'm' / 'f') posed with the
dataset's world-frame ``poses`` / ``betas`` / ``trans`` and moved into the camera with
``cam_poses``; only frames with ``campose_valid`` are scored.  With ``--smpl-dir open`` every
gender maps to fitlib's open model (the synthetic set is built with it).

Predictions: each method maps 2D keypoints (COCO-17) + intrinsics to SMPL parameters in the
camera frame, posed with the neutral model of ``--smpl-dir`` (or of ``--fit-model``: another body model than
the ground truth's, e.g. one the regressor was not trained for, ``benchmarks/make_standin_model.py``).  Methods
(rows of the table):

* ``spin``: the reference SMPLify mode (``configs/spin.yaml``: full mesh each iteration,
  Adam 100 + 100 iterations, from the mean pose, no early stop);
* ``default``: fitlib's default fitter (``configs/default.yaml``);
* ``gt``: the ground truth re-expressed in the camera frame (a sanity check: 0 mm on the
  synthetic set, the neutral-vs-gendered model gap on real 3DPW);
* ``noisy_gt``, ``noisy_gt_strong``: the ground truth with seeded errors, stand-ins for a regressor;
* ``INIT+CONFIG`` (e.g. ``noisy_gt+default``): the fit started from method INIT's estimate, as
  ``fitlib.fit(..., init=...)`` will refine a regressor's (:mod:`fitlib.evaluation.methods`).

Metrics per person-frame, averaged over all scored person-frames (the 3DPW protocol):
MPJPE and PA-MPJPE on the 14 LSP joints (:func:`fitlib.evaluation.metrics.lsp14`, root = mean of the hips)
and separately on the 24 SMPL joints (the two are not comparable), PVE (mm, hips aligned),
2D reprojection error (px) against the input keypoints the method saw (points with confidence
>= 0.2) and against the ground-truth model's projected keypoints, and people per second
(person-frames fitted per second of the method's wall time).

Keypoint sources (``--keypoints``): ``poses2d`` (the dataset's OpenPose-18 detections,
converted by name to COCO-17; the neck is dropped), or an ``.npz`` file with one array
``"<sequence>/<person>"`` [T, J, 3] (x px, y px, confidence) per person, aligned with the
sequence's image frames, in the fitlib layout named by its ``"layout"`` entry (default coco17), which the
methods then read (``benchmarks/feet_detections.py`` writes COCO-17 + feet for the synthetic sets).

Usage:
    OMP_WAIT_POLICY=PASSIVE python benchmarks/threedpw.py --root PATH --smpl-dir PATH|open --split test \
        [--keypoints poses2d|FILE] [--methods spin,default] [--max-frames N] [--out DIR] [--fit-model PATH|open]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402

import torch  # noqa: E402

from fitlib.evaluation.benchmark import run_benchmark  # noqa: E402
from fitlib.evaluation.methods import METHODS  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="3DPW root (holding sequenceFiles/)")
    ap.add_argument("--smpl-dir", default="open", help="folder with SMPL_{NEUTRAL,MALE,FEMALE}.pkl, or 'open'")
    ap.add_argument("--fit-model", default=None, help="the body model the methods fit with ('open', an SMPL file "
                    "or folder; default: --smpl-dir's neutral model); the ground truth stays posed with --smpl-dir")
    ap.add_argument("--split", default="test")
    ap.add_argument("--keypoints", default="poses2d", help="'poses2d' or an .npz of detections (see above)")
    ap.add_argument("--methods", default="spin,default", help=f"comma-separated: {sorted(METHODS)}, configs, CONFIG@key=value, INIT+CONFIG")
    ap.add_argument("--max-frames", type=int, default=None, help="score at most N valid frames per person")
    ap.add_argument("--batch-size", type=int, default=512, help="people per fitter call (0: whole sequence)")
    ap.add_argument("--out", default=None, help="folder for results.json, per_sequence.csv, table.md")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(True)
    res = run_benchmark(args.root, args.smpl_dir, args.split, args.keypoints,
                        [m.strip() for m in args.methods.split(",") if m.strip()], args.max_frames, args.out,
                        args.batch_size, fit_model=args.fit_model)
    print()
    print(res["table"])
    return res


if __name__ == "__main__":
    main()
