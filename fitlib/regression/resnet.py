"""ResNet-50, the image backbone of HMR and SPIN, with torchvision's module and parameter names.

* :class:`ResNet50`: the network in plain torch. ``forward(x) -> [B, 2048]``: layer4's output, after its
  ReLU, averaged over the image (global average pooling); no classifier in this path.
* :func:`resnet50`: the one way fitlib builds the backbone (torchvision's own modules when torchvision
  imports, else :class:`ResNet50`; both have the same state dict names, shapes and forward).
* :func:`normalise`, :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`: the input convention.
* :func:`load_backbone_weights`: torchvision / ImageNet weight files, SPIN's backbone and fitlib
  regressors' backbones loaded by name, with every mismatch an error; :func:`load_weights_file` reads
  such files without unpickling code.

Conventions: input ``[B, 3, H, W]`` float RGB, normalised with ImageNet's per-channel mean and standard
deviation (:func:`normalise` of RGB in [0, 1]); any ``H, W >= 32`` (output stride 32; HMR and SPIN use
224 x 224 crops, layer4 then being 7 x 7). BatchNorm uses batch statistics in training mode and its running
statistics in eval mode.

Names (torchvision's ``resnet50``): ``conv1`` (7 x 7, stride 2, no bias), ``bn1``, ``relu``, ``maxpool``
(3 x 3, stride 2), ``layer1``..``layer4`` of 3, 4, 6, 3 bottleneck blocks of widths 64, 128, 256, 512
(output 4 x the width), each block ``conv1`` (1 x 1) / ``bn1`` / ``conv2`` (3 x 3) / ``bn2`` / ``conv3``
(1 x 1) / ``bn3`` and, in a layer's first block, ``downsample.0`` (1 x 1 conv) / ``downsample.1`` (BN);
the stride 2 of layers 2-4 sits on the first block's ``conv2`` and ``downsample.0`` (torchvision's
"v1.5", which the ImageNet files and SPIN use), ``avgpool``, and ``fc`` (a ``Linear(2048, num_classes)``
only when a classifier is asked for, else a parameter-free ``Identity``).
"""
from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

LAYERS = (3, 4, 6, 3)
"""Bottleneck blocks in ``layer1``..``layer4``."""
WIDTHS = (64, 128, 256, 512)
"""Inner width of the blocks of each layer (their output is :data:`EXPANSION` times this)."""
EXPANSION = 4
FEATURE_DIM = WIDTHS[-1] * EXPANSION
"""Width of the pooled feature (2048)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean (R, G, B) of ImageNet images in [0, 1], subtracted by :func:`normalise`."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation (R, G, B) of ImageNet images in [0, 1], divided by :func:`normalise`."""
MAX_BYTES = 1 << 30
"""Weight files larger than this (1 GiB) are refused before reading."""

