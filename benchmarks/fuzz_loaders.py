"""Fuzz fitlib's loaders of untrusted files: the model-file reader, the checksummed open-model cache and
``FitResult.load``.

Small valid files are mutated (bit flips, truncations, byte insertions, bytes overwritten with boundary
values) and each mutant is loaded in a forked child process with a time limit and an address-space limit
(``RLIMIT_AS``: the parent's size plus ``--memory`` GB). The only outcomes allowed are

* ``clear error``: ``ValueError`` / ``FileNotFoundError`` whose message names the file;
* ``loaded + verified``: the loader returned and its checks passed (split into ``same content``, e.g. a
  change in a zip timestamp, and ``changed values``, a number changed into another valid number).

Anything else (another exception, a crash, a timeout, the memory limit) is listed and makes the script
exit with status 1.

Seeds: a 40-vertex synthetic model in SMPL's layout as a plain protocol-4 pickle with fitlib's nested
entries (like the open-model cache), as an official-style protocol-2 pickle with chumpy objects and a
sparse regressor, and as an ``.npz``; the same plain pickle behind the open-model cache's checksum; a
two-person result (one not fitted) as JSON and as ``.npz``.

Usage:  python benchmarks/fuzz_loaders.py [--cases 1500] [--result-cases 1000] [--seed 0]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402

from fitlib.body.model_file import read_model_file  # noqa: E402
from fitlib.body.open_model import cache_problem, save_model_file  # noqa: E402
from fitlib.body.skeleton import SMPL_PARENTS  # noqa: E402
from fitlib.result import FitResult  # noqa: E402

ALLOWED = ("clear error", "loaded + verified, same content", "loaded + verified, changed values")


# ------------------------------------------------------------------------------------------------ seeds
def synthetic_model(vertices: int = 40, seed: int = 0) -> dict:
    """A random model dict in SMPL's layout (valid for every check of read_model_file; not a body)."""
    rng = np.random.default_rng(seed)
    weights, regressor = rng.random((vertices, 24)), rng.random((24, vertices))
    ids = rng.integers(0, vertices, size=(3, 4))
    kw = rng.random((3, 4))
    return {
        "v_template": rng.normal(size=(vertices, 3)) * 0.3,
        "shapedirs": rng.normal(size=(vertices, 3, 10)) * 0.01,
        "posedirs": (rng.normal(size=(vertices, 3, 207)) * 0.001).astype(np.float32),
        "J_regressor": regressor / regressor.sum(1, keepdims=True),
        "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": np.array([[4294967295] + list(SMPL_PARENTS[1:]), list(range(24))], dtype=np.int64),
        "f": rng.integers(0, vertices, size=(2 * vertices, 3)),
        "keypoint_regressor": {"names": ["nose", "left_eye", "right_eye"], "vertex_ids": ids,
                               "weights": kw / kw.sum(1, keepdims=True)},
        "fitlib_meta": {"source": "fuzz", "build_version": 1, "config": {"seed": 0}, "shape_std": np.ones(10)},
    }


def chumpy_pickle(data: dict) -> bytes:
    """An official-SMPL-style pickle: protocol 2, chumpy objects (fake module), sparse joint regressor."""
    chumpy, ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.__dict__ = {"x": np.asarray(x), "_dirty_vars": set(), "_itr": None}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch, chumpy.ch = Ch, ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
    try:
        out = {k: Ch(data[k]) for k in ("v_template", "shapedirs", "posedirs", "weights")}
        out.update(J_regressor=scipy.sparse.csc_matrix(data["J_regressor"]), kintree_table=data["kintree_table"],
                   f=data["f"].astype(np.uint32), bs_style="lbs", bs_type="lrotmin")
        return pickle.dumps(out, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def model_npz(data: dict) -> bytes:
    flat = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
    flat.update({f"keypoint_regressor/{k}": np.asarray(v) for k, v in data["keypoint_regressor"].items()})
    buf = io.BytesIO()
    np.savez(buf, **flat)
    return buf.getvalue()


def synthetic_result() -> FitResult:
    rng = np.random.default_rng(1)
    P, J = 2, 17
    return FitResult(rng.normal(size=(P, 72)) * 0.2, rng.normal(size=(P, 10)), np.array([[0.1, 0.2, 3.0]] * P),
                     np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), (480, 640), "coco17",
                     rng.random((P, J, 3)) * 400, rng.random((P, J, 2)) * 400, rng.normal(size=(P, 24, 3)),
                     np.array([1.5, 2.0]), np.array([0.3, 0.4]), np.array([True, False]), np.array([True, False]),
                     provenance={"config_hash": "0" * 64, "body_model": {"model": "open"}})


