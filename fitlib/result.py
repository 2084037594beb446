"""FitResult: what :func:`fitlib.fit` returns; saves to / loads from ``.json`` and ``.npz`` in a documented,
versioned schema (``docs/RESULT_SCHEMA.md``), exports meshes, draws overlays."""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.io.atomic import atomic_write
from fitlib.io.safe_load import load_npz, read_regular_file
from fitlib.params import SMPLParams

SCHEMA_NAME = "fitlib.FitResult"
SCHEMA_VERSION = 3
"""Version of the file schema :meth:`FitResult.save` writes. 1: the unversioned files of fitlib before
provenance (bare ``NaN``, unfitted people with their starting values); 2: with provenance and outputs; 3: this
one, with the person boxes and detection scores. All load (older files with unknown boxes and scores)."""

MAX_RESULT_BYTES = 256 * 2**20
"""Largest result file :meth:`FitResult.load` reads (bytes)."""

_PER_PERSON = ("pose", "betas", "transl", "keypoints", "projected", "joints", "reprojection_error", "loss")
_UNFITTED_NAN = ("pose", "betas", "transl", "projected", "joints", "reprojection_error", "loss")
"""Entries that describe a fit: NaN in memory and null in JSON for people who were not fitted."""
_V1_KEYS = ("pose", "betas", "transl", "K", "image_size", "layout", "keypoints", "projected", "joints",
            "reprojection_error", "loss", "converged", "fitted", "model")
_V2_KEYS = ("schema", "schema_version", "people") + _V1_KEYS + ("provenance", "outputs")
_V3_KEYS = _V2_KEYS + ("boxes", "scores")


def _keys(version: int) -> tuple[str, ...]:
    return _V3_KEYS if version >= 3 else _V2_KEYS if version == 2 else _V1_KEYS


