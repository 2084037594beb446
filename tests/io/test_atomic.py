"""The one atomic writer: readers never see a part of a file, concurrent writers never collide."""
import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from fitlib.io.atomic import atomic_write
from fitlib.result import FitResult


def _writer(path: str, tag: int, n: int, errors) -> None:
    try:
        for i in range(n):
            payload = json.dumps({"tag": tag, "i": i, "pad": "x" * (20000 + 7 * i)}).encode()
            with atomic_write(path) as fh:
                fh.write(payload)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        errors.put(repr(exc))


def test_two_processes_writing_one_path(tmp_path):
    """Two processes save 200 times each to the same file while this one reads it: every write succeeds,
    every read parses, and no temporary file is left behind."""
    path = tmp_path / "result.json"
    with atomic_write(path) as fh:
        fh.write(b'{"tag": -1}')
    ctx = mp.get_context("spawn")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(path), t, 200, errors)) for t in (0, 1)]
    for p in procs:
        p.start()
    reads = 0
    while any(p.is_alive() for p in procs):
        json.loads(path.read_bytes())  # a partial file would not parse
        reads += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert errors.empty(), errors.get()
    assert reads > 0 and json.loads(path.read_bytes())["tag"] in (0, 1)
    assert sorted(os.listdir(tmp_path)) == ["result.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.bin"
    with atomic_write(path) as fh:
        fh.write(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write(b"half of the new")
            raise RuntimeError("disk on fire")
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_fit_result_save_uses_it(tmp_path):
    """FitResult.save writes through atomic_write: no fixed ``x.json.tmp`` name for two savers to share."""
    r = FitResult(np.zeros((1, 72)), np.zeros((1, 10)), np.array([[0, 0, 3.0]]), np.eye(3), (4, 4), "coco17",
                  np.zeros((1, 17, 3)), np.zeros((1, 17, 2)), np.zeros((1, 24, 3)), np.zeros(1), np.zeros(1),
                  np.zeros(1, bool), np.ones(1, bool))
    (tmp_path / "x.json.tmp").mkdir()  # the old fixed temporary name, taken
    for suffix in (".json", ".npz"):
        r.save(tmp_path / f"x{suffix}")
        assert np.array_equal(FitResult.load(tmp_path / f"x{suffix}").transl, r.transl)
