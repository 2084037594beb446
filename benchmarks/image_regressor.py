"""The image path on this CPU machine: crop loading, a training step, inference, and Ray Train's data parallelism,
each against its alternative in the same run (the test photos with the bundled detector's people as SPIN samples).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/image_regressor.py --repeats 5

Rows (medians over --repeats, the compared variants alternated):

* loader: augmented 224 px crops per second, 2 threads against 1 (``SpinDataset.batch``);
* train step: seconds per step of the image regressor (ResNet-50, 224 px crops, batch 8) against the keypoint
  regressor's (batch 256), one process with 2 torch threads;
* inference: people/s of ``fitlib.regress`` with an image network against the shipped keypoint network;
* Ray (``--ray``): step time of 2 Ray Train workers (1 thread each, batch 8 split 4 + 4) against one process with
  2 threads, from the trainers' own step timers (Ray's start-up excluded, reported separately).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import fitlib
from fitlib.body.model import load_body_model
from fitlib.datasets.crops import AugmentConfig
from fitlib.datasets.spin_data import SpinDataset
from fitlib.interop import write_spin_npz
from fitlib.regression.checkpoint import save_regressor
from fitlib.regression.model import Regressor
from fitlib.training.config import load_train_config
from fitlib.training.data import SampleGenerator
from fitlib.training.image_samples import ImageSamples
from fitlib.training.trainer import regressor_loss, train

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
PHOTOS = ("messi5.jpg", "basketball1.png", "astronaut.jpg", "bus.jpg")


def photo_set(root: Path) -> Path:
    """The photos' detected people as a 2D-only SPIN npz in ``root`` (images copied beside it)."""
    import shutil

    names, kps, boxes = [], [], []
    for name in PHOTOS:
        shutil.copy(DATA / name, root / name)
        det = fitlib.detect(root / name)
        names += [name] * len(det)
        kps.append(det.keypoints)
        boxes.append(det.boxes)
    n = len(names)
    return write_spin_npz(root / "photos.npz", imgname=names, pose=np.zeros((n, 72)), betas=np.zeros((n, 10)),
                          keypoints=np.concatenate(kps), layout="coco17", boxes=np.concatenate(boxes),
                          has_smpl=[False] * n)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ray", action="store_true", help="also time 2 Ray Train workers against one process")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_body_model("open")
    tmp = Path(tempfile.mkdtemp())
    npz = photo_set(tmp)
    ds = SpinDataset(npz, tmp, model, augment=AugmentConfig())
    n = len(ds)
    idx = np.arange(32) % n
    # ------------------------------------------------------------------ loader
    times = {1: [], 2: []}
    ds.batch(idx, np.random.default_rng(0), threads=2)  # warm-up
    for r in range(args.repeats):
        for t in (1, 2):
            t0 = time.perf_counter()
            ds.batch(idx, np.random.default_rng(r), threads=t)
            times[t].append(time.perf_counter() - t0)
    c1, c2 = len(idx) / med(times[1]), len(idx) / med(times[2])
    print(f"loader: {c1:.0f} crops/s (1 thread), {c2:.0f} crops/s (2 threads): x{c2 / c1:.2f}")
    # ------------------------------------------------------------------ train step
    cfg_img = load_train_config({"model": {"encoder": "image", "camera": "spin", "hypotheses": 1},
                                 "images": {"train": [{"npz": str(npz), "image_root": str(tmp)}]}})
    cfg_kp = load_train_config({})
    img_batch = ImageSamples(cfg_img.images.train, model, "coco17", 224, {}, 0, "train").batch(0, 8)
    kp_batch = SampleGenerator(model, cfg_kp.data, "train", "coco17", 0).batch(0, 256)
    nets = {"image": Regressor(cfg_img.model).train(), "keypoints": Regressor(cfg_kp.model).train()}
    opts = {k: torch.optim.AdamW(v.parameters(), lr=1e-5) for k, v in nets.items()}
    batches = {"image": img_batch, "keypoints": kp_batch}
    cams = {"image": "spin", "keypoints": "cliff"}
    steps = {k: [] for k in nets}

    def step(k):
        b = batches[k]
        t0 = time.perf_counter()
        out = nets[k](b.keypoints, b.K, b.images, b.centre, b.size)
        loss, _ = regressor_loss(model, out, b, cfg_kp.loss, "coco17", cams[k])
        opts[k].zero_grad()
        loss.backward()
        opts[k].step()
        return time.perf_counter() - t0

    for k in nets:
        step(k)  # warm-up
    for _ in range(args.repeats):
        for k in nets:
            steps[k].append(step(k))
    si, sk = med(steps["image"]), med(steps["keypoints"])
    print(f"train step: image regressor {si:.2f} s (batch 8, {8 / si:.1f} crops/s), keypoint regressor {sk:.3f} s "
          f"(batch 256, {256 / sk:.0f} samples/s): an image step costs x{si / sk:.1f} a keypoint step")
    # ------------------------------------------------------------------ inference
    net = nets["image"].eval()
    ckpt = save_regressor(tmp / "image.pt", net, half=True)
    image = fitlib.load_image(DATA / "bus.jpg")
    det = fitlib.detect(image)
    fitlib.regress(image, det, checkpoint=ckpt)
    fitlib.regress(image, det)
    inf = {"image": [], "keypoints": []}
    for _ in range(args.repeats):
        for k, c in (("image", ckpt), ("keypoints", None)):
            t0 = time.perf_counter()
            fitlib.regress(image, det, checkpoint=c)
            inf[k].append(time.perf_counter() - t0)
    pi, pk = len(det) / med(inf["image"]), len(det) / med(inf["keypoints"])
    print(f"inference (bus.jpg, {len(det)} people): image network {pi:.1f} people/s, keypoint network {pk:.0f} "
          f"people/s: x{pk / pi:.0f}")
    # ------------------------------------------------------------------ Ray
    if args.ray:
        import ray

        from fitlib.training.ray_train import train_on_ray

        base = {"seed": 1, "batch_size": 8, "epochs": 1, "steps_per_epoch": 2 * args.repeats, "warmup_steps": 1,
                "log_every": 1, "val_samples": 4, "checkpoint_every": 1000,
                "model": {"encoder": "image", "camera": "spin", "hypotheses": 1},
                "images": {"train": [{"npz": str(npz), "image_root": str(tmp)}], "loader_threads": 1}}
        ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
        t0 = time.perf_counter()
        r2 = train_on_ray({**base, "threads": 1}, tmp / "ray2", workers=2)
        wall = time.perf_counter() - t0
        l1 = train({**base, "threads": 2}, tmp / "local", model, progress=False)
        s2, s1 = r2["seconds"] / r2["step"], l1["seconds"] / l1["step"]
        print(f"Ray: 2 workers {s2:.2f} s/step, one process (2 threads) {s1:.2f} s/step: x{s1 / s2:.2f} "
              f"(mean over {r2['step']} steps; the Ray run took {wall:.0f} s wall with start-up)")
        ray.shutdown()


if __name__ == "__main__":
    main()
