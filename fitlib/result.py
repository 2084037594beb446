"""FitResult: what :func:`fitlib.fit` returns; saves to/loads from ``.npz`` and JSON, exports meshes, draws overlays."""
from __future__ import annotations

import dataclasses
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.io.atomic import atomic_write
from fitlib.params import SMPLParams


@dataclass
class FitResult:
    """SMPL fits of the P people in one image (numpy arrays; camera frame: OpenCV, metres).

    Attributes:
        pose: [P, 72] axis-angle (radians); the first 3 are the orientation in the camera frame.
        betas: [P, 10] shape coefficients.
        transl: [P, 3] translation (metres).
        K: [3, 3] intrinsics (pixels).
        image_size: (height, width) in pixels.
        layout: keypoint layout name of ``keypoints``/``projected``.
        keypoints: [P, J, 3] input keypoints (x px, y px, confidence).
        projected: [P, J, 2] the fitted model's keypoints projected (pixels).
        joints: [P, 24, 3] SMPL joints in the camera frame (metres).
        reprojection_error: [P] mean pixel distance over the keypoints used (NaN if not fitted).
        loss: [P] final fitting loss.
        converged: [P] bool.
        fitted: [P] bool; False where a person had too few usable keypoints.
        model: body model the parameters belong to (``"open"`` or a file path).
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

    def __len__(self) -> int:
        return int(self.pose.shape[0])

    @property
    def params(self) -> SMPLParams:
        """The fitted parameters as an :class:`~fitlib.params.SMPLParams` (float64 tensors), e.g. to start
        the next fit from (``fitlib.fit(..., init=result)`` takes the result itself too)."""
        return SMPLParams.from_pose(torch.from_numpy(np.asarray(self.pose, np.float64)),
                                    torch.from_numpy(np.asarray(self.betas, np.float64)),
                                    torch.from_numpy(np.asarray(self.transl, np.float64)))

    # ------------------------------------------------------------ geometry
    def vertices(self, body_model=None) -> np.ndarray:
        """Mesh vertices [P, V, 3] in the camera frame (metres), computed on demand."""
        from fitlib.body.model import shared_body_model

        bm = body_model or shared_body_model(self.model)
        dtype = bm.joint_template.dtype
        with torch.no_grad():
            out = bm(torch.as_tensor(self.pose, dtype=dtype), torch.as_tensor(self.betas, dtype=dtype),
                     torch.as_tensor(self.transl, dtype=dtype), vertices=True)
        return out.vertices.cpu().numpy()

    def export_meshes(self, out_dir: str | Path, fmt: str = "obj", body_model=None) -> list[Path]:
        """Write one mesh per fitted person (``person_{i}.{obj,ply}``) through trimesh; returns the paths."""
        import trimesh

        from fitlib.body.model import shared_body_model

        if fmt not in ("obj", "ply"):
            raise ValueError(f"mesh format must be 'obj' or 'ply', got {fmt!r}")
        bm = body_model or shared_body_model(self.model)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, verts in enumerate(self.vertices(bm)):
            if not self.fitted[i]:
                continue
            path = out_dir / f"person_{i}.{fmt}"
            trimesh.Trimesh(verts, bm.faces, process=False).export(path)
            paths.append(path)
        return paths

    # ------------------------------------------------------------- drawing
    def render_overlay(self, image: str | Path | np.ndarray, body_model=None, alpha: float = 0.6) -> np.ndarray:
        """The image the fit was made on (a path or an array, as :func:`fitlib.fit` takes it) with each
        fitted mesh shaded (painter's algorithm, Lambert light from the camera) and the fitted skeleton
        drawn on top; returns a new HxWx3 uint8 RGB array."""
        from fitlib.body.model import shared_body_model
        from fitlib.io.images import load_image

        canvas = load_image(image)  # a new C-contiguous array
        if canvas.shape[:2] != tuple(self.image_size):
            raise ValueError(f"the overlay image is {canvas.shape[1]}x{canvas.shape[0]} px but the fit was made on "
                             f"a {self.image_size[1]}x{self.image_size[0]} px image")
        if not self.fitted.any():
            return canvas
        bm = body_model or shared_body_model(self.model)
        faces = bm.faces
        verts_all = self.vertices(bm)
        layer = canvas.copy()
        palette = [(120, 170, 255), (255, 160, 120), (140, 230, 140), (230, 200, 90), (200, 140, 230)]
        order = np.argsort([-v[:, 2].mean() for v in verts_all])  # far people first
        for i in order:
            if not self.fitted[i]:
                continue
            v = verts_all[i]
            if (v[:, 2] <= 1e-3).any():
                continue
            uv = (v[:, :2] / v[:, 2:3]) * np.diag(self.K)[:2] + self.K[:2, 2]
            tri = v[faces]
            normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
            centre = tri.mean(1)
            view = -centre / np.linalg.norm(centre, axis=1, keepdims=True)
            shade = (normal * view).sum(1)
            front = shade > 0
            color = np.asarray(palette[i % len(palette)], dtype=np.float64)
            for f in np.argsort(-centre[:, 2]):
                if not front[f]:
                    continue
                pts = np.round(uv[faces[f]] * 4).astype(np.int32)
                c = tuple(int(x) for x in color * (0.3 + 0.7 * shade[f]))
                cv2.fillConvexPoly(layer, pts, c, lineType=cv2.LINE_AA, shift=2)
        canvas = cv2.addWeighted(layer, alpha, canvas, 1 - alpha, 0)
        layout = get_layout(self.layout)
        for i in range(len(self)):
            if not self.fitted[i]:
                continue
            pts = self.projected[i]
            for a, b in layout.edges:
                pa, pb = pts[a], pts[b]
                if np.isfinite(pa).all() and np.isfinite(pb).all():
                    cv2.line(canvas, tuple(int(x) for x in pa), tuple(int(x) for x in pb), (255, 255, 0), 2,
                             cv2.LINE_AA)
        return canvas

    # ----------------------------------------------------------------- i/o
    def to_dict(self) -> dict:
        """Plain dict of lists/numbers (JSON-serialisable)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else (list(v) if isinstance(v, tuple) else v)
        return out

    def save(self, path: str | Path) -> Path:
        """Save as ``.npz`` or ``.json`` (by suffix), atomically (:func:`fitlib.io.atomic_write`)."""
        path = Path(path)
        if path.suffix not in (".json", ".npz"):
            raise ValueError(f"save a FitResult as .npz or .json, not {path.suffix!r}")
        with atomic_write(path) as fh:
            if path.suffix == ".json":
                fh.write(json.dumps(self.to_dict(), allow_nan=True).encode())
            else:
                np.savez_compressed(fh, **{f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FitResult":
        """Load a result written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fit result not found: {path}")
        if path.suffix not in (".json", ".npz"):
            raise ValueError(f"a FitResult file is .npz or .json, not {path.suffix!r}")
        try:
            if path.suffix == ".json":
                raw = json.loads(path.read_text())
            else:
                with np.load(path, allow_pickle=False) as z:
                    raw = {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path} is not a readable fit result ({type(exc).__name__}: {exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} is not a fit result")
        kinds = {"converged": bool, "fitted": bool}
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in raw:
                raise ValueError(f"{path} is not a fit result: it lacks {f.name!r}")
            v = raw[f.name]
            if f.name in ("layout", "model"):
                kw[f.name] = str(v)
            elif f.name == "image_size":
                kw[f.name] = tuple(int(x) for x in np.asarray(v))
            else:
                kw[f.name] = np.asarray(v, dtype=kinds.get(f.name, np.float64))
        P = len(kw["reprojection_error"])
        if P == 0:  # JSON keeps no trailing dims of empty arrays
            J = len(get_layout(kw["layout"]))
            trailing = {"pose": (72,), "betas": (10,), "transl": (3,), "keypoints": (J, 3), "projected": (J, 2),
                        "joints": (24, 3)}
            for name, shape in trailing.items():
                kw[name] = kw[name].reshape(0, *shape)
        return cls(**kw)
