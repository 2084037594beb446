"""The SQLite label store: round trips, refusing what is not a store, transactions, concurrent writers."""
import multiprocessing as mp
import sqlite3

import numpy as np
import pytest

from fitlib.labels.store import Label, LabelStore, label_key

MODEL = {"model": "open", "build_key": "k1", "sha256": None}


def _label(i: int, score: float = 1.0) -> Label:
    rng = np.random.default_rng(i)
    return Label("ds", f"img_{i:04d}.jpg", "0", "coco17", rng.random((17, 3)), np.eye(3) * 1000, (720, 1280),
                 rng.normal(size=72), rng.normal(size=10), rng.normal(size=3), score, True, True, "", round=2)


def test_round_trip(tmp_path):
    with LabelStore(tmp_path / "s.sqlite", MODEL) as st:
        with st.transaction():
            for i in range(3):
                st.put(_label(i))
            st.mark_done("job", "ds", "img_0000.jpg", 1, {"new": 1}, round=2)
    with LabelStore(tmp_path / "s.sqlite") as st:  # reopened without a model: whatever it holds
        got = st.get([label_key("ds", "img_0001.jpg", "0"), "absent"])
        assert list(got) == ["ds|img_0001.jpg|0"]
        a, b = got["ds|img_0001.jpg|0"], _label(1)
        for f in ("keypoints", "K", "pose", "betas", "transl"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert a.image_size == (720, 1280) and a.round == 2 and len(st) == 3
        assert st.done_items("job") == {("ds", "img_0000.jpg")} and st.done_items("other") == set()
        assert st.rounds() == [{"round": 2, "items": 1, "new": 1}]


def test_a_failed_transaction_writes_nothing(tmp_path):
    st = LabelStore(tmp_path / "s.sqlite", MODEL)
    with pytest.raises(RuntimeError):
        with st.transaction():
            st.put(_label(0))
            raise RuntimeError("killed midway")
    assert len(st) == 0
    with pytest.raises(ValueError, match="pose must hold 72"):
        with st.transaction():
            bad = _label(1)
            bad.pose = np.zeros(69)
            st.put(bad)
    assert len(st) == 0


def test_refuses_files_that_are_not_stores(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 10)
    before = junk.read_bytes()
    with pytest.raises(ValueError, match="not a fitlib label store"):
        LabelStore(junk, MODEL)
    assert junk.read_bytes() == before
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="not a fitlib label store"):
        LabelStore(other, MODEL)
    with pytest.raises(FileNotFoundError):
        LabelStore(tmp_path / "missing.sqlite")


def test_refuses_another_body_model(tmp_path):
    LabelStore(tmp_path / "s.sqlite", MODEL).close()
    with pytest.raises(ValueError, match="belong to body model"):
        LabelStore(tmp_path / "s.sqlite", {"model": "SMPL_NEUTRAL", "file": "x.pkl", "sha256": "ab"})
    with pytest.raises(ValueError, match="belong to body model"):
        LabelStore(tmp_path / "s.sqlite", {**MODEL, "build_key": "another recipe"})


def test_damaged_rows_are_reported(tmp_path):
    with LabelStore(tmp_path / "s.sqlite", MODEL) as st:
        with st.transaction():
            st.put(_label(0))
    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("UPDATE labels SET pose = ?", (b"\x00" * 10,))
    db.commit()
    db.close()
    with LabelStore(tmp_path / "s.sqlite") as st, pytest.raises(ValueError, match="damaged pose"):
        list(st.labels())


def _writer(path: str, start: int, n: int) -> None:
    with LabelStore(path, MODEL) as st:
        for k in range(0, n, 10):
            with st.transaction():
                for i in range(start + k, start + k + 10):
                    st.put(_label(i))
                    st.mark_done("job", "ds", f"img_{i:04d}.jpg", 1, {"new": 1})


def test_two_processes_write_one_store(tmp_path):
    path = str(tmp_path / "s.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s, 200)) for s in (0, 1000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with LabelStore(path) as st:
        assert len(st) == 400 and len(st.done_items("job")) == 400
        labs = st.get([label_key("ds", "img_1199.jpg", "0")])
        np.testing.assert_array_equal(labs["ds|img_1199.jpg|0"].pose, _label(1199).pose)
