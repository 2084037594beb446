"""Reading files that fitlib did not write itself, without letting them run code or exhaust memory.

Every reader of a user-supplied file goes through this module (see ``docs/SECURITY.md``):

* :func:`read_regular_file`: the bytes of a regular file (a FIFO, device or socket is refused
  without being opened for blocking reads), refused above a size limit before reading.
* :func:`load_pickle`: **the** allow-list unpickler. It builds numpy arrays, dtypes and scalars,
  ``set``/``frozenset``, and stand-ins for chumpy objects and scipy sparse matrices (the classes
  the official SMPL pickles and 3DPW's sequence files hold); any other class or function named by
  the pickle is refused with a ValueError naming it and the file, before it is touched. Sizes are
  checked before anything is allocated.
* :func:`load_npz`: ``.npz`` archives read without unpickling (entries that hold Python objects are
  refused), every entry's size checked against its header before it is read.

Errors are ``FileNotFoundError`` (missing file) or ``ValueError`` naming the file and the problem.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MAX_ELEMENTS = 1 << 27
"""Largest array (elements) a pickle may ask for before its data is seen (134 M, 1 GiB in float64);
also the largest dense matrix a pickled sparse matrix may expand to."""

_ALLOWED_CODECS = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")


# --------------------------------------------------------------------------------------------- files
def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def read_regular_file(path: str | os.PathLike, *, max_bytes: int, what: str = "file") -> bytes:
    """Return the bytes of the regular file ``path``.

    The file is opened non-blocking and checked with ``fstat`` before anything is read, so a FIFO
    named like an image never blocks the caller.

    Args:
        path: the file.
        max_bytes: refuse files larger than this (bytes), before reading them.
        what: how error messages call the file (e.g. ``"body model file"``).
    Raises:
        FileNotFoundError: no such file.
        ValueError: not a regular file (folder, FIFO, device, socket), larger than ``max_bytes``,
            or unreadable (permissions, I/O error), naming the file.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise ValueError(f"cannot open {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what} {path} is a {_kind(st.st_mode)}, not a regular file: fitlib reads only "
                             "regular files")
        if st.st_size > max_bytes:
            raise ValueError(f"{what} {path} is {st.st_size / 2**20:.1f} MiB, more than the "
                             f"{max_bytes / 2**20:.0f} MiB fitlib accepts for it")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # the file grew while being read
                raise ValueError(f"{what} {path} is larger than the {max_bytes / 2**20:.0f} MiB fitlib accepts for it")
        return b"".join(chunks)
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike, max_bytes: int = 1 << 34) -> str:
    """Hex SHA-256 of a regular file's content (read in 16 MiB blocks; ValueError for non-regular files)."""
    path = Path(path)
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is a {_kind(st.st_mode)}, not a regular file")
    if st.st_size > max_bytes:
        raise ValueError(f"{path} is too large to hash ({st.st_size} bytes)")
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ stand-ins
class PickledStandIn:
    """Base of the stand-ins the unpickler builds instead of foreign classes: it only keeps the
    pickled state (``self.state``, a dict); nothing of the foreign class runs."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (dict, slots)
            state = {**state[0], **(state[1] or {})} if isinstance(state[1], (dict, type(None))) else state[0]
        self.state = state if isinstance(state, dict) else {"state": state}


class ChumpyStandIn(PickledStandIn):
    """Takes the place of any chumpy class (chumpy does not install on current Python/numpy)."""

    def to_array(self, key: str) -> np.ndarray:
        """The chumpy object's stored value (``x``) as a numpy array; ValueError for an expression without one."""
        value = self.state.get("x")
        if value is None:
            raise ValueError(f"model entry {key!r} is a chumpy expression without a stored value "
                             "(only plain chumpy arrays can be read without chumpy)")
        if not isinstance(value, (np.ndarray, int, float, list)):
            raise ValueError(f"model entry {key!r}: chumpy value is a {type(value).__name__}, not an array")
        return np.asarray(value)


