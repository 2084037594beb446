"""Reading SMPL-layout model files: chumpy pickles without chumpy, npz, and clear errors for bad files."""
import importlib.util
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
import torch

from fitlib.body.model import load_body_model
from fitlib.body.model_file import REQUIRED_KEYS, check_model_dict, read_model_file
from fitlib.body.open_model import ensure_open_model


@pytest.fixture(scope="module")
def open_arrays() -> dict:
    """The open model's SMPL arrays (built on first use and cached)."""
    data = read_model_file(ensure_open_model(progress=False))
    return {k: data[k] for k in REQUIRED_KEYS}


class _FakeCh:
    """Pickles like a chumpy array: class ``chumpy.ch.Ch``, state ``__dict__`` holding the value under ``x``."""

    def __init__(self, x=None):
        if x is not None:
            self.__dict__ = {"x": np.asarray(x), "_dirty_vars": set(), "_itr": None}


def _write_chumpy_pickle(path, arrays: dict, extra: dict | None = None, expressions: tuple[str, ...] = ()) -> None:
    """Write an official-SMPL-like pickle (protocol 2, chumpy objects, sparse regressor) with fake chumpy modules.

    Keys in ``expressions`` are stored as chumpy objects without a value (like a chumpy
    expression ``a + b``, whose state holds its operands, not ``x``).
    """
    chumpy, ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    Ch = type("Ch", (_FakeCh,), {"__module__": "chumpy.ch"})
    ch.Ch, chumpy.ch, chumpy.Ch = Ch, ch, Ch
    saved = {name: sys.modules.get(name) for name in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
    try:
        data = {
            "v_template": Ch(arrays["v_template"]),
            "shapedirs": Ch(arrays["shapedirs"]),
            "posedirs": Ch(arrays["posedirs"]),
            "weights": Ch(arrays["weights"]),
            "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
            "J": Ch(arrays["J_regressor"] @ arrays["v_template"]),
            "kintree_table": arrays["kintree_table"],
            "f": arrays["f"].astype(np.uint32),
            "bs_type": "lrotmin",
            "bs_style": "lbs",
            **(extra or {}),
        }
        for key in expressions:
            expr = Ch()
            expr.__dict__ = {"a": Ch(arrays[key]), "b": Ch(np.zeros(1))}
            data[key] = expr
        path.write_bytes(pickle.dumps(data, protocol=2))
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


@pytest.fixture(scope="module")
def chumpy_pickle(tmp_path_factory, open_arrays):
    path = tmp_path_factory.mktemp("smpl") / "SMPL_NEUTRAL.pkl"
    _write_chumpy_pickle(path, open_arrays)
    return path


def test_chumpy_pickle_loads_without_chumpy(chumpy_pickle, open_arrays):
    assert "chumpy" not in sys.modules and importlib.util.find_spec("chumpy") is None
    raw = chumpy_pickle.read_bytes()
    assert b"chumpy.ch" in raw and b"scipy.sparse" in raw  # it really holds chumpy and sparse objects
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        pickle.loads(raw, encoding="latin1")  # what a plain unpickler does
    data = read_model_file(chumpy_pickle)
    assert "chumpy" not in sys.modules
    for key in REQUIRED_KEYS:
        assert isinstance(data[key], np.ndarray), key
        np.testing.assert_array_equal(data[key], open_arrays[key], err_msg=key)
    np.testing.assert_array_equal(data["J"], open_arrays["J_regressor"] @ open_arrays["v_template"])
    assert data["bs_style"] == "lbs"


def test_chumpy_pickle_gives_the_open_models_bodies(chumpy_pickle, dtype):
    smpl = load_body_model(chumpy_pickle, dtype=dtype)
    ref = load_body_model("open", dtype=dtype)
    assert smpl.name == "SMPL_NEUTRAL" and smpl.num_vertices == ref.num_vertices
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(3, 24, 3, generator=g, dtype=dtype) * 0.3
    betas = torch.randn(3, 10, generator=g, dtype=dtype)
    transl = torch.randn(3, 3, generator=g, dtype=dtype)
    atol = 1e-5 if dtype == torch.float32 else 1e-6  # float32 sums of metre-sized values: ~1e-6 m apart by thread count
    for vertices in (True, False):
        a = smpl(pose, betas, transl, layout="smpl24", vertices=vertices)
        b = ref(pose, betas, transl, layout="smpl24", vertices=vertices)
        torch.testing.assert_close(a.joints, b.joints, rtol=0, atol=atol)
        torch.testing.assert_close(a.keypoints, b.keypoints, rtol=0, atol=atol)
        if vertices:
            torch.testing.assert_close(a.vertices, b.vertices, rtol=0, atol=atol)
    np.testing.assert_array_equal(smpl.faces, ref.faces)


def test_more_than_ten_shape_directions(tmp_path, open_arrays):
    # SMPL 1.1 files carry 300 shape directions; fitlib uses the first 10
    extra = dict(open_arrays)
    rng = np.random.default_rng(0)
    extra["shapedirs"] = np.concatenate([open_arrays["shapedirs"], rng.normal(size=(len(extra["v_template"]), 3, 5))],
                                        axis=2)
    path = tmp_path / "smpl300.pkl"
    _write_chumpy_pickle(path, extra)
    assert read_model_file(path)["shapedirs"].shape[2] == 15
    betas = torch.randn(2, 10, dtype=torch.float64)
    pose = torch.zeros(2, 24, 3, dtype=torch.float64)
    a = load_body_model(path, dtype=torch.float64)(pose, betas, vertices=True)
    b = load_body_model("open", dtype=torch.float64)(pose, betas, vertices=True)
    torch.testing.assert_close(a.vertices, b.vertices)


def test_npz_round_trip(tmp_path, open_arrays):
    path = tmp_path / "SMPL_NEUTRAL.npz"
    np.savez(path, **open_arrays)
    data = read_model_file(path)
    assert set(data) == set(REQUIRED_KEYS)
    for key in REQUIRED_KEYS:
        np.testing.assert_array_equal(data[key], open_arrays[key], err_msg=key)
        assert data[key].dtype == open_arrays[key].dtype


def test_plain_pickle_of_sparse_regressor(tmp_path, open_arrays):
    data = dict(open_arrays, J_regressor=scipy.sparse.csr_matrix(open_arrays["J_regressor"]))
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    np.testing.assert_array_equal(read_model_file(path)["J_regressor"], open_arrays["J_regressor"])


def test_sparse_regressor_with_bad_indices(tmp_path, open_arrays):
    """Out-of-range indices in a sparse matrix would crash the process in toarray(); they are an error."""
    bad = scipy.sparse.csc_matrix(open_arrays["J_regressor"])
    bad.indices[0] = 10_000  # a row far beyond the 24 joints
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(dict(open_arrays, J_regressor=bad), protocol=4))
    with pytest.raises(ValueError, match="not a readable SMPL model file"):
        read_model_file(path)


