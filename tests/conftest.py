"""Shared fixtures: the open body model (built once per machine and cached) and real photos."""
from pathlib import Path

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
def tiny_3dpw(tmp_path_factory):
    """A one-sequence, four-frame synthetic set in 3DPW's format: (root, [sequence file])."""
    from fitlib.datasets.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("pw3d")
    return root, make_synthetic(root, sequences=1, frames=4, seed=3)