# ---------------------------------------------------------------------------------------------- mutation
def mutate(raw: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    kind = ("bit flips", "truncation", "insertion", "boundary bytes")[int(rng.integers(4))]
    data = bytearray(raw)
    if kind == "bit flips":
        for _ in range(int(rng.integers(1, 9))):
            at = int(rng.integers(len(data)))
            data[at] ^= 1 << int(rng.integers(8))
    elif kind == "truncation":
        data = data[: int(rng.integers(len(data)))]
    elif kind == "insertion":
        at = int(rng.integers(len(data) + 1))
        data[at:at] = rng.integers(0, 256, size=int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
    else:
        for _ in range(int(rng.integers(1, 5))):
            at = int(rng.integers(len(data)))
            data[at] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF]))
    return kind, bytes(data)


# ------------------------------------------------------------------------------------------------ checks
def same_model(a: dict, b: dict) -> bool:
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"):
        if not np.array_equal(np.asarray(a[key]), np.asarray(b[key])):
            return False
    return True


def same_result(a: FitResult, b: FitResult) -> bool:
    names = ("pose", "betas", "transl", "K", "keypoints", "projected", "joints", "reprojection_error", "loss")
    return all(np.array_equal(getattr(a, n), getattr(b, n), equal_nan=True) for n in names) and \
        a.fitted.tolist() == b.fitted.tolist() and a.converged.tolist() == b.converged.tolist() and \
        a.image_size == b.image_size and a.layout == b.layout and a.model == b.model


def run_case(loader: str, path: Path, reference) -> str:
    """Load ``path`` with ``loader``; returns the outcome (in the child process)."""
    try:
        if loader == "model":
            same = same_model(read_model_file(path), reference)
        elif loader == "cache":
            problem = cache_problem(path)
            if problem is not None:
                raise ValueError(f"{path} {problem}")
            same = same_model(read_model_file(path), reference)
        else:
            same = same_result(FitResult.load(path), reference)
    except (ValueError, FileNotFoundError) as exc:
        return "clear error" if str(path) in str(exc) else f"error without the file name: {exc}"[:200]
    except BaseException as exc:  # noqa: BLE001 - what the fuzz looks for
        return f"{type(exc).__name__}: {exc}"[:200]
    return "loaded + verified, " + ("same content" if same else "changed values")


