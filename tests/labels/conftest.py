"""Fixtures of the label tests: a small 3DPW-format set (real held-out motion, the open model)."""
import pytest


@pytest.fixture(scope="session")
def label_set(tmp_path_factory):
    """Two synthetic sequences of 6 frames (the second with two people): a label source with 18 person samples."""
    from fitlib.datasets.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("labelset")
    make_synthetic(root, sequences=2, frames=6, seed=4)
    return root