@functools.lru_cache(maxsize=1)
def fitlib_version() -> str:
    """The installed fitlib's version string (``"unknown"`` when not installed as a distribution)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("fitlib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def config_hash(config: Any = None) -> str:
    """SHA-256 (hex) of a fitting config as :func:`fitlib.load_config` resolves it (a name, YAML path,
    dict or :class:`~fitlib.FitConfig`): equal hashes mean the same stages, weights and thresholds."""
    from fitlib.fitting import load_config

    return hashlib.sha256(load_config(config).model_dump_json().encode()).hexdigest()


def _shape_text(shape: tuple) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _float_array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a new float64 array of ``shape`` (a size-0 value takes any shape of size 0)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from None
    if arr.size == 0 and math.prod(shape) == 0:
        return arr.reshape(shape)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {_shape_text(arr.shape)}")
    return arr


def _bool_vector(name: str, value: Any, n: int | None = None) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.reshape(0).astype(bool)
    if arr.dtype != bool or arr.ndim != 1:
        raise ValueError(f"{name} must be a vector of booleans (true/false), got {arr.dtype} of shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} entries for {n} people")
    return arr.copy()


@dataclass
class FitResult:
    """SMPL fits of the P people in one image (numpy arrays; camera frame: OpenCV, x right, y down, z forward,
    metres). The file schema is ``docs/RESULT_SCHEMA.md``.

    Attributes:
        pose: [P, 72] axis-angle (radians); the first 3 are the orientation in the camera frame.
        betas: [P, 10] shape coefficients.
        transl: [P, 3] translation (metres).
        K: [3, 3] intrinsics (pixels).
        image_size: (height, width) in pixels.
        layout: keypoint layout name of ``keypoints``/``projected``.
        keypoints: [P, J, 3] input keypoints (x px, y px, confidence).
        projected: [P, J, 2] the fitted model's keypoints projected (pixels; NaN where the model has no such point).
        joints: [P, 24, 3] SMPL joints in the camera frame (metres).
        reprojection_error: [P] mean pixel distance over the keypoints used.
        loss: [P] final fitting loss.
        converged: [P] bool.
        fitted: [P] bool; False where a person could not be fitted (e.g. too few usable keypoints): that
            person's pose, betas, transl, projected, joints, reprojection_error and loss are NaN (null in
            JSON), never starting values.
        model: body model the parameters belong to (``"open"`` or the model file's path as given).
        provenance: what made the fit: ``fitlib_version``, ``config_hash`` (:func:`config_hash`) and
            ``body_model`` (:func:`fitlib.body.model.model_identity`); None where unknown.
        outputs: files written with this result by ``fitlib fit`` (mesh format and names, overlay), relative
            to the result's folder; ``{}`` otherwise.
        boxes: [P, 4] person boxes x1, y1, x2, y2 (pixels) as the detector or the keypoint input gave them; NaN
            rows where unknown (keypoints given as a plain array, files of schema 1 and 2).
        scores: [P] person (detection) scores in [0, 1]; NaN where unknown.
        model_from_file: True for a result read by :meth:`load`: its ``model`` is then only a record, and
            meshes and overlays need the body model passed explicitly unless it is ``"open"`` (a result
            file cannot make fitlib open a model file).

    Construction checks every shape and type (ValueError naming the entry) and copies the arrays.
    """

    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    K: np.ndarray
    image_size: tuple[int, int]
    layout: str
    keypoints: np.ndarray
    projected: np.ndarray
    joints: np.ndarray
    reprojection_error: np.ndarray
    loss: np.ndarray
    converged: np.ndarray
    fitted: np.ndarray
    model: str = "open"
    provenance: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    boxes: Any = None
    scores: Any = None
    model_from_file: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.fitted = _bool_vector("fitted", self.fitted)
        P = len(self.fitted)
        self.converged = _bool_vector("converged", self.converged, P) & self.fitted
        if not isinstance(self.layout, str):
            raise ValueError(f"layout must be a layout name, got {type(self.layout).__name__}")
        J = len(get_layout(self.layout))
        size = tuple(self.image_size) if isinstance(self.image_size, (tuple, list, np.ndarray)) else ()
        if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
                                     and 0 < int(s) < 2**31 for s in size):
            raise ValueError(f"image_size must be (height, width) in positive whole pixels, got {self.image_size!r}")
        self.image_size = (int(size[0]), int(size[1]))
        self.K = _float_array("K", self.K, (3, 3))
        if not np.all(np.isfinite(self.K)):
            raise ValueError("K contains NaN or infinite values")
        shapes = {"pose": (P, 72), "betas": (P, 10), "transl": (P, 3), "keypoints": (P, J, 3),
                  "projected": (P, J, 2), "joints": (P, 24, 3), "reprojection_error": (P,), "loss": (P,)}
        for name, shape in shapes.items():
            setattr(self, name, _float_array(name, getattr(self, name), shape))
        for name, shape in (("boxes", (P, 4)), ("scores", (P,))):
            value = getattr(self, name)
            setattr(self, name, np.full(shape, np.nan) if value is None else _float_array(name, value, shape))
        for name in _UNFITTED_NAN:
            getattr(self, name)[~self.fitted] = np.nan
        for name in ("pose", "betas", "transl", "joints"):
            bad = np.flatnonzero(self.fitted & ~np.isfinite(getattr(self, name).reshape(P, math.prod(shapes[name][1:]))).all(1))
            if bad.size:
                raise ValueError(f"person {int(bad[0])} is marked fitted but its {name} is not finite")
        if not isinstance(self.model, (str, os.PathLike)):
            raise ValueError(f"model must be 'open' or a model path, got {type(self.model).__name__}")
        self.model = str(self.model)
        for name in ("provenance", "outputs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        self.provenance = {"fitlib_version": fitlib_version(), "config_hash": None, "body_model": None,
                           **self.provenance}
        if not isinstance(self.provenance["config_hash"], (str, type(None))) \
                or not isinstance(self.provenance["body_model"], (dict, type(None))) \
                or not isinstance(self.provenance["fitlib_version"], str):
            raise ValueError("provenance must hold fitlib_version (text), config_hash (text or null) and "
                             "body_model (an object or null)")
        self.model_from_file = bool(self.model_from_file)

    def __len__(self) -> int:
        return int(self.pose.shape[0])

    def __repr__(self) -> str:
        """One line: ``FitResult(2 people, 2 fitted, open model, coco17, 810x1080 px, mean reprojection 1.7 px)``
        (image size as width x height; the mean over fitted people)."""
        n, fitted = len(self), int(self.fitted.sum())
        model = "open model" if self.model == "open" else f"model {Path(self.model).name}"
        errors = self.reprojection_error[self.fitted]
        errors = errors[np.isfinite(errors)]
        error = f", mean reprojection {errors.mean():.1f} px" if errors.size else ""
        return (f"FitResult({n} {'person' if n == 1 else 'people'}, {fitted} fitted, {model}, {self.layout}, "
                f"{self.image_size[1]}x{self.image_size[0]} px{error})")

    @property
    def params(self) -> SMPLParams:
        """The parameters as an :class:`~fitlib.params.SMPLParams` (float64 tensors; NaN rows for people
        not fitted), e.g. to start the next fit from (``fitlib.fit(..., init=result)`` takes the result itself)."""
        return SMPLParams.from_pose(torch.from_numpy(np.asarray(self.pose, np.float64)),
                                    torch.from_numpy(np.asarray(self.betas, np.float64)),
                                    torch.from_numpy(np.asarray(self.transl, np.float64)))

    def pose_rotmat(self) -> np.ndarray:
        """The pose as rotation matrices [P, 24, 3, 3] (joint 0 the orientation in the camera frame); NaN for
        people not fitted."""
        pose = np.asarray(self.pose, np.float64).reshape(len(self), 24, 3)
        theta = np.linalg.norm(pose, axis=-1, keepdims=True)
        axis = np.where(theta > 1e-12, pose / np.maximum(theta, 1e-300), 0.0)
        x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
        zero = np.zeros_like(x)
        k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*pose.shape[:2], 3, 3)
        s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
        return np.eye(3) + s * k + (1 - c) * (k @ k)

    def smplx_kwargs(self, as_rotmat: bool = False, dtype: torch.dtype = torch.float32,
                     device: str | torch.device | None = None) -> dict[str, Any]:
        """The parameters as ``smplx.SMPL``'s forward takes them: ``smpl(**result.smplx_kwargs())``.

        Returns:
            ``global_orient`` [P, 3], ``body_pose`` [P, 69] (axis-angle, radians), ``betas`` [P, 10], ``transl``
            [P, 3] (metres, camera frame: OpenCV x right, y down, z forward) as tensors of ``dtype`` on
            ``device``. With ``as_rotmat``: ``global_orient`` [P, 1, 3, 3], ``body_pose`` [P, 23, 3, 3] rotation
            matrices and ``pose2rot=False`` (which smplx then needs). Rows of people not fitted are NaN. The
            betas belong to the result's ``model`` (the open model's are not SMPL's).
        """
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
        out: dict[str, Any] = {"betas": t(self.betas), "transl": t(self.transl)}
        if as_rotmat:
            rot = self.pose_rotmat()
            out.update(global_orient=t(rot[:, :1]), body_pose=t(rot[:, 1:]), pose2rot=False)
        else:
            out.update(global_orient=t(self.pose[:, :3]), body_pose=t(self.pose[:, 3:]))
        return out

    # ------------------------------------------------------------ geometry
    def _body_model(self, body_model: Any, what: str):
        """The body model to pose: the caller's (a BodyModel, ``"open"`` or a path), else the recorded one
        (refused for a non-open model recorded in a file)."""
        from fitlib.body.model import BodyModel, shared_body_model

        if isinstance(body_model, BodyModel):
            return body_model
        if body_model is not None:
            if not isinstance(body_model, (str, os.PathLike)):
                raise ValueError(f"body_model must be a BodyModel, 'open' or a model path, got "
                                 f"{type(body_model).__name__}")
            return shared_body_model(body_model)
        if self.model == "open":
            return shared_body_model("open")
        if self.model_from_file:
            raise ValueError(f"this result was read from a file and records the body model {self.model!r}; "
                             "fitlib does not open a model file because a result file names it. If you trust "
                             f"that file, pass it: result.{what}(body_model=...) with its path or a "
                             "fitlib.load_body_model(...)")
        return shared_body_model(self.model)

    def vertices(self, body_model: Any = None) -> np.ndarray:
        """Mesh vertices [P, V, 3] in the camera frame (metres), computed on demand; NaN for people not fitted.

        Args:
            body_model: a :class:`~fitlib.BodyModel`, ``"open"`` or a model path; default: the result's
                ``model`` (for a result read from a file, only ``"open"`` is opened without being named).
        """
        bm = self._body_model(body_model, "vertices")
        out = np.full((len(self), bm.num_vertices, 3), np.nan)
        rows = np.flatnonzero(self.fitted)
        if rows.size:
            dtype = bm.joint_template.dtype
            device = bm.joint_template.device
            with torch.no_grad():
                posed = bm(torch.as_tensor(self.pose[rows], dtype=dtype, device=device),
                           torch.as_tensor(self.betas[rows], dtype=dtype, device=device),
                           torch.as_tensor(self.transl[rows], dtype=dtype, device=device), vertices=True)
            out[rows] = posed.vertices.cpu().numpy()
        return out

    def export_meshes(self, out_dir: str | Path, fmt: str = "obj", body_model: Any = None,
                      frame: str = "world") -> list[Path]:
        """Write one mesh per fitted person, ``out_dir/person_{i}.{obj,ply,glb}`` (metres, with vertex normals),
        each atomically (:func:`fitlib.io.atomic_write`); returns the paths. Raises OSError as the file system
        does (e.g. a full disk), leaving no partial mesh.

        Args:
            out_dir: the folder (created if missing).
            fmt: ``"obj"``, ``"ply"`` or ``"glb"`` (binary glTF 2.0, what Blender, three.js and most viewers open).
            body_model: as for :meth:`vertices`.
            frame: ``"world"`` (default): y up, the people standing on y = 0 near the origin, the way Blender
                (with its glTF / OBJ importers' y-up setting) and glTF viewers expect. Exactly: the camera frame
                (OpenCV: x right, y down, z forward) turned 180 degrees about its x axis, ``(x, y, z) ->
                (x, -y, -z)`` (x right, y up, the camera looking along -z from the origin, glTF's camera
                convention), then moved by one offset for all people of the image: x and z by minus the mean of
                the fitted people's pelvis (joint 0) x and z, y by minus the lowest vertex's y. The people keep
                their placement relative to each other; "up" is the camera's up (a tilted camera leaves them
                tilted as much). ``"camera"``: the camera frame as fitted (as fitlib wrote meshes before).
        """
        import trimesh

        if fmt not in ("obj", "ply", "glb"):
            raise ValueError(f"mesh format must be 'obj', 'ply' or 'glb', got {fmt!r}")
        if frame not in ("world", "camera"):
            raise ValueError(f"frame must be 'world' or 'camera', got {frame!r}")
        bm = self._body_model(body_model, "export_meshes")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        all_verts = self.vertices(bm)
        if frame == "world" and self.fitted.any():
            turn = np.array([1.0, -1.0, -1.0])  # 180 degrees about x
            all_verts = all_verts * turn
            fitted = self.fitted
            pelvis = self.joints[fitted, 0] * turn
            offset = np.array([pelvis[:, 0].mean(), all_verts[fitted][..., 1].min(), pelvis[:, 2].mean()])
            all_verts = all_verts - offset
        normal_option = {"obj": {"include_normals": True}, "ply": {"vertex_normal": True},
                         "glb": {"include_normals": True}}[fmt]
        for i, verts in enumerate(all_verts):
            if not self.fitted[i]:
                continue
            mesh = trimesh.Trimesh(verts, bm.faces, process=False)
            _ = mesh.vertex_normals  # computed now, so that every format writes them
            data = mesh.export(file_type=fmt, **normal_option)
            path = out_dir / f"person_{i}.{fmt}"
            with atomic_write(path) as fh:
                fh.write(data.encode() if isinstance(data, str) else data)
            paths.append(path)
        return paths

    # ------------------------------------------------------------- drawing
    def render_overlay(self, image: str | Path | np.ndarray, body_model: Any = None, alpha: float = 0.8, *,
                       side_view: bool = False, keypoints: bool = True, ids: bool = True,
                       min_confidence: float = 0.2, supersample: int = 2) -> np.ndarray:
        """The image the fit was made on (a path or an array, as :func:`fitlib.fit` takes it) with the fitted
        meshes smoothly shaded in one depth buffer (nearer people hide farther ones), the fitted skeleton,
        the input keypoints and person ids (:func:`fitlib.render.compose_overlay`).

        Args:
            image: the image (its size must be the fit's ``image_size``).
            body_model: as for :meth:`vertices`.
            alpha: the meshes' opacity in [0, 1].
            side_view: also render the people turned 90 degrees about the vertical axis through their
                centre on a white background, beside the photo (the result is then H x 2W).
            keypoints: draw the fitted skeleton (cyan) and the input keypoints (orange; those below
                ``min_confidence`` are skipped) joined by their residuals (white).
            ids: draw each person's index (people not fitted are labelled so, at their keypoints).
            supersample: antialiasing factor 1-4 of the meshes.

        Returns:
            A new H x W x 3 (H x 2W x 3 with ``side_view``) uint8 RGB array.
        """
        from fitlib.io.images import load_image
        from fitlib.render import compose_overlay

        if not (isinstance(alpha, (int, float)) and 0.0 <= float(alpha) <= 1.0):
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        canvas = load_image(image)  # a new C-contiguous array
        if canvas.shape[:2] != tuple(self.image_size):
            raise ValueError(f"the overlay image is {canvas.shape[1]}x{canvas.shape[0]} px but the fit was made on "
                             f"a {self.image_size[1]}x{self.image_size[0]} px image")
        if self.fitted.any():
            bm = self._body_model(body_model, "render_overlay")
            verts, faces = self.vertices(bm), bm.faces
        else:
            verts, faces = np.full((len(self), 0, 3), np.nan), np.zeros((0, 3), np.int64)
        return compose_overlay(canvas, verts, faces, self.K, keypoints=self.keypoints, projected=self.projected,
                               edges=get_layout(self.layout).edges, alpha=alpha, side_view=side_view,
                               show_keypoints=keypoints, show_ids=ids, min_confidence=min_confidence,
                               supersample=supersample)

    # ----------------------------------------------------------------- i/o
    def _filled_provenance(self) -> dict:
        """The provenance to write: the body model's identity looked up if unknown (for a result made in this
        process; a missing model file leaves it null)."""
        prov = dict(self.provenance)
        if prov.get("body_model") is None and (self.model == "open" or not self.model_from_file):
            from fitlib.body.model import model_identity

            try:
                prov["body_model"] = model_identity(self.model)
            except (FileNotFoundError, ValueError, OSError):
                pass
        return prov

    def to_dict(self) -> dict:
        """The result as schema-version-3 JSON data (``docs/RESULT_SCHEMA.md``): lists, numbers, text,
        booleans and None (null) for NaN; valid JSON for any parser (no NaN or Infinity literals)."""

        def rows(name: str) -> list:
            arr = getattr(self, name)
            out = []
            for i in range(len(self)):
                if name in _UNFITTED_NAN and not self.fitted[i]:
                    out.append(None)
                else:
                    out.append(_json_numbers(arr[i]))
            return out

        data = {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "people": len(self),
                "image_size": list(self.image_size), "K": _json_numbers(self.K), "layout": self.layout,
                "model": self.model}
        data.update({name: rows(name) for name in _PER_PERSON})
        data.update({"converged": self.converged.tolist(), "fitted": self.fitted.tolist(),
                     "provenance": self._filled_provenance(), "outputs": dict(self.outputs),
                     "boxes": [None if not np.isfinite(b).any() else _json_numbers(b) for b in self.boxes],
                     "scores": _json_numbers(self.scores)})
        return data

    def save(self, path: str | Path) -> Path:
        """Save as ``.json`` or ``.npz`` (by suffix) in schema version :data:`SCHEMA_VERSION`, atomically
        (:func:`fitlib.io.atomic_write`: a reader sees the old file or the new one). Returns the path."""
        path = Path(path)
        if path.suffix not in (".json", ".npz"):
            raise ValueError(f"save a FitResult as .npz or .json, not {path.suffix!r}")
        data = self.to_dict()
        try:
            text = json.dumps(data, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the result's provenance or outputs are not JSON data: {exc}") from None
        with atomic_write(path) as fh:
            if path.suffix == ".json":
                fh.write(text.encode())
            else:
                arrays = {name: getattr(self, name) for name in _PER_PERSON + ("K", "converged", "fitted", "boxes", "scores")}
                arrays.update({"schema": np.array(SCHEMA_NAME), "schema_version": np.array(SCHEMA_VERSION),
                               "image_size": np.array(self.image_size, dtype=np.int64), "layout": np.array(self.layout),
                               "model": np.array(self.model),
                               "provenance": np.array(json.dumps(data["provenance"], allow_nan=False)),
                               "outputs": np.array(json.dumps(data["outputs"], allow_nan=False))})
                np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FitResult":
        """Load a result written by :meth:`save` (schema version 1, 2 or 3), checking it.

        The result's ``model_from_file`` is True: see :meth:`vertices`.

        Raises:
            FileNotFoundError: no such file.
            ValueError: naming the file and the problem: not a regular file, damaged or not JSON / npz,
                a newer schema, an unknown entry or layout, a shape that does not fit the number of people.
        """
        path = Path(path)
        if path.suffix not in (".json", ".npz"):
            raise ValueError(f"a FitResult file is .npz or .json, not {path.suffix!r}")
        raw = read_regular_file(path, max_bytes=MAX_RESULT_BYTES, what="fit result")
        try:
            if path.suffix == ".json":
                kw = _parse_json(raw)
            else:
                kw = _parse_npz(raw, str(path))
            return cls(**kw, model_from_file=True)
        except ValueError as exc:
            message = str(exc)
            if message.startswith(f"{path}"):
                message = message[len(str(path)):].lstrip(": ")
            raise ValueError(f"{path} is not a readable fit result: {message}") from None
        except RecursionError:
            raise ValueError(f"{path} is not a readable fit result: nested too deeply") from None


def _json_numbers(arr: np.ndarray) -> Any:
    """A float array as nested lists, NaN and infinities as None."""
    if arr.ndim == 0:
        x = float(arr)
        return x if math.isfinite(x) else None
    return [_json_numbers(a) for a in arr]


def _from_json(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Nested JSON lists of numbers (None for NaN, a None row for a whole row of NaN) as a float array of
    ``shape``; ValueError naming ``name`` for anything else (text, booleans, ragged lists, wrong lengths)."""
    out = np.full(shape, np.nan)

    def fill(v: Any, index: tuple[int, ...]) -> None:
        depth = len(index)
        if v is None:
            return
        if depth == len(shape):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name} must hold numbers, found {type(v).__name__}")
            out[index] = float(v)
            return
        if not isinstance(v, list) or len(v) != shape[depth]:
            got = f"{len(v)} entries" if isinstance(v, list) else type(v).__name__
            raise ValueError(f"{name} must have shape {_shape_text(shape)}: axis {depth} has {got}")
        for i, x in enumerate(v):
            fill(x, index + (i,))

    if value is None:
        raise ValueError(f"{name} is null")
    fill(value, ())
    return out


