"""Running a local mmpose model (installed by ``scripts/install_mmpose.sh``) on the people of an image,
with the compatibility shims mmpose 1.3 needs beside current torch and setuptools."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fitlib.detection.blazepose import detect_people
from fitlib.detection.keypoints import Keypoints
from fitlib.detection.mmpose_results import keypoints_from_mmpose


def run_mmpose(image: np.ndarray, config: str | os.PathLike, checkpoint: str | os.PathLike, *,
               bboxes: np.ndarray | None = None, device: str = "cpu", layout: str | None = None,
               trust_checkpoint: bool = False, **detector_kwargs) -> Keypoints:
    """Run a local top-down mmpose model on the people of an RGB image.

    The model is built from ``config`` by mmpose's ``init_model`` and run by ``inference_topdown``
    on one crop per person box. See :func:`import_mmpose` for the compatibility shims used while
    importing mmpose and :func:`_load_checkpoint_compat` for checkpoints holding numpy objects.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        config, checkpoint: local mmpose config file and checkpoint (no download). The checkpoint is
            loaded with torch's ``weights_only`` loader, the numpy types mmengine keeps in ``meta``
            allowed (:func:`checkpoint_safe_globals`).
        bboxes: ``(N, 4)`` xyxy person boxes in pixels (passed to ``inference_topdown``; note that
            ``MMPoseInferencer`` would ignore them); the result has one person per box, in the
            given order, with the given boxes and score 1. Default: the boxes of fitlib's bundled
            detector (people sorted by its scores), to which ``detector_kwargs`` go.
        device: torch device string.
        layout: as in :func:`keypoints_from_mmpose` (default: from the model's ``dataset_meta``).
        trust_checkpoint: unpickle a checkpoint in full that the safe loader refuses (see
            :func:`init_model`; it can run code in the file).

    Returns:
        :class:`Keypoints` ``(P, 17 or 23, 3)``; confidences are mmpose's scores clipped to [0, 1].

    Raises:
        ImportError: mmpose is not installed (``scripts/install_mmpose.sh``).
        FileNotFoundError: missing config or checkpoint.
        ValueError: bad image or boxes, a model whose keypoints lack the COCO body joints, or a
            checkpoint the safe loader refuses (without ``trust_checkpoint``).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"run_mmpose needs a non-empty (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape} "
                         "(fitlib.detect converts grayscale / RGBA / paths)")
    apis = import_mmpose()
    for name, path in (("config", config), ("checkpoint", checkpoint)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"mmpose {name} not found: {path}")
    h, w = image.shape[:2]
    if bboxes is None:
        found = detect_people(image, "coco17", **detector_kwargs)
        bboxes, bscores = found.boxes, found.scores
    else:
        bboxes = _check_boxes(bboxes)
        bscores = np.ones(len(bboxes))
    model = init_model(config, checkpoint, device, trust_checkpoint=trust_checkpoint)
    meta = getattr(model, "dataset_meta", None)
    if len(bboxes) == 0:  # nobody: an empty result in the layout the model would give
        k = int((meta or {}).get("num_keypoints", 17))
        return keypoints_from_mmpose({"keypoints": np.zeros((0, k, 2)), "keypoint_scores": np.zeros((0, k))},
                                     layout=layout, meta=meta, image_size=(h, w))
    # mmpose's pipelines take OpenCV's BGR order (the data preprocessor converts back to RGB)
    samples = apis.inference_topdown(model, np.ascontiguousarray(image[:, :, ::-1]), bboxes, bbox_format="xyxy")
    # one sample per box, in the boxes' order
    kps = keypoints_from_mmpose(samples, layout=layout, meta=meta)
    order = np.argsort(-bscores, kind="stable")
    return Keypoints(kps.keypoints[order], bboxes[order], np.clip(bscores[order], 0, 1), kps.layout, (h, w))


def _check_boxes(bboxes: Any) -> np.ndarray:
    boxes = np.asarray(bboxes, np.float64)
    if boxes.size == 0:
        return np.zeros((0, 4))
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"person boxes must be (N, 4) xyxy pixels, got shape {boxes.shape}")
    if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] <= boxes[:, :2]):
        raise ValueError("person boxes must be finite xyxy with x2 > x1 and y2 > y1")
    return boxes


def init_model(config: str | os.PathLike, checkpoint: str | os.PathLike | None, device: str = "cpu", *,
               trust_checkpoint: bool = False):
    """mmpose's ``init_model`` (imported through :func:`import_mmpose`), loading mmengine checkpoints under
    torch >= 2.6 with torch's safe loader (see :class:`_load_checkpoint_compat`).

    Args:
        config: mmpose config file.
        checkpoint: checkpoint file, or ``None`` for mmpose's initial (random) weights.
        device: torch device string.
        trust_checkpoint: unpickle the checkpoint in full if torch's safe loader refuses it even with
            the numpy types mmengine stores allowed. Unpickling can run code: only for files you trust.

    Returns:
        the mmpose pose estimator (``torch.nn.Module`` in eval mode) with its ``dataset_meta``.

    Raises:
        ValueError: the safe loader refused the checkpoint and ``trust_checkpoint`` is False (the
            message names what it refused).
    """
    apis = import_mmpose()
    if checkpoint is None:
        return apis.init_model(str(config), None, device=device)
    with _load_checkpoint_compat(trust=trust_checkpoint):
        return apis.init_model(str(config), str(checkpoint), device=device)


