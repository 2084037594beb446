"""Does training in the loop work? The experiment of issue 13, on held-out motion.

The regressor is trained with 3D supervision on part of the training clips only (set A); the other training
clips (set B) are given as 2D keypoints only (a 3DPW-format set built from them with detector-like corruption,
``make_synthetic.py --clips ...``; its 3D is never read here), plus any real photos and videos (fitlib's own
detections). Four arms, each the same schedule (a first run of ``--base-steps``, then ``--rounds`` rounds of
``--round-steps`` from the previous weights):

* ``noloop``: the rounds train on synthetic A samples only (the same steps as the loop, no pseudo-labels);
* ``loop``: before each round a label job over the 2D-only sources with the current regressor (regress ->
  refine -> compare-and-replace in a store); the round's batches are ``loop.pseudo_fraction`` pseudo-labels;
* ``oracle``: 3D supervision on A and B (the hidden labels), same schedule.

Each round's weights are scored on the synthetic 3DPW set of the held-out evaluation clips (``--eval``):
PA-MPJPE-14 of the regressor alone and of regress -> refine (the default config with those weights). The
share of the oracle's gain that the loop recovers is ``(noloop - loop) / (noloop - oracle)``.

Usage:
  python benchmarks/make_synthetic.py --out /tmp/loop_2d --sequences 48 --frames 20 --seed 5 --split train \\
      --clips climb_seq_1,climb_seq_2,cartwheel,backflip,roll,getup_facedown
  python benchmarks/make_synthetic.py --out /tmp/syn3dpw --sequences 16 --frames 20
  python benchmarks/loop.py --out runs/loop --eval /tmp/syn3dpw --unlabelled /tmp/loop_2d tests/data/messi5.jpg ...
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fitlib.evaluation.benchmark import run_benchmark
from fitlib.training.config import load_train_config
from fitlib.training.loop import round_config, train_loop
from fitlib.training.trainer import train

SET_A = ["climb_seq_0", "walk", "run", "spin", "crawl", "getup_faceup"]
SET_B = ["climb_seq_1", "climb_seq_2", "cartwheel", "backflip", "roll", "getup_facedown"]


def experiment_config(clips: list[str], args) -> dict:
    data = load_train_config("regressor").model_dump()
    steps = args.base_steps
    data.update(batch_size=args.batch, epochs=1, steps_per_epoch=steps, val_samples=1024, checkpoint_every=200)
    data["data"].update(clips=clips, p_prior=0.0)  # the shipped prior saw every training clip: no samples of it
    data["loop"].update(rounds=args.rounds, steps_per_round=args.round_steps, pseudo_fraction=args.pseudo_fraction,
                        smpl_only=args.smpl_only, as_motion=args.as_motion)
    if args.label_rules:  # a label config of its own in the run folder
        import yaml

        from fitlib.labels.config import load_label_config

        lab = load_label_config("labels").model_dump()
        for item in args.label_rules.split(","):
            key, value = item.split("=")
            lab["rules"][key] = int(value) if value.isdigit() else float(value)
        path = Path(args.out) / "labels.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(lab))
        data["loop"]["label_config"] = str(path)
    return data


def score(weights: Path, eval_root: str, max_frames: int | None) -> dict:
    res = run_benchmark(eval_root, methods=[f"regressor@checkpoint={weights}", f"default@regressor={weights}"],
                        max_frames=max_frames, verbose=False)
    s = list(res["summary"].values())
    return {"regressor": round(s[0]["pa_mpjpe14"], 2), "refined": round(s[1]["pa_mpjpe14"], 2)}


def label_quality(store: Path, roots: list[str]) -> dict:
    """PA-MPJPE-14 (mm) of the store's labels of 3DPW-format sources against their hidden 3D (evaluation only: the
    loop never reads it): all valid labels and those with SMPL parameters."""
    import numpy as np
    import torch

    from fitlib.body.model import load_body_model
    from fitlib.datasets.threedpw import build_sequence, load_sequence_file
    from fitlib.evaluation.benchmark import evaluate
    from fitlib.labels import LabelStore
    from fitlib.params import SMPLParams

    model = load_body_model("open")
    with LabelStore(store) as st:
        labels = {lab.key: lab for lab in st.labels(valid_only=True) if lab.dataset.startswith("3dpw/")}
    errs, smpl = [], []
    for root in roots:
        for path in sorted((Path(root) / "sequenceFiles").glob("*/*.pkl")):
            data = load_sequence_file(path)
            seq = build_sequence(data, "open")
            keys = [f"3dpw/{seq.name}|{f:05d}|{p}" for p, f in zip(seq.person, seq.frame)]
            rows = [i for i, k in enumerate(keys) if k in labels]
            if not rows:
                continue
            t = lambda a: torch.as_tensor(np.stack(a), dtype=torch.float32)  # noqa: E731
            pred = SMPLParams.from_pose(t([labels[keys[i]].pose for i in rows]), t([labels[keys[i]].betas for i in rows]),
                                        t([labels[keys[i]].transl for i in rows]))
            sub = type(seq)(seq.name, seq.person[rows], seq.frame[rows], seq.keypoints[rows], seq.K, seq.image_size,
                            seq.gt_joints[rows], seq.gt_vertices[rows], seq.gt_keypoints[rows], seq.gt_params.index(torch.tensor(rows)))
            errs.append(evaluate(model, sub, pred)["pa_mpjpe14"])
            smpl.append(np.array([labels[keys[i]].has_smpl for i in rows]))
    e, m = np.concatenate(errs), np.concatenate(smpl)
    return {"labels": int(len(e)), "pa_mpjpe14": float(e.mean()), "pa_mpjpe14_with_smpl": float(e[m].mean())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--eval", required=True, help="3DPW-format set of held-out motion (make_synthetic.py)")
    ap.add_argument("--unlabelled", nargs="+", required=True, help="2D-only label sources")
    ap.add_argument("--arms", default="noloop,loop,oracle")
    ap.add_argument("--set-a", default=",".join(SET_A), help="training clips with 3D supervision")
    ap.add_argument("--set-b", default=",".join(SET_B), help="training clips given as 2D only (the --unlabelled "
                                                             "3DPW-format set must be built from these)")
    ap.add_argument("--base-steps", type=int, default=1200)
    ap.add_argument("--round-steps", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pseudo-fraction", type=float, default=0.5)
    ap.add_argument("--max-frames", type=int, default=None, help="frames per person scored in --eval")
    ap.add_argument("--label-rules", default="", help="label validity rules overriding configs/labels.yaml's, "
                                                      "e.g. max_score=6,max_prior_nll=60 (the loop arm)")
    ap.add_argument("--smpl-only", action="store_true", help="the loop trains on pseudo-labels with SMPL only")
    ap.add_argument("--as-motion", action=argparse.BooleanOptionalAction, default=True,
                    help="the loop also adds the SMPL pseudo-labels' poses to the synthetic samples' motion "
                         "(loop.as_motion, the default; --no-as-motion: as samples of their own view only)")
    ap.add_argument("--base", help="the first run's weights (regressor.pt of an earlier experiment's base/ with the "
                                   "same --set-a and --base-steps) instead of training it again")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    set_a, set_b = args.set_a.split(","), args.set_b.split(",")
    results: dict = {"args": vars(args), "set_a": set_a, "set_b": set_b}
    cfg_a = load_train_config(experiment_config(set_a, args))
    cfg_ab = load_train_config(experiment_config(set_a + set_b, args))
    arms = args.arms.split(",")
    t0 = time.perf_counter()
    if "noloop" in arms or "loop" in arms:
        base = Path(args.base) if args.base else Path(train(cfg_a, out / "base", progress=False)["out"]) / "regressor.pt"
        results["base"] = score(base, args.eval, args.max_frames)
        print(f"base (3D on A, {args.base_steps} steps): {results['base']}", flush=True)
    for arm in arms:
        rows = []
        if arm == "loop":
            hist = train_loop(cfg_a, out / "loop", out / "loop" / "labels.sqlite", args.unlabelled, init_weights=base,
                              progress=False)
            for h in hist[1:]:
                rows.append({**h, **score(Path(h["weights"]), args.eval, args.max_frames)})
            pw = [u for u in args.unlabelled if (Path(u) / "sequenceFiles").is_dir()]
            if pw:
                results["label_quality"] = label_quality(out / "loop" / "labels.sqlite", pw)
                print(f"pseudo-labels of the 2D-only clips against their hidden 3D: {results['label_quality']}")
        else:
            cfg = cfg_a if arm == "noloop" else cfg_ab
            current = base if arm == "noloop" else Path(train(cfg, out / arm / "round_0", progress=False)["out"]) / "regressor.pt"
            if arm == "oracle":
                rows.append({"round": 0, **score(current, args.eval, args.max_frames)})
            for r in range(1, args.rounds + 1):
                res = train(round_config(cfg, r), out / arm / f"round_{r}", init_weights=current, progress=False)
                current = Path(res["out"]) / "regressor.pt"
                rows.append({"round": r, "weights": str(current), **score(current, args.eval, args.max_frames)})
        for row in rows:
            print(f"{arm:7s} round {row['round']}: regressor {row['regressor']:.1f} mm, regress->refine "
                  f"{row['refined']:.1f} mm" + (f"  (labels {row['labels']}, {row['pseudo_labels']} valid, "
                                                f"{row['with_smpl']} with SMPL)" if "labels" in row else ""), flush=True)
        results[arm] = rows
        with open(out / "results.json", "w") as fh:
            json.dump(results, fh, indent=1)
    if all(a in results for a in ("noloop", "loop", "oracle")):
        for key in ("regressor", "refined"):
            n, l, o = (results[a][-1][key] for a in ("noloop", "loop", "oracle"))
            share = (n - l) / (n - o) if n != o else float("nan")
            results[f"recovered_{key}"] = share
            print(f"{key}: no loop {n:.1f}, loop {l:.1f}, oracle {o:.1f} mm: the loop recovers {100 * share:.0f} % of "
                  "the oracle's gain")
    results["minutes"] = (time.perf_counter() - t0) / 60
    with open(out / "results.json", "w") as fh:
        json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    main()