def test_npz_with_a_damaged_header(tmp_path, open_arrays):
    path = tmp_path / "model.npz"
    np.savez(path, **open_arrays)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"{'descr'")
    raw[at:at + 8] = b"{'descr("  # an unbalanced bracket in the first array's header
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="not a readable SMPL model file"):
        read_model_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_model_file(tmp_path / "SMPL_NEUTRAL.pkl")
    with pytest.raises(FileNotFoundError):
        read_model_file(tmp_path)  # a directory is not a model file


@pytest.mark.parametrize("content", [
    b"", b"this is not a pickle at all", b"\x80\x02}q\x00(X\x01\x00\x00\x00aq", bytes(range(256)) * 4,
    b"PK\x03\x04 truncated zip",
], ids=["empty", "text", "truncated-pickle", "binary", "bad-zip"])
def test_corrupt_bytes(tmp_path, content):
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="SMPL"):
        read_model_file(path)


def test_truncated_real_file(tmp_path, chumpy_pickle):
    path = tmp_path / "half.pkl"
    raw = chumpy_pickle.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a readable SMPL model file"):
        read_model_file(path)


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="holds a list, not a dict"):
        read_model_file(path)


def test_chumpy_expression_without_value(tmp_path, open_arrays):
    path = tmp_path / "expr.pkl"
    _write_chumpy_pickle(path, open_arrays, expressions=("weights",))
    with pytest.raises(ValueError, match="'weights' is a chumpy expression without a stored value"):
        read_model_file(path)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key(tmp_path, open_arrays, key):
    data = {k: v for k, v in open_arrays.items() if k != key}
    path = tmp_path / "model.npz"
    np.savez(path, **data)
    with pytest.raises(ValueError, match=f"lacks SMPL model entries \\['{key}'\\]"):
        read_model_file(path)


@pytest.mark.parametrize("key,bad", [
    ("v_template", lambda a: a[:, :2]),
    ("shapedirs", lambda a: a[..., :5]),
    ("shapedirs", lambda a: a[:-1]),
    ("posedirs", lambda a: a[..., :200]),
    ("J_regressor", lambda a: a[:23]),
    ("weights", lambda a: a[:, :22]),
    ("kintree_table", lambda a: a[:, :22]),
    ("f", lambda a: a[:, :2]),
])
def test_wrong_shapes(key, bad, open_arrays):
    data = dict(open_arrays)
    data[key] = bad(data[key])
    with pytest.raises(ValueError, match=key):
        check_model_dict(data)


@pytest.mark.parametrize("key", ["v_template", "shapedirs", "posedirs", "J_regressor", "weights"])
def test_nan_entries(tmp_path, open_arrays, key):
    data = dict(open_arrays)
    data[key] = data[key].copy()
    data[key].flat[123] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, **data)
    with pytest.raises(ValueError, match=f"{key} contains NaN"):
        read_model_file(path)


def test_faces_out_of_range(open_arrays):
    data = dict(open_arrays, f=open_arrays["f"].copy())
    data["f"][7, 1] = len(data["v_template"])
    with pytest.raises(ValueError, match="faces index vertices outside"):
        check_model_dict(data, source="my.pkl")


