"""The pseudo-label store: one SQLite file (standard library, WAL mode) holding, per person sample, the best
fit found so far and what it was scored against.

Tables:

* ``meta``: ``format`` (``fitlib-labels``), ``schema``, ``body_model`` (the identity of the body model every
  label belongs to, :func:`fitlib.body.model.model_identity`), ``created``.
* ``labels``: one row per person sample, keyed ``dataset|item|person`` (dataset: a name for the source;
  item: the image path relative to its source, ``video.mp4#000120`` or ``sequence/frame``; person: the
  person's index or annotation id). Parameters (``pose`` [72] axis-angle radians, ``betas`` [10], ``transl``
  [3] metres, camera frame), the ``K`` [3, 3] and ``image_size`` they were scored with, the ``keypoints``
  [J, 3] in ``layout``, the ``score`` (:mod:`fitlib.labels.score`), ``valid`` / ``has_smpl`` / ``reason``
  (:mod:`fitlib.labels.validity`), ``is_gt`` (ground truth: never replaced), ``replaced`` (how many times a
  better fit replaced it), ``round`` and ``provenance`` (JSON: fitlib version, config and regressor hashes,
  time). Arrays are little-endian float64 bytes; nothing is pickled.
* ``done``: which items a job (a fitting config + regressor, :func:`job_key`) has finished, with the counts of
  what happened to their people, so that a restarted job skips them: the store is the job's manifest.

Every update is one transaction (``BEGIN IMMEDIATE``): the labels of a batch of items and their ``done`` rows
commit together or not at all, so a job killed at any moment (kill -9 included) leaves the store as of its
last committed batch. Several processes may write one store: SQLite's locking serialises the transactions
(writers wait up to ``timeout`` seconds).
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

FORMAT = "fitlib-labels"
SCHEMA = 1

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY, dataset TEXT NOT NULL, item TEXT NOT NULL, person TEXT NOT NULL,
    layout TEXT NOT NULL, keypoints BLOB NOT NULL, K BLOB NOT NULL, image_h INTEGER NOT NULL,
    image_w INTEGER NOT NULL, pose BLOB NOT NULL, betas BLOB NOT NULL, transl BLOB NOT NULL,
    score REAL, valid INTEGER NOT NULL, has_smpl INTEGER NOT NULL, reason TEXT NOT NULL,
    is_gt INTEGER NOT NULL DEFAULT 0, replaced INTEGER NOT NULL DEFAULT 0, round INTEGER NOT NULL DEFAULT 0,
    provenance TEXT NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS labels_item ON labels (dataset, item);
CREATE TABLE IF NOT EXISTS done (
    job TEXT NOT NULL, dataset TEXT NOT NULL, item TEXT NOT NULL, people INTEGER NOT NULL,
    counts TEXT NOT NULL, round INTEGER NOT NULL, time REAL NOT NULL, PRIMARY KEY (job, dataset, item));
"""


def label_key(dataset: str, item: str, person: str | int) -> str:
    """The stable key of one person sample: ``dataset|item|person``."""
    return f"{dataset}|{item}|{person}"


def job_key(config_hash: str, regressor_hash: str | None) -> str:
    """What makes two jobs the same job (their ``done`` rows are shared): the fitting config's hash and the
    regressor checkpoint's hash (None: a config without the regressor)."""
    return f"{config_hash}:{regressor_hash or '-'}"


@dataclass
class Label:
    """One person sample's stored fit (numpy; camera frame, OpenCV axes, metres, pixels, radians)."""

    dataset: str
    item: str
    person: str
    layout: str
    keypoints: np.ndarray  # [J, 3] (x px, y px, confidence) the fit was scored against
    K: np.ndarray  # [3, 3] pixels
    image_size: tuple[int, int]  # (height, width) px
    pose: np.ndarray  # [72] axis-angle, radians
    betas: np.ndarray  # [10]
    transl: np.ndarray  # [3] metres
    score: float  # canonical px (NaN: no confident keypoint)
    valid: bool
    has_smpl: bool
    reason: str = ""
    is_gt: bool = False
    replaced: int = 0
    round: int = 0
    provenance: dict = field(default_factory=dict)
    updated: float = 0.0

    @property
    def key(self) -> str:
        return label_key(self.dataset, self.item, self.person)