def in_child(loader: str, path: Path, reference, timeout: int, extra_bytes: int) -> tuple[str, float, float]:
    """Run one case in a forked child: (outcome, seconds, growth of its peak RSS over the parent's, MB)."""
    parent_mb = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, size + extra_bytes))
            signal.alarm(timeout)
            outcome = run_case(loader, path, reference)
            os.write(write_fd, outcome.encode())
        except BaseException:  # noqa: BLE001
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    with os.fdopen(read_fd, "rb") as fh:
        message = fh.read().decode(errors="replace")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        message = "timeout" if sig == signal.SIGALRM else f"killed by signal {signal.Signals(sig).name}"
    elif not message:
        message = f"child failed (exit {os.WEXITSTATUS(status)})"
    return message, seconds, max(0.0, usage.ru_maxrss / 1024 - parent_mb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=1500, help="model-file cases (split over the 3 model seeds)")
    ap.add_argument("--cache-cases", type=int, default=300, help="open-model cache cases")
    ap.add_argument("--result-cases", type=int, default=1000, help="FitResult.load cases (JSON and npz)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=30, help="seconds per case")
    ap.add_argument("--memory", type=float, default=2.0, help="GB of address space a case may add")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    model = synthetic_model()
    plain = {k: v for k, v in model.items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        result = synthetic_result()
        result_json = result.save(tmp / "seed.json").read_bytes()
        result_npz = result.save(tmp / "seed.npz").read_bytes()
        reference_result = FitResult.load(tmp / "seed.json")
        cache_file = tmp / "open_smpl_fuzz.pkl"
        save_model_file(plain, cache_file)
        seeds = [
            ("read_model_file", "plain pickle (protocol 4, nested dicts)", "model", pickle.dumps(plain, protocol=4),
             ".pkl", model, args.cases // 3),
            ("read_model_file", "SMPL-style pickle (protocol 2, chumpy, sparse)", "model", chumpy_pickle(model), ".pkl",
             model, args.cases // 3),
            ("read_model_file", ".npz", "model", model_npz(model), ".npz", model, args.cases - 2 * (args.cases // 3)),
            ("open-model cache", "plain pickle + .sha256 record", "cache", cache_file.read_bytes(), ".pkl", model,
             args.cache_cases),
            ("FitResult.load", "JSON (schema 2)", "result", result_json, ".json", reference_result,
             args.result_cases // 2),
            ("FitResult.load", ".npz (schema 2)", "result", result_npz, ".npz", reference_result,
             args.result_cases - args.result_cases // 2),
        ]
        for label, _, loader, raw, suffix, reference, _ in seeds:  # the seeds themselves load
            path = tmp / f"seed_check{suffix}"
            if loader == "cache":
                path = cache_file
            else:
                path.write_bytes(raw)
            outcome = run_case(loader, path, reference)
            assert outcome == "loaded + verified, same content", (label, outcome)
        rows, failures = [], []
        for label, seed_name, loader, raw, suffix, reference, n in seeds:
            counts = {k: 0 for k in ALLOWED}
            kinds: dict[str, int] = {}
            worst_s = worst_mb = 0.0
            for i in range(n):
                kind, data = mutate(raw, rng)
                kinds[kind] = kinds.get(kind, 0) + 1
                if loader == "cache":
                    path = cache_file
                    save_model_file(plain, path)  # a fresh file and its record
                    path.write_bytes(data)  # then the damage
                else:
                    path = tmp / f"case{suffix}"
                    path.write_bytes(data)
                outcome, seconds, mb = in_child(loader, path, reference, args.timeout, int(args.memory * 2**30))
                worst_s, worst_mb = max(worst_s, seconds), max(worst_mb, mb)
                if outcome in counts:
                    counts[outcome] += 1
                else:
                    failures.append((label, seed_name, kind, i, outcome))
            rows.append((label, seed_name, n, counts, n - sum(counts.values()), worst_s, worst_mb))
    print("| loader | seed file | cases | clear error | loaded + verified, same content | "
          "loaded + verified, changed values | other | slowest case | largest RSS growth |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, seed_name, n, counts, other, worst_s, worst_mb in rows:
        print(f"| {label} | {seed_name} | {n} | {counts['clear error']} | {counts[ALLOWED[1]]} | {counts[ALLOWED[2]]} | "
              f"{other} | {worst_s:.2f} s | {worst_mb:.1f} MB |")
    total = sum(r[2] for r in rows)
    print(f"\n{total} cases; mutations: bit flips, truncations, insertions of 1-16 random bytes, boundary bytes "
          f"(0x00, 0x01, 0x7f, 0x80, 0xff); limits per case: {args.timeout} s, +{args.memory:g} GB address space")
    for failure in failures:
        print("FAIL", *failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
