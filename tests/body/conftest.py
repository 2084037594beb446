"""Synthetic SMPL-layout model dicts: valid for every check of fitlib.body.model_file, no anny build needed."""
import numpy as np
import pytest

from fitlib.body.skeleton import SMPL_PARENTS


def synthetic_model(vertices: int = 40, seed: int = 0, posedirs_dtype=np.float64) -> dict:
    """A random model dict in SMPL's layout with ``vertices`` vertices (not a body: random geometry with
    rows of weights and regressor summing to one, SMPL's kinematic tree, metres-sized values)."""
    rng = np.random.default_rng(seed)
    weights = rng.random((vertices, 24))
    regressor = rng.random((24, vertices))
    return {
        "v_template": rng.normal(size=(vertices, 3)) * 0.3,
        "shapedirs": rng.normal(size=(vertices, 3, 10)) * 0.01,
        "posedirs": (rng.normal(size=(vertices, 3, 207)) * 0.001).astype(posedirs_dtype),
        "J_regressor": regressor / regressor.sum(1, keepdims=True),
        "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": np.array([[4294967295] + list(SMPL_PARENTS[1:]), list(range(24))], dtype=np.int64),
        "f": rng.integers(0, vertices, size=(2 * vertices, 3)),
    }


@pytest.fixture
def make_model():
    """The :func:`synthetic_model` factory."""
    return synthetic_model