# ------------------------------------------------------------------------------------------ hardening
class _Payload:
    """Unpickling this creates ``marker``: the code an attacker's model file would run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_in_a_model_file_does_not_run(tmp_path, make_model):
    """A .pkl whose object runs a command when unpickled, through every entry point that reads model files:
    the file is refused naming the class and the file, and the command does not run."""
    from fitlib.datasets.threedpw import load_sequence_file

    marker = tmp_path / "pwned"
    folder = tmp_path / "smpl"
    folder.mkdir()
    path = folder / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({**make_model(), "J": _Payload(marker)}, protocol=2))
    for load in (read_model_file, load_body_model, lambda p: load_body_model(p.parent), load_sequence_file):
        with pytest.raises(ValueError, match=rf"{path}.*refused to unpickle \w+\.system"):
            load(path)
        assert not marker.exists()
    pickle.loads(path.read_bytes())  # the check has teeth: a plain unpickler runs it
    assert marker.exists()


def test_npz_model_files_never_unpickle(tmp_path, make_model):
    marker = tmp_path / "pwned"
    path = tmp_path / "m.npz"
    np.savez(path, **make_model(), keypoint_regressor=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ValueError, match="'keypoint_regressor'.*Python objects"):
        read_model_file(path)
    assert not marker.exists()


def test_npz_with_a_nested_keypoint_regressor(tmp_path, make_model):
    """fitlib's own nested entry, stored in an .npz as ``keypoint_regressor/<field>`` arrays (no objects)."""
    data = make_model()
    reg = {"names": np.array(["nose", "left_eye"]), "vertex_ids": np.array([[0, 1], [2, 3]]),
           "weights": np.array([[0.5, 0.5], [0.25, 0.75]])}
    path = tmp_path / "m.npz"
    np.savez(path, **data, **{f"keypoint_regressor/{k}": v for k, v in reg.items()})
    back = read_model_file(path)
    assert set(back["keypoint_regressor"]) == set(reg)
    for key, value in reg.items():
        np.testing.assert_array_equal(back["keypoint_regressor"][key], value)
    reg["vertex_ids"] = np.array([[0, 1], [2, len(data["v_template"])]])
    np.savez(path, **data, **{f"keypoint_regressor/{k}": v for k, v in reg.items()})
    with pytest.raises(ValueError, match="keypoint_regressor indexes vertices outside"):
        read_model_file(path)


def test_cached_open_model_loads_through_the_allow_list(open_arrays):
    """The open model's cache is a plain pickle written by fitlib, holding nested dicts: it loads whole."""
    data = read_model_file(ensure_open_model(progress=False))
    assert set(data["keypoint_regressor"]) == {"names", "vertex_ids", "weights"}
    assert len(data["keypoint_regressor"]["names"]) == 23 and data["fitlib_meta"]["build_version"] >= 1
    assert data["fitlib_meta"]["shape_std"].shape == (10,)


@pytest.mark.parametrize("key,damage,message", [
    ("kintree_table", lambda a: a[:, ::-1].copy(), "kintree_table is not SMPL's kinematic tree"),
    ("weights", lambda a: a * 1.5, "weights are not skinning weights"),
    ("weights", lambda a: a - 0.01, "weights are not skinning weights"),
    ("J_regressor", lambda a: a * 2, "J_regressor rows do not sum to 1"),
    ("v_template", lambda a: a * 1e6, "v_template has values beyond"),
    ("shapedirs", lambda a: a + 1e30, "shapedirs has values beyond"),
    ("f", lambda a: a.astype(np.float64), "faces index vertices"),
    ("posedirs", lambda a: a.astype(str), "posedirs is not a numeric array"),
])
def test_content_that_cannot_be_a_body(make_model, key, damage, message):
    data = make_model()
    data[key] = damage(data[key])
    with pytest.raises(ValueError, match=message):
        check_model_dict(data, source="m.pkl")


def test_sparse_regressor_claiming_a_huge_shape(tmp_path, make_model):
    """A damaged shape of a sparse regressor (24 x 10^9: 192 GB dense) is refused before expanding it."""
    data = make_model()
    sparse = scipy.sparse.csc_matrix(data["J_regressor"])
    raw = pickle.dumps(dict(data, J_regressor=sparse), protocol=2)
    shape = b"K\x18K(\x86"  # the tuple (24, 40): BININT1 24, BININT1 40, TUPLE2
    assert raw.count(shape) == 1
    path = tmp_path / "m.pkl"
    path.write_bytes(raw.replace(shape, b"K\x18J" + (10**9).to_bytes(4, "little") + b"\x86"))  # (24, 10^9)
    with pytest.raises(ValueError, match="claims shape"):
        read_model_file(path)


def test_too_few_vertices_for_smplx(tmp_path, make_model):
    path = tmp_path / "m.npz"
    np.savez(path, **make_model())
    assert read_model_file(path)["v_template"].shape == (40, 3)  # a well-formed file...
    with pytest.raises(ValueError, match="needs at least 6890"):
        load_body_model(path)  # ...that smplx could not pose (it reads SMPL's face and foot vertices)