class SparseStandIn(PickledStandIn):
    """Takes the place of a pickled scipy sparse matrix; :meth:`to_scipy` checks it and builds the real one."""

    format = ""

    def to_scipy(self, key: str):
        """A checked ``scipy.sparse`` matrix from the pickled state (ValueError naming ``key`` otherwise)."""
        import scipy.sparse

        st = self.state
        shape = st.get("_shape", st.get("shape"))
        if not (isinstance(shape, tuple) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise ValueError(f"sparse entry {key!r} has no valid 2-D shape (got {shape!r})")
        if shape[0] * shape[1] > MAX_ELEMENTS:
            raise ValueError(f"sparse entry {key!r} claims shape {shape}: more than {MAX_ELEMENTS} elements")
        parts = {}
        for name in ("data", "indices", "indptr"):
            value = st.get(name)
            if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.hasobject:
                raise ValueError(f"sparse entry {key!r}: {name} is not a 1-D numeric array")
            parts[name] = value
        if not (np.issubdtype(parts["indices"].dtype, np.integer) and np.issubdtype(parts["indptr"].dtype, np.integer)):
            raise ValueError(f"sparse entry {key!r}: indices are not integers")
        cls = {"csc": scipy.sparse.csc_matrix, "csr": scipy.sparse.csr_matrix}[self.format]
        try:
            matrix = cls((parts["data"], parts["indices"], parts["indptr"]), shape=shape)
            matrix.check_format(full_check=True)  # out-of-range indices would crash the process in toarray()
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise ValueError(f"sparse entry {key!r} is damaged: {exc}") from None
        return matrix


class _CSCStandIn(SparseStandIn):
    format = "csc"


class _CSRStandIn(SparseStandIn):
    format = "csr"


# ---------------------------------------------------------------------------- allowed callables
class _Marker:
    """A name the pickle may mention only as an argument of an allowed callable (``numpy.ndarray``
    for ``_reconstruct``, ``object`` for ``copyreg._reconstructor``); it cannot be called."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<pickled reference to {self.name}>"


_NDARRAY, _OBJECT = _Marker("numpy.ndarray"), _Marker("object")
_real_reconstruct = np.zeros(0).__reduce__()[0]
_real_scalar = np.float64(0).__reduce__()[0]
_real_frombuffer = np.zeros(1).__reduce_ex__(5)[0]


def _shape_size(shape: Any, what: str) -> int:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                               for s in shape):
        raise pickle.UnpicklingError(f"{what}: invalid array shape {shape!r}")
    n = 1
    for s in shape:
        n *= s
    if n > MAX_ELEMENTS:
        raise pickle.UnpicklingError(f"{what}: an array of shape {shape} is larger than the {MAX_ELEMENTS} "
                                     "elements fitlib accepts")
    return n


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {subtype!r}: only plain numpy arrays are allowed")
    _shape_size(shape, "numpy _reconstruct")
    if not isinstance(dtype, (bytes, str)):
        raise pickle.UnpicklingError("numpy _reconstruct: the dtype code is not a string")
    return _real_reconstruct(np.ndarray, shape, dtype)


def _dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(obj, str):
        raise pickle.UnpicklingError(f"numpy dtype from {type(obj).__name__}: only dtype codes are allowed")
    return np.dtype(obj, bool(align), bool(copy))


def _scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype):
        raise pickle.UnpicklingError("numpy scalar without a dtype")
    if not dtype.hasobject and not isinstance(data, (bytes, str)):
        raise pickle.UnpicklingError("numpy scalar: its data is not a byte string")
    return _real_scalar(dtype, data) if data is not None else _real_scalar(dtype)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy _frombuffer: not a numeric dtype")
    n = _shape_size(shape, "numpy _frombuffer")
    if not isinstance(buf, (bytes, bytearray)) or len(buf) != n * dtype.itemsize:
        raise pickle.UnpicklingError("numpy _frombuffer: the data does not match the shape")
    if order not in ("C", "F"):
        raise pickle.UnpicklingError(f"numpy _frombuffer: unknown order {order!r}")
    return _real_frombuffer(buf, dtype, shape, order)


def _codecs_encode(obj: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Python 3 writes bytes into protocol 0-2 pickles as _codecs.encode(text, "latin1")
    if not isinstance(obj, str) or encoding not in _ALLOWED_CODECS or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}: only latin-1 byte strings are allowed")
    return obj.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> PickledStandIn:
    # copyreg._reconstructor(cls, object, None): protocol 0/1 pickles of new-style objects
    if not (isinstance(cls, type) and issubclass(cls, PickledStandIn)) or base is not _OBJECT or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor is allowed only for chumpy and scipy.sparse objects")
    return cls.__new__(cls)


_ALLOWED: dict[tuple[str, str], Any] = {}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _reconstruct
    _ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _frombuffer
_ALLOWED.update({
    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("copy_reg", "_reconstructor"): _reconstructor, ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): _OBJECT, ("builtins", "object"): _OBJECT,
    ("__builtin__", "set"): set, ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset, ("builtins", "frozenset"): frozenset,
})
_SPARSE = {"csc_matrix": _CSCStandIn, "csr_matrix": _CSRStandIn}

ALLOWED_GLOBALS: tuple[str, ...] = tuple(sorted(f"{m}.{n}" for m, n in _ALLOWED)) + (
    "chumpy.* (stand-in keeping the state)", "scipy.sparse.*.csc_matrix", "scipy.sparse.*.csr_matrix")
"""What a pickle may name, for documentation and error messages."""


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class _AllowListUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its memo is a dict (no huge arrays)
    """Resolves only the names in :data:`ALLOWED_GLOBALS`; BUILD only on arrays, dtypes and stand-ins."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStandIn
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) and name in _SPARSE:
            return _SPARSE[name]
        raise _RefusedGlobal(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, PickledStandIn):
            inst.__setstate__(state)
        elif type(inst) is np.ndarray or isinstance(inst, np.dtype):
            inst.__setstate__(state)
        else:
            raise pickle.UnpicklingError(f"setting the state of a {type(inst).__name__} is not allowed")

    dispatch[pickle.BUILD[0]] = _load_build