def checkpoint_safe_globals() -> list:
    """The numpy functions and classes mmengine checkpoints keep in ``meta`` (arrays and scalars of
    ``dataset_meta``, the seed), allowed in torch's ``weights_only`` loader while loading them: array,
    dtype and scalar reconstruction only, under their numpy 2 and numpy 1 names. Nothing else is added."""
    import numpy as np

    reconstruct = np.zeros(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    dtype_classes = sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGUS"}, key=str)  # not object
    return [reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes,
            (reconstruct, "numpy.core.multiarray._reconstruct"), (scalar, "numpy.core.multiarray.scalar")]


def _refusal(err: Exception) -> str:
    """The line of torch's weights_only error that names what it refused."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "got <" in line or "Unsupported" in line]
    return (named or lines or [type(err).__name__])[0]


class _load_checkpoint_compat:
    """While active, a ``torch.load`` whose caller did not choose ``weights_only`` (mmengine 0.10.7's
    ``load_checkpoint`` does not) loads with ``weights_only=True`` and :func:`checkpoint_safe_globals`
    allowed: mmpose checkpoints keep numpy arrays and scalars in ``meta["dataset_meta"]``, which torch's
    safe loader refuses by default since torch 2.6.

    A checkpoint that the safe loader still refuses (it names other classes) is an error, unless
    ``trust`` is set: then it is unpickled in full (``weights_only=False``, what torch < 2.6 did), which can
    run code in the file. Not thread-safe: it swaps ``torch.load``.
    """

    def __init__(self, trust: bool = False) -> None:
        self.trust = bool(trust)

    def __enter__(self):
        import torch

        self._torch, self._original = torch, torch.load
        original, trust, safe = self._original, self.trust, checkpoint_safe_globals()

        def load(f, *args, **kwargs):
            if "weights_only" in kwargs:  # the caller chose
                return original(f, *args, **kwargs)
            try:
                with torch.serialization.safe_globals(safe):
                    return original(f, *args, weights_only=True, **kwargs)
            except Exception as err:  # noqa: BLE001 - only the weights_only refusal is handled
                if "weights_only" not in str(err) or isinstance(f, (bytes, bytearray)):
                    raise
                if not trust:
                    name = f if isinstance(f, (str, os.PathLike)) else "the checkpoint"
                    raise ValueError(
                        f"torch's safe loader refused {name} ({_refusal(err)}). "
                        "It holds more than weights and numpy metadata; if you trust the file, load it with "
                        "trust_checkpoint=True (`fitlib detect --trust-checkpoint`), which unpickles it in full "
                        "and can run code in it") from None
                if hasattr(f, "seek"):
                    f.seek(0)
            return original(f, *args, weights_only=False, **kwargs)

        torch.load = load
        return self

    def __exit__(self, *exc):
        self._torch.load = self._original
        return False


def import_mmpose():
    """Import and return ``mmpose.apis``, with two compatibility shims, each used only if the real
    module is missing and only while mmpose is being imported (removed from ``sys.modules`` after):

    * ``torchvision``: mmpose 1.3.2 imports ``torchvision.transforms.ToPILImage`` in one place,
      ``mmpose/visualization/simcc_vis.py`` (SimCC heat-map visualisation, which fitlib never
      uses); there is no torchvision build for every torch (none for the CPU torch fitlib is
      tested with). The stand-in ``ToPILImage`` raises ImportError if ever called.
    * ``pkg_resources``: removed from setuptools >= 81, but mmengine 0.10.7's
      ``get_installed_path`` imports it, and mmpose calls that at import time
      (``mmpose/apis/inferencers/utils/default_det_models.py``). The stand-in answers
      ``get_distribution(name).location`` from :mod:`importlib.metadata`. (Configs whose
      ``_base_`` names another package, ``"mmdet::..."``, still need the real ``pkg_resources``.)

    Raises:
        ImportError: mmpose (or mmcv, mmengine, mmdet) is not installed or does not import.
    """
    import importlib
    import importlib.util
    import sys

    if "mmpose.apis" in sys.modules:
        return sys.modules["mmpose.apis"]
    shims = {}
    if importlib.util.find_spec("mmpose") is not None:  # shims only for a real mmpose
        if importlib.util.find_spec("torchvision") is None:
            shims.update(_torchvision_stub())
        if importlib.util.find_spec("pkg_resources") is None:
            shims["pkg_resources"] = _pkg_resources_stub()
    sys.modules.update(shims)
    try:
        return importlib.import_module("mmpose.apis")
    except ImportError as err:
        raise ImportError(
            "the mmpose backend needs mmpose 1.x with mmcv, mmengine and mmdet: run "
            f"scripts/install_mmpose.sh (see the README); import failed with: {err}") from err
    finally:
        for name, module in shims.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def _torchvision_stub() -> dict:
    import types

    def to_pil_image(*args, **kwargs):
        raise ImportError("torchvision is not installed: fitlib imported mmpose with a stand-in for "
                          "torchvision.transforms, which has no ToPILImage (SimCC visualisation)")

    root, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    root.__doc__ = transforms.__doc__ = "fitlib stand-in: torchvision is not installed"
    transforms.ToPILImage = to_pil_image
    root.transforms = transforms
    return {"torchvision": root, "torchvision.transforms": transforms}


def _pkg_resources_stub():
    import importlib.metadata
    import types

    module = types.ModuleType("pkg_resources")
    module.__doc__ = "fitlib stand-in: setuptools >= 81 has no pkg_resources"

    class DistributionNotFound(Exception):
        pass

    def get_distribution(name: str):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as err:
            raise DistributionNotFound(name) from err
        return types.SimpleNamespace(project_name=name, version=dist.version,
                                     location=str(dist.locate_file("")))

    module.DistributionNotFound = DistributionNotFound
    module.get_distribution = get_distribution
    return module
