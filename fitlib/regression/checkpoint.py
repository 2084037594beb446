"""Regressor weight files: a small JSON header plus the state dict, read with ``torch.load(weights_only=True)``.

A file is a dict ``{"format": "fitlib-regressor", "header": <JSON text>, "state_dict": {name: tensor}}``.
The header holds ``version`` (:data:`VERSION`), ``layout`` (the network's keypoint layout), ``body_model``
(the body model it was trained for, e.g. ``"open:323483ff95df"``: the open model and its build key),
``config`` (the :class:`~fitlib.regression.model.RegressorConfig`) and free ``info`` (training command,
seed, metrics). Weights may be stored as float16 (``half=True``) and are loaded as float32.

Every problem is a ValueError naming the file and what is wrong: not a file of this format, a damaged
file, a different version, a layout or body model other than expected, a state dict that does not
match its config.

:func:`load_regressor` also reads SPIN's ``model_checkpoint.pt`` (:func:`fitlib.regression.spin.load_spin_checkpoint`:
a file without fitlib's format tag, or larger than :data:`MAX_BYTES`, is tried as one), with the header
:func:`spin_header` (layout ``coco17``: the COCO points the crop's box is made from; body model ``smpl``).
"""
from __future__ import annotations

import io
import json
import pickle
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from fitlib.io.atomic import atomic_write
from fitlib.regression.model import Regressor, RegressorConfig

FORMAT = "fitlib-regressor"
VERSION = 1
"""Bumped when the network's definition changes incompatibly."""
MAX_BYTES = 256 << 20
"""Regressor files larger than this are refused before reading."""
SHIPPED = "regressor_open_coco17_feet.pt"
"""The shipped weights, in ``fitlib/regression/weights/``."""


def open_model_identity() -> str:
    """``"open:<build key>"``: the open body model of this fitlib version."""
    from fitlib.body.open_model import BuildConfig

    return f"open:{BuildConfig().key()}"


def shipped_path() -> Path:
    return Path(str(resources.files("fitlib.regression").joinpath("weights", SHIPPED)))


def save_regressor(path: str | Path, model: Regressor, body_model: str | None = None, info: dict | None = None,
                   half: bool = False) -> Path:
    """Write ``model``'s weights with their header to ``path`` (atomically)."""
    header = {"version": VERSION, "layout": model.config.layout, "body_model": body_model or open_model_identity(),
              "config": model.config.model_dump(), "info": info or {}}
    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    path = Path(path)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "header": json.dumps(header), "state_dict": sd}, buf)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())
    return path


class NotFitlibCheckpoint(ValueError):
    """A readable file that is not a fitlib regressor file (no format tag, or too large for one)."""


def spin_header() -> dict:
    """The header of a SPIN checkpoint read as a regressor (:func:`load_regressor`)."""
    from fitlib.regression.spin import spin_config

    config = RegressorConfig.model_validate(spin_config())
    return {"version": VERSION, "layout": config.layout, "body_model": "smpl", "config": config.model_dump(),
            "info": {"source": "SPIN checkpoint (converted on loading)"}}


def read_header(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(header, state dict) of a regressor file; ValueError naming the file for anything unreadable
    (:class:`NotFitlibCheckpoint` for a file that is not of this format)."""
    from fitlib.io.safe_load import read_regular_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"regressor checkpoint {path} not found")
    if path.is_file() and path.stat().st_size > MAX_BYTES:
        raise NotFitlibCheckpoint(f"{path} is larger than a fitlib regressor checkpoint ({MAX_BYTES >> 20} MiB)")
    raw = read_regular_file(path, max_bytes=MAX_BYTES, what="regressor checkpoint")  # no FIFOs, no huge files
    try:
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable regressor checkpoint (damaged or not a torch file): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NotFitlibCheckpoint(f"{path} is not a fitlib regressor checkpoint (no '{FORMAT}' format tag)")
    try:
        header = json.loads(data["header"])
        sd = data["state_dict"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: damaged regressor checkpoint header ({exc})") from None
    if not isinstance(header, dict) or not isinstance(sd, dict):
        raise ValueError(f"{path}: damaged regressor checkpoint (header or state dict of the wrong type)")
    return header, sd


def load_regressor(path: str | Path | None = None, device: str | torch.device | None = None,
                   layout: str | None = None, body_model: str | None = None) -> tuple[Regressor, dict]:
    """Load a regressor file (default: the shipped weights) in eval mode.

    Args:
        layout, body_model: what the caller expects (None: anything); a file for another one is an error.
    Returns:
        (regressor, header).
    """
    path = Path(path) if path is not None else shipped_path()
    try:
        header, sd = read_header(path)
    except NotFitlibCheckpoint as exc:
        return _load_spin(path, device, layout, body_model, str(exc))
    for key in ("version", "layout", "body_model", "config"):
        if key not in header:
            raise ValueError(f"{path}: regressor checkpoint header lacks {key!r}")
    if header["version"] != VERSION:
        raise ValueError(f"{path}: regressor checkpoint version {header['version']!r}, this fitlib reads version "
                         f"{VERSION}")
    if layout is not None and header["layout"] != layout:
        raise ValueError(f"{path}: the regressor was trained for keypoint layout {header['layout']!r}, "
                         f"expected {layout!r}")
    if body_model is not None and header["body_model"] != body_model:
        raise ValueError(f"{path}: the regressor was trained for body model {header['body_model']!r}, "
                         f"expected {body_model!r}")
    try:
        config = RegressorConfig.model_validate(header["config"])
    except Exception as exc:  # pydantic ValidationError
        raise ValueError(f"{path}: regressor config in the header is not valid: {exc}") from None
    if config.layout != header["layout"]:
        raise ValueError(f"{path}: header layout {header['layout']!r} differs from its config's {config.layout!r}")
    model = Regressor(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    extra = sorted(set(sd) - set(expected))
    shapes = [f"{k}: {tuple(sd[k].shape)} in the file, {tuple(v.shape)} for its config"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or extra or shapes:
        parts = ([f"missing {missing[:5]}"] if missing else []) + ([f"unexpected {extra[:5]}"] if extra else []) \
            + shapes[:5]
        raise ValueError(f"{path}: weights do not match the regressor config: " + "; ".join(parts))
    bad = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: damaged weights (non-finite values in {bad[:5]})")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()})
    return model.to(device or "cpu").eval(), header


def _load_spin(path: Path, device, layout: str | None, body_model: str | None, why: str) -> tuple[Regressor, dict]:
    """A file that is not fitlib's, read as SPIN's checkpoint (or an error saying it is neither)."""
    from fitlib.regression.spin import load_spin_checkpoint

    header = spin_header()
    try:
        net = load_spin_checkpoint(path, device=device)
    except ValueError as exc:
        raise ValueError(f"{why}; read as a SPIN checkpoint: {exc}") from None
    if layout is not None and header["layout"] != layout:
        raise ValueError(f"{path}: a SPIN checkpoint reads layout {header['layout']!r}, expected {layout!r}")
    if body_model is not None and header["body_model"] != body_model:
        raise ValueError(f"{path}: a SPIN checkpoint was trained for SMPL, expected body model {body_model!r}")
    return net, header


def describe(header: dict[str, Any]) -> str:
    return f"layout {header.get('layout')}, body model {header.get('body_model')}, version {header.get('version')}"
