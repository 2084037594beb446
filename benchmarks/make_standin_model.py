"""Write stand-ins for "an SMPL file the regressor was not trained for": SMPL-layout model files derived from the
open model, to measure how the shipped regressor's estimates transfer to another body model (issue 12) while no
licensed SMPL file is available.

Kinds (``--kind``):

* ``reshaped``: the open model with another shape space: the template moved to the body at betas ``b0`` (seeded
  N(0, 1.5²), as the regressor's training draws betas) and the 10 shape directions mixed by a seeded random rotation, so that the same betas mean another
  body while every open-model body is still exactly reachable (``betas' = Q^T (betas - b0)``). It isolates the
  betas: the regressor's shape estimate is wrong for this model, its pose and translation are not.
* ``rebuilt``: the open model's recipe on another population sample (:class:`fitlib.body.open_model.BuildConfig`
  with another seed, ages 18-35, 500 shapes): another template, shape basis, joint regressor and pose blend
  shapes, the way two SMPL-like models built from different scans differ (less than SMPL and the open model do:
  the mesh, the skinning weights and the surface points stay anny's).

Both keep the open model's mesh topology, so PVE is comparable. Usage:

    python benchmarks/make_standin_model.py --kind reshaped --out /tmp/standin_reshaped.pkl
    OMP_WAIT_POLICY=PASSIVE python benchmarks/threedpw.py --root /tmp/syn_full --smpl-dir open \\
        --fit-model /tmp/standin_reshaped.pkl --methods regressor,default,multistart
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from fitlib.body.model_file import REQUIRED_KEYS, read_model_file
from fitlib.body.open_model import BuildConfig, ensure_open_model
from fitlib.io import atomic_write

KEEP = (*REQUIRED_KEYS, "keypoint_regressor")
"""The entries a stand-in file keeps (SMPL's, and the open model's surface points, which follow its mesh)."""


def reshaped(data: dict, seed: int) -> dict:
    """``data`` with its template moved to the body at seeded betas ``b0`` and its shape directions rotated."""
    rng = np.random.default_rng(seed)
    b0 = 1.5 * rng.normal(size=10)
    q, r = np.linalg.qr(rng.normal(size=(10, 10)))
    q = q * np.sign(np.diag(r))  # a uniformly drawn rotation or reflection
    dirs = np.asarray(data["shapedirs"], dtype=np.float64)  # [V, 3, 10]
    out = dict(data)
    out["v_template"] = np.asarray(data["v_template"], dtype=np.float64) + dirs @ b0
    out["shapedirs"] = dirs @ q
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=("reshaped", "rebuilt"), required=True)
    ap.add_argument("--out", required=True, help="the model file to write (.pkl)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    if args.kind == "reshaped":
        data = reshaped(read_model_file(ensure_open_model()), args.seed)
    else:
        config = BuildConfig(seed=args.seed, num_shapes=500, min_age=18.0, max_age=35.0)
        data = read_model_file(ensure_open_model(config))
    data = {k: data[k] for k in KEEP if k in data}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as fh:
        fh.write(pickle.dumps(data, protocol=4))
    v = data["v_template"]
    print(f"wrote {out} ({args.kind}, seed {args.seed}): template {np.ptp(v[:, 1]):.3f} m tall, "
          f"{np.ptp(v[:, 2]):.3f} m deep")
    return out


if __name__ == "__main__":
    main()