def _parse_json(raw: bytes) -> dict:
    """Keyword arguments of :class:`FitResult` from JSON bytes of schema 1 to 3."""
    constants: list[str] = []

    def constant(text: str) -> float:
        constants.append(text)
        return float("nan") if text == "NaN" else float(text.replace("Infinity", "inf"))

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"not readable JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
    version = _schema_version(data.get("schema_version", 1), data)
    if version >= 2 and constants:
        raise ValueError(f"it holds {constants[0]!r}, which is not JSON (schema 2 writes null)")
    keys = _keys(version)
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"it lacks {missing}")
    unknown = sorted(set(data) - set(keys))
    if unknown and version >= 2:
        raise ValueError(f"unknown entries {unknown}")
    if version >= 2 and data["schema"] != SCHEMA_NAME:
        raise ValueError(f"schema is {data['schema']!r}, not {SCHEMA_NAME!r}")
    for name in ("converged", "fitted"):
        if not isinstance(data[name], list) or not all(isinstance(x, bool) for x in data[name]):
            raise ValueError(f"{name} must be a list of true/false")
    P = len(data["fitted"])
    if version >= 2 and (not isinstance(data["people"], int) or isinstance(data["people"], bool)
                         or data["people"] != P):
        raise ValueError(f"people is {data['people']!r} but fitted has {P} entries")
    layout = data["layout"]
    if not isinstance(layout, str) or not isinstance(data["model"], str):
        raise ValueError("layout and model must be text")
    J = len(get_layout(layout))
    shapes = {"pose": (P, 72), "betas": (P, 10), "transl": (P, 3), "keypoints": (P, J, 3), "projected": (P, J, 2),
              "joints": (P, 24, 3), "reprojection_error": (P,), "loss": (P,)}
    kw: dict[str, Any] = {name: _from_json(name, data[name], shape) for name, shape in shapes.items()}
    image_size = data["image_size"]
    if not (isinstance(image_size, list) and len(image_size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) for s in image_size)):
        raise ValueError(f"image_size must be [height, width] in whole pixels, got {image_size!r}")
    kw.update(K=_from_json("K", data["K"], (3, 3)), image_size=tuple(image_size), layout=layout, model=data["model"],
              converged=np.array(data["converged"], dtype=bool).reshape(P),
              fitted=np.array(data["fitted"], dtype=bool).reshape(P))
    if version >= 2:
        kw.update(provenance=data["provenance"], outputs=data["outputs"])
    if version >= 3:
        kw.update(boxes=_from_json("boxes", data["boxes"], (P, 4)), scores=_from_json("scores", data["scores"], (P,)))
    return kw


