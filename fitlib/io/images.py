"""Loading images: one helper that every part of fitlib uses.

Images in fitlib are ``numpy`` arrays of shape ``(H, W, 3)``, dtype ``uint8``,
channels in **RGB** order (not OpenCV's BGR). Pixel coordinates are
``(x, y)`` = (column, row) with the centre of the top-left pixel at ``(0, 0)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np

ImageLike = Union[str, os.PathLike, np.ndarray]


def load_image(image: ImageLike) -> np.ndarray:
    """Load an image file or normalise an array to ``(H, W, 3)`` uint8 RGB.

    Args:
        image: a path to an image file (anything OpenCV decodes: JPEG, PNG,
            BMP, TIFF, WebP...; EXIF orientation is applied, 16-bit files are
            scaled to 8 bits, grayscale is repeated to 3 channels, an alpha
            channel is dropped), or a ``uint8`` array of shape ``(H, W)``
            (grayscale), ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)``
            (RGBA; alpha is dropped).

    Returns:
        A C-contiguous ``(H, W, 3)`` uint8 RGB array (a new array; the input
        is never modified).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty or not a decodable image, or the array
            has a wrong dtype, shape or zero size.
    """
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image))
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a path or a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"image array must be uint8 (0..255), got dtype {image.dtype}; "
            "convert it first, e.g. (np.clip(img, 0, 1) * 255).astype(np.uint8)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image array must be HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    return np.ascontiguousarray(image[:, :, :3]).copy() if image.shape[2] == 4 else image.copy(order="C")


def _read_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"image path is a directory, not a file: {path}")
    data = np.fromfile(path, dtype=np.uint8)  # handles non-ASCII paths, unlike cv2.imread
    if data.size == 0:
        raise ValueError(f"image file is empty (0 bytes): {path}")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)  # 8-bit, 3 channels, EXIF orientation applied
    if bgr is None or bgr.size == 0:
        raise ValueError(f"cannot decode image file (corrupt or unsupported format): {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