def _blob(a: np.ndarray, n: int, name: str) -> bytes:
    a = np.ascontiguousarray(a, dtype="<f8").reshape(-1)
    if a.size != n:
        raise ValueError(f"label {name} must hold {n} numbers, got {a.size}")
    return a.tobytes()


def _array(b: bytes, shape: tuple[int, ...], name: str, key: str) -> np.ndarray:
    n = int(np.prod(shape))
    if not isinstance(b, bytes) or len(b) != 8 * n:
        raise ValueError(f"label store: row {key!r} has a damaged {name} ({len(b) if isinstance(b, bytes) else type(b).__name__} "
                         f"bytes for {n} numbers)")
    return np.frombuffer(b, dtype="<f8").reshape(shape).astype(np.float64)


def _same_model(a: dict, b: dict) -> bool:
    if a.get("model") != b.get("model"):
        return False
    if a.get("model") == "open":
        return a.get("build_key") == b.get("build_key")
    return a.get("sha256") == b.get("sha256")


class LabelStore:
    """A pseudo-label store file (see the module doc).

    Args:
        path: the SQLite file; created (with its folder) when missing and ``body_model`` is given.
        body_model: the identity of the body model the labels belong to
            (:func:`fitlib.body.model.model_identity`); a store made for another model is refused. None: open
            an existing store whatever its model (reading, exporting).
        timeout: seconds a writer waits for another process's transaction.
    Raises:
        ValueError: the file is not a fitlib label store (nothing is written to it), or belongs to another
            body model. FileNotFoundError: no such store and no ``body_model`` to create it with.
    """

    def __init__(self, path: str | Path, body_model: dict | None = None, timeout: float = 120.0) -> None:
        self.path = Path(path)
        exists = self.path.exists()
        if exists and not self.path.is_file():
            raise ValueError(f"{self.path}: not a label store (not a regular file)")
        if not exists and body_model is None:
            raise FileNotFoundError(f"label store not found: {self.path}")
        if exists:
            with open(self.path, "rb") as fh:
                head = fh.read(16)
            if head and head != b"SQLite format 3\x00":
                raise ValueError(f"{self.path}: not a fitlib label store (not an SQLite file); nothing was written to it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            self._open(exists and self.path.stat().st_size > 0, body_model)
        except Exception:
            self._db.close()
            raise

    def _open(self, existing: bool, body_model: dict | None) -> None:
        db = self._db
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{self.path}: not a fitlib label store ({exc}); nothing was written to it") from None
        if existing and tables and "meta" not in tables:
            raise ValueError(f"{self.path}: an SQLite file that is not a fitlib label store (tables "
                             f"{sorted(tables)}); nothing was written to it")
        if existing and tables:
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{self.path}: not a fitlib label store (format {meta.get('format')!r})")
            if int(meta.get("schema", -1)) != SCHEMA:
                raise ValueError(f"{self.path}: label store schema {meta.get('schema')} is not {SCHEMA} (made by "
                                 "another fitlib version)")
            self.body_model = json.loads(meta["body_model"])
            if body_model is not None and not _same_model(self.body_model, body_model):
                raise ValueError(f"{self.path}: the labels belong to body model {self.body_model} and cannot be "
                                 f"compared with fits of {body_model}; use another store")
            db.execute("PRAGMA journal_mode=WAL")
            return
        if body_model is None:
            raise ValueError(f"{self.path}: an empty file, not a label store")
        db.execute("PRAGMA journal_mode=WAL")
        with self.transaction():
            for stmt in _SCHEMA_SQL.strip().split(";"):
                if stmt.strip():
                    db.execute(stmt)
            for k, v in (("format", FORMAT), ("schema", str(SCHEMA)), ("body_model", json.dumps(body_model, sort_keys=True)),
                         ("created", str(time.time()))):
                db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (k, v))
        self.body_model = json.loads(dict(db.execute("SELECT key, value FROM meta"))["body_model"])
        if not _same_model(self.body_model, body_model):  # another process created it first, for another model
            raise ValueError(f"{self.path}: the labels belong to body model {self.body_model}, not {body_model}")

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "LabelStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator["LabelStore"]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once, so a read-decide-write
        inside it cannot interleave with another process's). Commits on success, rolls back on any exception."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---------------------------------------------------------------- reading
    _COLUMNS = ("dataset", "item", "person", "layout", "keypoints", "K", "image_h", "image_w", "pose", "betas",
                "transl", "score", "valid", "has_smpl", "reason", "is_gt", "replaced", "round", "provenance", "updated")

    def _row(self, r: tuple) -> Label:
        d = dict(zip(self._COLUMNS, r))
        key = label_key(d["dataset"], d["item"], d["person"])
        kp = d["keypoints"]
        if not isinstance(kp, bytes) or len(kp) % 24:
            raise ValueError(f"label store: row {key!r} has damaged keypoints")
        return Label(d["dataset"], d["item"], d["person"], d["layout"], _array(kp, (len(kp) // 24, 3), "keypoints", key),
                     _array(d["K"], (3, 3), "K", key), (int(d["image_h"]), int(d["image_w"])),
                     _array(d["pose"], (72,), "pose", key), _array(d["betas"], (10,), "betas", key),
                     _array(d["transl"], (3,), "transl", key), float("nan") if d["score"] is None else float(d["score"]),
                     bool(d["valid"]), bool(d["has_smpl"]), d["reason"], bool(d["is_gt"]), int(d["replaced"]),
                     int(d["round"]), json.loads(d["provenance"]), float(d["updated"]))

    def get(self, keys: list[str]) -> dict[str, Label]:
        """The stored labels of these keys (missing keys are absent from the result)."""
        out: dict[str, Label] = {}
        cols = ", ".join(self._COLUMNS)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._db.execute(f"SELECT {cols} FROM labels WHERE key IN ({marks})", chunk):
                lab = self._row(r)
                out[lab.key] = lab
        return out

    def labels(self, valid_only: bool = False, dataset: str | None = None) -> Iterator[Label]:
        """Every stored label (ordered by key), optionally only the valid ones or one dataset's."""
        cols = ", ".join(self._COLUMNS)
        where, args = [], []
        if valid_only:
            where.append("valid = 1")
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        sql = f"SELECT {cols} FROM labels" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY key"
        for r in self._db.execute(sql, args):
            yield self._row(r)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def done_items(self, job: str) -> set[tuple[str, str]]:
        """(dataset, item) pairs that job ``job`` (:func:`job_key`) has finished."""
        return {(d, i) for d, i in self._db.execute("SELECT dataset, item FROM done WHERE job = ?", (job,))}

    def jobs(self) -> set[str]:
        """The job keys (:func:`job_key`) that have finished items in this store."""
        return {j for (j,) in self._db.execute("SELECT DISTINCT job FROM done")}

    def rounds(self) -> list[dict]:
        """Per round: items done and the summed counts of their people (``new``, ``replaced``, ``kept``,
        ``invalid``)."""
        out: dict[int, dict] = {}
        for rnd, counts in self._db.execute("SELECT round, counts FROM done ORDER BY round"):
            row = out.setdefault(int(rnd), {"round": int(rnd), "items": 0})
            row["items"] += 1
            for k, v in json.loads(counts).items():
                row[k] = row.get(k, 0) + int(v)
        return list(out.values())

    # ---------------------------------------------------------------- writing
    def put(self, label: Label) -> None:
        """Insert or overwrite one label (call inside :meth:`transaction`; the decision is the caller's)."""
        J = int(np.asarray(label.keypoints).size // 3)
        self._db.execute(
            "INSERT OR REPLACE INTO labels (key, " + ", ".join(self._COLUMNS) + ") VALUES (" + ",".join("?" * 21) + ")",
            (label.key, label.dataset, label.item, str(label.person), label.layout, _blob(label.keypoints, 3 * J, "keypoints"),
             _blob(label.K, 9, "K"), int(label.image_size[0]), int(label.image_size[1]), _blob(label.pose, 72, "pose"),
             _blob(label.betas, 10, "betas"), _blob(label.transl, 3, "transl"),
             None if not np.isfinite(label.score) else float(label.score), int(label.valid), int(label.has_smpl),
             label.reason, int(label.is_gt), int(label.replaced), int(label.round),
             json.dumps(label.provenance, sort_keys=True), float(label.updated or time.time())))

    def mark_done(self, job: str, dataset: str, item: str, people: int, counts: dict, round: int = 0) -> None:
        """Record that ``job`` finished an item (call inside :meth:`transaction`, with its labels)."""
        self._db.execute("INSERT OR REPLACE INTO done VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (job, dataset, item, int(people), json.dumps(counts, sort_keys=True), int(round), time.time()))