_SPIN_HEAD_PREFIXES = ("fc1.", "fc2.", "decpose.", "decshape.", "deccam.")
_SPIN_HEAD_BUFFERS = ("init_pose", "init_shape", "init_cam")


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation: ``(images - IMAGENET_MEAN) / IMAGENET_STD`` per channel.

    Args:
        images: [..., 3, H, W] floating-point RGB in [0, 1].
    Returns:
        [..., 3, H, W] of the same dtype and device.
    Raises:
        ValueError: not a floating-point tensor with 3 channels at dim -3 (uint8 images: divide by 255 first).
    """
    if not isinstance(images, torch.Tensor) or images.ndim < 3 or images.shape[-3] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"normalise takes RGB images [..., 3, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"normalise takes floating-point RGB in [0, 1], got {images.dtype} "
                         "(for uint8 images divide by 255 first)")
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean) / std


# --------------------------------------------------------------------------------------------- network
class Bottleneck(nn.Module):
    """torchvision's bottleneck block: ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``.

    Args:
        inplanes: input channels; planes: inner width (output ``EXPANSION * planes`` channels).
        stride: of ``conv2`` (3 x 3) and of the shortcut.
        downsample: the shortcut (``Sequential(conv 1 x 1, BN)``) or None for the identity.
    Shapes: [B, inplanes, H, W] -> [B, 4 planes, ceil(H / stride), ceil(W / stride)].
    """

    expansion = EXPANSION

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def _features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature path shared by both builds: [B, 3, H, W] -> [B, 2048] (no ``fc``)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"ResNet-50 takes images [B, 3, H, W], got {shape}")
    if min(x.shape[-2:]) < 32:
        raise ValueError(f"ResNet-50 needs images of at least 32 x 32 pixels (output stride 32), got "
                         f"{x.shape[-2]} x {x.shape[-1]}")
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(net.fc, nn.Linear):
        raise ValueError("this ResNet-50 has no classifier: build it with resnet50(num_classes=...)")
    return net.fc(_features(net, x))


class ResNet50(nn.Module):
    """ResNet-50 in plain torch, named and initialised as torchvision's (see the module doc).

    Args:
        num_classes: give ``fc = Linear(2048, num_classes)`` (1000 for the ImageNet files), used only by
            :meth:`logits`; None (default): ``fc`` is a parameter-free ``Identity`` and the state dict
            has no ``fc.*`` entries.
    """

    def __init__(self, num_classes: int | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (blocks, width) in enumerate(zip(LAYERS, WIDTHS), 1):
            stride = 1 if i == 1 else 2
            down = nn.Sequential(nn.Conv2d(inplanes, width * EXPANSION, kernel_size=1, stride=stride, bias=False),
                                 nn.BatchNorm2d(width * EXPANSION))
            layer = [Bottleneck(inplanes, width, stride, down)]
            layer += [Bottleneck(width * EXPANSION, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            inplanes = width * EXPANSION
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(FEATURE_DIM, num_classes) if num_classes is not None else nn.Identity()
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features.

        Args:
            x: [B, 3, H, W] ImageNet-normalised RGB (:func:`normalise`), H, W >= 32.
        Returns:
            [B, 2048] layer4's output (after its ReLU, hence >= 0) averaged over its H/32 x W/32 positions.
        """
        return _features(self, x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, num_classes] classifier scores ``fc(forward(x))`` (ValueError without a classifier)."""
        return _logits(self, x)


_TORCHVISION_CLASS: type | None = None


def _torchvision_class() -> type | None:
    """A subclass of torchvision's ``ResNet`` with fitlib's forward, or None when torchvision does not import."""
    global _TORCHVISION_CLASS
    if _TORCHVISION_CLASS is None:
        try:
            from torchvision.models.resnet import Bottleneck as TVBottleneck
            from torchvision.models.resnet import ResNet as TVResNet
        except Exception as exc:  # noqa: BLE001 - not installed, a stand-in module, or a build for another torch
            log.debug("torchvision does not import (%s): using fitlib's ResNet50", exc)
            return None

        class TorchvisionResNet50(TVResNet):
            """torchvision's ``resnet50(weights=None)`` (its own modules and initialisation) whose ``forward``
            returns the pooled [B, 2048] features; ``fc`` is an ``Identity`` unless ``num_classes`` is given
            (the classifier is then used only by :meth:`logits`)."""

            def __init__(self, num_classes: int | None = None) -> None:
                super().__init__(TVBottleneck, list(LAYERS), num_classes=1000 if num_classes is None else num_classes)
                if num_classes is None:
                    self.fc = nn.Identity()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return _features(self, x)

            def logits(self, x: torch.Tensor) -> torch.Tensor:
                return _logits(self, x)

        _TORCHVISION_CLASS = TorchvisionResNet50
    return _TORCHVISION_CLASS


def resnet50(num_classes: int | None = None) -> nn.Module:
    """The backbone fitlib uses: torchvision's ResNet-50 (randomly initialised, ``weights=None``) when
    torchvision imports, else :class:`ResNet50`. Either way ``forward(x [B, 3, H, W]) -> [B, 2048]``
    (see :meth:`ResNet50.forward`), ``logits`` for the classifier, and the same state dict names and shapes.

    The network is not wrapped in another module (that would prefix every name) and the classifier is
    replaced by a parameter-free ``Identity`` when ``num_classes`` is None, so the names stay torchvision's
    and an ImageNet file loads with :func:`load_backbone_weights` (its ``fc.*`` skipped).

    Args:
        num_classes: keep a ``Linear(2048, num_classes)`` classifier ``fc`` (1000 for ImageNet files).
    """
    cls = _torchvision_class()
    return cls(num_classes) if cls is not None else ResNet50(num_classes)


# --------------------------------------------------------------------------------------------- weights
def _torch_error(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"it names {found.group(1)}, which is not a tensor or a plain value; fitlib reads weight files "
                "with torch.load(weights_only=True), which runs no code from the file")
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if found:
        return f"it holds something other than tensors and plain values ({found.group(1).strip()})"
    line = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def load_weights_file(path: str | os.PathLike, *, what: str = "weights file", max_bytes: int = MAX_BYTES) -> Any:
    """The content of a torch weight file, read with ``torch.load(map_location="cpu", weights_only=True)``
    (tensors, plain containers and numbers only: a file naming any function or class is refused before
    anything of it runs).

    Args:
        path: a regular file (FIFOs, devices and folders are refused without blocking), at most ``max_bytes``.
        what: how error messages call the file.
    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not a regular file, too large, or not a readable torch file.
    """
    from fitlib.io.safe_load import read_regular_file

    raw = read_regular_file(path, max_bytes=max_bytes, what=what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's remarks on pickle protocols: the outcome is what counts
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - only torch's restricted unpickler ran: any error is a bad file
        raise ValueError(f"{what} {path} is not a readable torch weights file: {_torch_error(exc)}") from None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict in what a weight file holds: ``obj`` itself when it maps names to tensors, else its
    ``"model"`` or ``"state_dict"`` entry (SPIN's and common training checkpoints), with a ``module.`` prefix
    (``DataParallel``) on every name removed. ValueError naming ``source`` otherwise."""
    sd = obj
    if not _is_state_dict(sd) and isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if _is_state_dict(obj.get(key)):
                sd = obj[key]
                break
    if not _is_state_dict(sd):
        keys = sorted(map(str, obj))[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{source} holds no state dict (a dict of names to tensors, itself or under 'model' "
                         f"or 'state_dict'); it holds {keys}")
    sd = dict(sd)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _first(keys: list[str], n: int = 5) -> str:
    return f"{keys[:n]}{f' (and {len(keys) - n} more)' if len(keys) > n else ''}"


def load_backbone_weights(module: nn.Module, path_or_state_dict: str | os.PathLike | Mapping[str, torch.Tensor],
                          prefix: str = "") -> None:
    """Load ResNet-50 weights by name into ``module`` (a :func:`resnet50` backbone), in place.

    Accepted: torchvision's ImageNet files (``resnet50-0676ba61.pth``, ``resnet50-19c8e357.pth``: names as
    in the module doc plus ``fc.*``), SPIN's checkpoints (``model_checkpoint.pt``: the backbone at the top
    level of its ``"model"`` entry, beside the regressor head), a fitlib regressor's state dict with
    ``prefix="encoder.backbone."``, or such a state dict given directly. Files are read by
    :func:`load_weights_file` (weights only, regular files up to :data:`MAX_BYTES`).

    Names are taken from the file's state dict (``state_dict_of``: a ``"model"`` / ``"state_dict"`` entry,
    ``module.`` removed), then only those starting with ``prefix`` (prefix removed) when one is given.
    Skipped: ``fc.*`` when ``module`` has no classifier, and SPIN's head (``fc1``, ``fc2``, ``decpose``,
    ``decshape``, ``deccam``, ``init_pose``, ``init_shape``, ``init_cam``). BatchNorm's
    ``num_batches_tracked`` may be absent (files older than torch 0.4.1) and then stays as it is. Values are
    cast to the module's dtypes and devices.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file (or "state dict") and the first few keys: missing, unexpected or of
            another shape than the module's, non-finite values, no state dict in the file; nothing is
            loaded then.
    """
    if isinstance(path_or_state_dict, Mapping):
        source, obj = "state dict", path_or_state_dict
    else:
        source = f"backbone weights file {path_or_state_dict}"
        obj = load_weights_file(path_or_state_dict, what="backbone weights file")
    sd = state_dict_of(obj, source)
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise ValueError(f"{source}: no weights under prefix {prefix!r}")
    expected = module.state_dict()
    has_fc = any(k.startswith("fc.") for k in expected)

    def skipped(k: str) -> bool:
        return (not has_fc and k.startswith("fc.")) or k.startswith(_SPIN_HEAD_PREFIXES) or k in _SPIN_HEAD_BUFFERS

    missing = [k for k in expected if k not in sd and not k.endswith(".num_batches_tracked")]
    unexpected = sorted(k for k in sd if k not in expected and not skipped(k))
    shapes = [f"{k}: {tuple(sd[k].shape)} in the file, {tuple(v.shape)} in the backbone"
              for k, v in expected.items() if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = ([f"missing {_first(missing)}"] if missing else []) \
            + ([f"unexpected {_first(unexpected)}"] if unexpected else []) \
            + ([f"shape mismatch {_first(shapes, 3)}"] if shapes else [])
        hint = ""
        under = sorted({k[:-len("conv1.weight")] for k in unexpected if k.endswith("conv1.weight")
                        and k[:-len("conv1.weight")] + "bn1.weight" in sd}, key=len)
        if missing and under and not prefix:
            hint = f" (the backbone's weights seem to be under {under[0]!r}: pass prefix={under[0]!r})"
        raise ValueError(f"{source}: weights do not fit the ResNet-50 backbone: " + "; ".join(parts) + hint)
    bad = [k for k in expected if k in sd and sd[k].is_floating_point() and not torch.isfinite(sd[k]).all()]
    if bad:
        raise ValueError(f"{source}: damaged weights (non-finite values in {_first(bad)})")
    result = module.load_state_dict({k: sd[k] for k in expected if k in sd}, strict=False)
    left = [k for k in result.missing_keys if not k.endswith(".num_batches_tracked")]
    if left or result.unexpected_keys:  # cannot happen after the checks above
        raise ValueError(f"{source}: could not load {_first(left + list(result.unexpected_keys))}")