def load_pickle(data: bytes, source: str) -> Any:
    """Unpickle ``data`` (the content of the file ``source``) with the allow-list unpickler.

    Python 2 pickles are read with ``encoding="latin1"``. chumpy objects come back as
    :class:`ChumpyStandIn`, scipy sparse matrices as :class:`SparseStandIn` (call their
    ``to_array`` / ``to_scipy``); numpy arrays, dtypes and scalars, sets, and plain Python values as
    themselves.

    Raises:
        ValueError: ``"<source>: refused to unpickle <module.name> ..."`` for any class or function
            outside :data:`ALLOWED_GLOBALS` (nothing of it runs), or ``"<source> is not a readable
            pickle (...)"`` for damaged data (any error while reading, a size above the limits).
    """
    try:
        return _AllowListUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _RefusedGlobal as exc:
        raise ValueError(f"{source}: refused to unpickle {exc.qualname}: fitlib unpickles only numpy arrays, "
                         "scipy sparse matrices and chumpy arrays (see docs/SECURITY.md)") from None
    except MemoryError:
        raise ValueError(f"{source} is not a readable pickle (it asks for more memory than is available)") from None
    except Exception as exc:  # noqa: BLE001 - only allow-listed code ran: any error is damaged data
        raise ValueError(f"{source} is not a readable pickle ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------------------ npz
def load_npz(data: bytes, source: str, *, max_bytes: int, objects: bool = False) -> dict[str, Any]:
    """Read an ``.npz`` archive (its bytes) without unpickling anything (or, with ``objects``, only through the
    allow-list unpickler).

    Every entry's header is parsed first; an entry holding Python objects is refused, and one whose
    header disagrees with the size stored in the archive, or a total above ``max_bytes``, is
    refused before its data is read. The archive's CRC-32 checks are applied.

    Args:
        objects: accept single pickled objects (0-d object arrays, e.g. the dicts of mmhuman3d's HumanData),
            read by :func:`load_pickle` (numpy arrays and plain values only) and returned as the object.
    Returns:
        ``{name: array}`` (or the object), names without the ``.npy`` suffix.
    Raises:
        ValueError naming ``source`` and the entry.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise ValueError(f"{source} is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    out: dict[str, np.ndarray] = {}
    with archive:
        infos = archive.infolist()
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise ValueError(f"{source}: its entries unpack to {total / 2**20:.0f} MiB, more than the "
                             f"{max_bytes / 2**20:.0f} MiB fitlib accepts")
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"{source}: entry {name!r} is not a .npy array")
            key = name[:-4]
            try:
                with archive.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
                    if dtype.hasobject:
                        if not objects:
                            raise ValueError("it holds Python objects (pickled data), which fitlib never unpickles")
                        if shape != ():
                            raise ValueError(f"it is an array of Python objects of shape {shape}; only single "
                                             "objects are read")
                        value = load_pickle(fh.read(info.file_size + 1), f"{source}: entry {key!r}")
                        out[key] = value.item() if isinstance(value, np.ndarray) and value.shape == () else value
                        continue
                    count = 1
                    for s in shape:
                        count *= s
                    nbytes = count * dtype.itemsize
                    if count < 0 or fh.tell() + nbytes != info.file_size:
                        raise ValueError(f"its header ({shape}, {dtype}) does not match its stored size")
                    raw = fh.read(nbytes)
                    if len(raw) != nbytes or fh.read(1):
                        raise ValueError("its data is cut short")
                array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")
                out[key] = array.copy(order="K")
            except Exception as exc:  # noqa: BLE001 - zlib, CRC, header syntax...: all damaged data
                raise ValueError(f"{source}: entry {key!r} is not readable ({type(exc).__name__}: {exc})") from None
    return out
