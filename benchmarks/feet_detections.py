"""Write COCO-17 + feet detections (``coco17_feet``) for a synthetic 3DPW-format set, as a whole-body detector
(COCO-WholeBody, Halpe) would give them, for ``benchmarks/threedpw.py --keypoints``.

The 17 COCO points are the set's own ``poses2d`` (OpenPose-18, converted as the benchmark converts them), so a
run with this file and one without differ only by the feet. The 6 foot points are the ground-truth body's,
projected and corrupted like the rest of the set (:func:`fitlib.datasets.synthetic.corrupt_keypoints` with
the default :class:`~fitlib.datasets.synthetic.Corruption`, on the whole BODY_25 body so that the noise scales
with the person; no swaps of their own), and follow the detected legs: where the detector swapped the ankles,
the feet are swapped too.

Usage:
    python benchmarks/feet_detections.py --root /tmp/syn_full --out /tmp/syn_full_feet.npz [--clean]
    OMP_WAIT_POLICY=PASSIVE python benchmarks/threedpw.py --root /tmp/syn_full --smpl-dir open --split test \\
        --keypoints /tmp/syn_full_feet.npz --methods regressor,default
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fitlib.body.layouts import FEET_NAMES, get_layout
from fitlib.body.model import load_body_model
from fitlib.camera import project
from fitlib.datasets.synthetic import Corruption, corrupt_keypoints
from fitlib.datasets.threedpw import load_sequence_file, openpose18_to_coco17


def person_detections(model, data: dict, p: int, rng: np.random.Generator, corruption: Corruption) -> np.ndarray:
    """[T, 23, 3] ``coco17_feet`` detections of person ``p`` of a sequence dict, every image frame, the feet
    corrupted with ``corruption`` (its swaps aside)."""
    poses = torch.as_tensor(np.asarray(data["poses"][p], dtype=np.float64))
    T = len(poses)
    betas = torch.as_tensor(np.asarray(data["betas"][p], dtype=np.float64)[:10]).expand(T, 10)
    trans = torch.as_tensor(np.asarray(data["trans"][p], dtype=np.float64))
    cam = torch.as_tensor(np.asarray(data["cam_poses"], dtype=np.float64)[:T])
    K = torch.as_tensor(np.asarray(data["cam_intrinsics"], dtype=np.float64))
    size = (int(round(2 * float(K[1, 2]))), int(round(2 * float(K[0, 2]))))
    body25 = get_layout("body25")
    with torch.no_grad():
        pts = model(poses.reshape(T, 24, 3).to(model.joint_template), betas.to(model.joint_template),
                    trans.to(model.joint_template), layout=body25.name).keypoints.double()
        cam_pts = torch.einsum("tij,tkj->tki", cam[:, :3, :3], pts) + cam[:, None, :3, 3]
        xy = project(cam_pts, K).numpy()
    det = corrupt_keypoints(xy, rng, replace(corruption, swap=0.0), size, body25.names)
    coco = openpose18_to_coco17(np.asarray(data["poses2d"][p], dtype=np.float64).transpose(0, 2, 1))  # [T, 17, 3]
    feet = det[:, [body25.index(n) for n in FEET_NAMES]]  # [T, 6, 3] left big toe, small toe, heel, then right
    # the detector's legs: where its ankles are the truth's swapped, the feet go with them
    gt_l, gt_r = xy[:, body25.index("left_ankle")], xy[:, body25.index("right_ankle")]
    coco17 = get_layout("coco17")
    d_l, d_r = coco[:, coco17.index("left_ankle"), :2], coco[:, coco17.index("right_ankle"), :2]
    seen = (coco[:, coco17.index("left_ankle"), 2] > 0) & (coco[:, coco17.index("right_ankle"), 2] > 0)
    dist = lambda a, b: np.linalg.norm(a - b, axis=-1)  # noqa: E731
    swapped = seen & (dist(d_l, gt_r) + dist(d_r, gt_l) < dist(d_l, gt_l) + dist(d_r, gt_r))
    feet[swapped] = feet[swapped][:, [3, 4, 5, 0, 1, 2]]
    return np.concatenate([coco, feet], 1)


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="the set's root (holding sequenceFiles/)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True, help="the .npz to write")
    ap.add_argument("--clean", action="store_true", help="exact foot points (for a set made with make_synthetic.py --clean)")
    args = ap.parse_args(argv)
    model = load_body_model("open", dtype=torch.float64)
    files = sorted((Path(args.root) / "sequenceFiles" / args.split).glob("*.pkl"))
    if not files:
        raise FileNotFoundError(f"no sequence files in {Path(args.root) / 'sequenceFiles' / args.split}")
    corruption = Corruption(0.0, 0.0, 0.0, 0.0) if args.clean else Corruption()  # as make_synthetic.py --clean
    tracks = {}
    for path in files:
        data = load_sequence_file(path)
        name = str(data["sequence"])
        for p in range(len(data["poses"])):
            rng = np.random.default_rng(zlib.crc32(f"{name}/{p}".encode()))
            tracks[f"{name}/{p}"] = person_detections(model, data, p, rng, corruption)
    out = Path(args.out)
    np.savez_compressed(out, layout=np.array("coco17_feet"), **tracks)
    print(f"wrote {out}: {len(tracks)} people of {len(files)} sequences")
    return out


if __name__ == "__main__":
    main()
