"""Shared fixtures: the open body model (built once per machine and cached), real photos, and the photos' people as
SPIN-format samples (detections as 2D-only samples; a real label job's fits)."""
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def open_model():
    from fitlib.body.model import load_body_model

    return load_body_model("open")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local 2-CPU Ray cluster for the session's Ray tests (skipped without Ray: ``pip install -e ".[ray]"``)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_3dpw(tmp_path_factory):
    """A one-sequence, four-frame synthetic set in 3DPW's format: (root, [sequence file])."""
    from fitlib.datasets.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("pw3d")
    return root, make_synthetic(root, sequences=1, frames=4, seed=3)


PHOTOS = ("messi5.jpg", "basketball1.png", "astronaut.jpg", "bus.jpg")


@dataclass
class PhotoSet:
    root: Path  # the folder holding the photos (a SPIN image_root)
    imgname: list  # [N] one per detected person: the photo's name
    keypoints: np.ndarray  # [N, 17, 3] COCO-17 detections (px)
    boxes: np.ndarray  # [N, 4] the detector's person boxes


@pytest.fixture(scope="session")
def photo_set(tmp_path_factory, data_dir) -> PhotoSet:
    import fitlib

    root = tmp_path_factory.mktemp("spin") / "photos"
    root.mkdir()
    names, kps, boxes = [], [], []
    for name in PHOTOS:
        shutil.copy(data_dir / name, root / name)
        det = fitlib.detect(root / name)
        for p in range(len(det)):
            names.append(name)
            kps.append(det.keypoints[p])
            boxes.append(det.boxes[p])
    assert len(names) >= 5  # messi 1, basketball 1-2, astronaut 1, bus 2
    return PhotoSet(root, names, np.stack(kps), np.stack(boxes))


def _write_photo_npz(path, photo_set, **kw):
    """The detected people of ``photo_set`` as 2D-only SPIN samples (``part`` and ``openpose`` from the detections)."""
    from fitlib.interop import write_spin_npz

    n = len(photo_set.imgname)
    args = dict(imgname=photo_set.imgname, pose=np.zeros((n, 72)), betas=np.zeros((n, 10)),
                keypoints=photo_set.keypoints, layout="coco17", boxes=photo_set.boxes, has_smpl=[False] * n)
    return write_spin_npz(path, **{**args, **kw})


def _fits_as_spin_npz(path, labels):
    """The label fits as SMPL ground truth, with their exact projections as ``part``."""
    from fitlib.body.model import load_body_model
    from fitlib.camera import project
    from fitlib.interop import write_spin_npz

    model = load_body_model("open", dtype=torch.float64)
    kps = []
    for lab in labels:
        out = model(torch.as_tensor(lab.pose).view(1, 24, 3), torch.as_tensor(lab.betas)[None],
                    torch.as_tensor(lab.transl)[None], layout="coco17")
        xy = project(out.keypoints, torch.as_tensor(lab.K))[0].numpy()
        kps.append(np.concatenate([xy, np.ones((17, 1))], -1))
    return write_spin_npz(path, imgname=[lab.item for lab in labels], pose=np.stack([lab.pose for lab in labels]),
                          betas=np.stack([lab.betas for lab in labels]), keypoints=np.stack(kps), layout="coco17")


@pytest.fixture(scope="session")
def write_photo_npz():
    """``write(path, photo_set, **write_spin_npz arguments)``: the photos' detected people as a SPIN npz."""
    return _write_photo_npz


@pytest.fixture(scope="session")
def fits_as_spin_npz():
    """``write(path, labels)``: label fits as a SPIN npz with SMPL ground truth and their exact 2D."""
    return _fits_as_spin_npz


@pytest.fixture(scope="session")
def detections_npz(photo_set, tmp_path_factory):
    """The detected people as 2D-only SPIN samples (``part`` and ``openpose`` both from the detections)."""
    return _write_photo_npz(tmp_path_factory.mktemp("npz") / "detections.npz", photo_set)


@pytest.fixture(scope="session")
def label_store(photo_set, tmp_path_factory):
    """A real label job (the fast config) over messi5.jpg and bus.jpg of the photo folder: (store, valid labels)."""
    from fitlib.labels import LabelStore, items, run_label_job

    store = tmp_path_factory.mktemp("labels") / "labels.sqlite"
    src = [it for it in items([photo_set.root]) if it.item in ("messi5.jpg", "bus.jpg")]
    summary = run_label_job(src, store, config="fast", progress=False)
    assert summary.done == 2 and summary.failed == 0
    with LabelStore(store) as st:
        labels = [lab for lab in st.labels() if lab.valid and lab.has_smpl]
    assert {lab.item for lab in labels} == {"messi5.jpg", "bus.jpg"}
    return store, labels
