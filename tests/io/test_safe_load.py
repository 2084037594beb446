"""The readers of untrusted files: the allow-list unpickler, npz without pickles, regular files only."""
import io
import os
import pickle
import struct
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
import scipy.sparse

from fitlib.io.safe_load import MAX_ELEMENTS, SparseStandIn, load_npz, load_pickle, read_regular_file


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``: what an attacker's model file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _ExecPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_Payload, _ExecPayload])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_code_in_a_pickle_does_not_run(tmp_path, payload, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps({"v_template": np.zeros((3, 3)), "evil": payload(marker)}, protocol=protocol)
    with pytest.raises(ValueError, match=r"x\.pkl: refused to unpickle (posix|nt|os|builtins|__builtin__)\.(system|exec)"):
        load_pickle(data, "x.pkl")
    assert not marker.exists()
    pickle.loads(data)  # the check has teeth: a plain unpickler runs it
    assert marker.exists()


def test_payload_hidden_in_a_chumpy_state_does_not_run(tmp_path):
    """A chumpy object (an allowed stand-in) whose state {"x": ...} holds the payload."""
    marker = tmp_path / "pwned"
    data = (b"\x80\x02cchumpy.ch\nCh\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00xq\x03"
            + pickle.dumps(_Payload(marker), protocol=2)[2:-1] + b"sb.")
    with pytest.raises(ValueError, match=r"refused to unpickle \w+\.system"):
        load_pickle(data, "smpl.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(6))
def test_allowed_content_round_trips(protocol):
    obj = {"a": np.arange(5.0), "i": np.arange(4, dtype=np.int32).reshape(2, 2), "u": np.array(["ab", "c"]),
           "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "b": np.array([True, False]),
           "scalar": np.float32(2.5), "int": np.int64(7), "set": {1, 2}, "frozen": frozenset([3]), "bytes": b"xy",
           "text": "SMPL", "nested": {"l": [1, 2.5, None, ("t", 1)]},
           "sparse": scipy.sparse.csc_matrix(np.eye(3)), "sparse_r": scipy.sparse.csr_matrix(np.ones((2, 3)))}
    back = load_pickle(pickle.dumps(obj, protocol=protocol), "ok.pkl")
    for key in ("a", "i", "u", "fortran", "b"):
        assert np.array_equal(back[key], obj[key]) and back[key].dtype == obj[key].dtype, key
    assert back["scalar"] == np.float32(2.5) and type(back["scalar"]) is np.float32
    assert back["set"] == {1, 2} and back["frozen"] == frozenset([3]) and back["bytes"] == b"xy"
    assert back["nested"] == obj["nested"] and back["text"] == "SMPL"
    for key in ("sparse", "sparse_r"):
        assert isinstance(back[key], SparseStandIn)
        assert (back[key].to_scipy(key) != obj[key]).nnz == 0


def test_a_huge_memo_index_allocates_nothing():
    """A one-byte change in a LONG_BINPUT index makes C's unpickler allocate and clear a memo of 2^28 entries
    (2 GB, seconds); fitlib's unpickler keeps its memo in a dict."""
    data = b"\x80\x02K\x01r" + struct.pack("<I", 2**28) + b"."
    tracemalloc.start()
    try:
        start = time.perf_counter()
        assert load_pickle(data, "x.pkl") == 1
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 10e6


def test_absurd_sizes_are_refused_before_allocating():
    # an array reconstruction asking for 2^40 elements (a damaged shape in the pickle)
    reconstruct = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                   b"\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85C\x01b\x87R.")
    with pytest.raises(ValueError, match="larger than"):
        load_pickle(reconstruct, "x.pkl")
    # a sparse matrix whose shape says 24 x 10^9: expanding it would take 192 GB
    sparse = scipy.sparse.csc_matrix(np.eye(24, 40))
    state = load_pickle(pickle.dumps(sparse, protocol=2), "x.pkl")
    state.state["_shape"] = (24, 10**9)
    with pytest.raises(ValueError, match=f"more than {MAX_ELEMENTS} elements"):
        state.to_scipy("J_regressor")
    state.state["_shape"] = (24, 40)
    state.state["indices"] = state.state["indices"].copy()
    state.state["indices"][0] = 10_000  # out of range: toarray() would crash the process
    with pytest.raises(ValueError, match="damaged"):
        state.to_scipy("J_regressor")


def test_state_of_allowed_functions_cannot_be_changed():
    """BUILD (set an object's state) only applies to arrays, dtypes and stand-ins: a pickle cannot rewrite an
    allowed function's defaults or attributes, which would change it for the whole process."""
    from fitlib.io import safe_load

    before = safe_load._dtype.__defaults__
    data = b"\x80\x02cnumpy\ndtype\nN}X\x0c\x00\x00\x00__defaults__)s\x86b."
    with pytest.raises(ValueError, match="setting the state of a function is not allowed"):
        load_pickle(data, "x.pkl")
    assert safe_load._dtype.__defaults__ == before


@pytest.mark.parametrize("content", [b"", b"\x80\x02", b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f", b"garbage",
                                     b"\x80\x02]q\x00(K\x01K\x02e", b"(" * 100_000 + b"."])
def test_damaged_pickles_are_clear_errors(content):
    with pytest.raises(ValueError, match="x.pkl is not a readable pickle"):
        load_pickle(content, "x.pkl")


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_npz_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"
    evil = np.array([_Payload(marker)], dtype=object)
    data = _npz(a=np.arange(3.0), evil=evil)
    with pytest.raises(ValueError, match="'evil'.*Python objects"):
        load_npz(data, "m.npz", max_bytes=1 << 20)
    assert not marker.exists()
    assert np.array_equal(load_npz(_npz(a=np.arange(3.0), s=np.array(["x", "yz"])), "m.npz", max_bytes=1 << 20)["a"],
                          np.arange(3.0))


def test_npz_sizes_are_checked_before_reading():
    data = _npz(a=np.zeros(10_000))  # 80 kB of zeros: a few hundred bytes compressed
    with pytest.raises(ValueError, match="unpack to"):
        load_npz(data, "m.npz", max_bytes=50_000)
    raw = bytearray(data)
    at = raw.index(b"'shape': (10000,)")
    raw[at:at + 17] = b"'shape': (99999,)"  # the header now claims more data than the entry holds
    with pytest.raises(ValueError, match="does not match its stored size"):
        load_npz(bytes(raw), "m.npz", max_bytes=1 << 20)
    damaged = bytearray(data)
    damaged[-200] ^= 0xFF  # inside the entry's data or the directory
    with pytest.raises(ValueError, match="m.npz"):
        load_npz(bytes(damaged), "m.npz", max_bytes=1 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "not an array")
    with pytest.raises(ValueError, match="not a .npy array"):
        load_npz(buf.getvalue(), "m.npz", max_bytes=1 << 20)


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "a.jpg"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_try(read_regular_file, fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert "FIFO" in outcome[0] and "not a regular file" in outcome[0]
    assert "character device" in _try(read_regular_file, "/dev/zero")
    assert "folder" in _try(read_regular_file, tmp_path)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        read_regular_file(tmp_path / "missing", max_bytes=10, what="model file")
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 2000)
    assert "MiB fitlib accepts" in _try(read_regular_file, big, 1000)
    assert read_regular_file(big, max_bytes=2000) == b"x" * 2000


def _try(fn, path, max_bytes=1 << 20) -> str:
    try:
        fn(path, max_bytes=max_bytes)
    except ValueError as exc:
        return str(exc)
    return "read"