def _schema_version(value: Any, data: dict) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"schema_version must be a positive whole number, got {value!r}")
    if value > SCHEMA_VERSION:
        provenance = data.get("provenance")
        writer = provenance.get("fitlib_version", "?") if isinstance(provenance, dict) else "?"
        raise ValueError(f"it was written in schema version {value} by a newer fitlib ({writer}); "
                         f"this fitlib ({fitlib_version()}) reads versions 1-{SCHEMA_VERSION}")
    return value


def _parse_npz(raw: bytes, source: str) -> dict:
    """Keyword arguments of :class:`FitResult` from ``.npz`` bytes of schema 1 to 3 (read without unpickling)."""
    arrays = load_npz(raw, source, max_bytes=4 * MAX_RESULT_BYTES)
    version = 1
    if "schema_version" in arrays:
        sv = arrays["schema_version"]
        if sv.shape != () or sv.dtype.kind not in "iu":
            raise ValueError("schema_version must be a whole number")
        version = _schema_version(int(sv), {})
    keys = _keys(version)
    missing = [k for k in keys if k not in arrays and k != "people"]
    if missing:
        raise ValueError(f"it lacks {missing}")
    unknown = sorted(set(arrays) - set(keys))
    if unknown and version >= 2:
        raise ValueError(f"unknown entries {unknown}")

    def text(name: str) -> str:
        a = arrays[name]
        if a.shape != () or a.dtype.kind != "U":
            raise ValueError(f"{name} must be text")
        return str(a)

    kw: dict[str, Any] = {}
    for name in _PER_PERSON + ("K",) + (("boxes", "scores") if version >= 3 else ()):
        a = arrays[name]
        if a.dtype.kind not in "iuf":
            raise ValueError(f"{name} must be numeric, got {a.dtype}")
        kw[name] = a
    for name in ("converged", "fitted"):
        kw[name] = arrays[name]  # checked to be booleans by FitResult
    size = arrays["image_size"]
    if size.shape != (2,) or size.dtype.kind not in "iu":
        raise ValueError(f"image_size must be 2 whole numbers, got {size.dtype} of shape {size.shape}")
    kw.update(image_size=(int(size[0]), int(size[1])), layout=text("layout"), model=text("model"))
    if version >= 2:
        if text("schema") != SCHEMA_NAME:
            raise ValueError(f"schema is {text('schema')!r}, not {SCHEMA_NAME!r}")
        for name in ("provenance", "outputs"):
            try:
                kw[name] = json.loads(text(name), parse_constant=_refuse_constant)
            except ValueError as exc:
                raise ValueError(f"{name} is not JSON ({exc})") from None
    return kw


def _refuse_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")
