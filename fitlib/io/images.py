"""Loading and saving images: one helper each that every part of fitlib uses.

Images in fitlib are ``numpy`` arrays of shape ``(H, W, 3)``, dtype ``uint8``,
channels in **RGB** order (not OpenCV's BGR). Pixel coordinates are
``(x, y)`` = (column, row) with the centre of the top-left pixel at ``(0, 0)``.

Image files are untrusted input: only regular files are read (a FIFO named ``a.jpg`` is refused
without blocking), and the pixel count is read from the file's header (PNG, JPEG, BMP, WebP, TIFF,
PNM) and checked against a limit *before* decoding, so that a small file claiming 20000 x 20000
pixels never allocates gigabytes.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from fitlib.io.atomic import atomic_write
from fitlib.io.safe_load import read_regular_file

ImageLike = Union[str, os.PathLike, np.ndarray]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes fitlib treats as images when it looks through folders (``fitlib fit``, label sources)."""

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width x height) :func:`load_image` decodes by default: 50 megapixels (150 MB as RGB)."""

MAX_IMAGE_FILE_BYTES = 1 << 30
"""Largest image file read (bytes)."""


def load_image(image: ImageLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load an image file or normalise an array to ``(H, W, 3)`` uint8 RGB.

    Args:
        image: a path to an image file (anything OpenCV decodes: JPEG, PNG,
            BMP, TIFF, WebP...; EXIF orientation is applied, 16-bit files are
            scaled to 8 bits, grayscale is repeated to 3 channels, an alpha
            channel is dropped), or a ``uint8`` array of shape ``(H, W)``
            (grayscale), ``(H, W, 1)``, ``(H, W, 3)`` (RGB) or ``(H, W, 4)``
            (RGBA; alpha is dropped).
        max_pixels: refuse image files with more pixels (width x height) than this, checked on the
            file's header before decoding (for formats whose header fitlib does not read, after
            decoding, within OpenCV's own limit of 2^30 pixels); None for no limit. Arrays are
            not limited (they are already in memory).

    Returns:
        A C-contiguous ``(H, W, 3)`` uint8 RGB array (a new array; the input
        is never modified).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty, not a regular file, larger than ``max_pixels``, or not a
            decodable image, or the array has a wrong dtype, shape or zero size.
    """
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image), max_pixels)
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


def _too_large(path: Path, width: int, height: int, max_pixels: int) -> ValueError:
    return ValueError(f"image file {path} is {width}x{height} px ({width * height / 1e6:.0f} megapixels), more "
                      f"than the limit of {max_pixels / 1e6:g} megapixels: raise it with "
                      "fitlib.load_image(path, max_pixels=...) and pass the array, or `fitlib fit --max-pixels`")


def _read_file(path: Path, max_pixels: int | None) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise ValueError(f"image path is a directory, not a file: {path}")
    data = read_regular_file(path, max_bytes=MAX_IMAGE_FILE_BYTES, what="image file")
    if not data:
        raise ValueError(f"image file is empty (0 bytes): {path}")
    size = header_size(data)
    if max_pixels is not None and size is not None and size[0] * size[1] > max_pixels:
        raise _too_large(path, size[0], size[1], max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB: one copy less
    decoded = cv2.imdecode(buf, rgb_flag) if rgb_flag is not None else cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None or decoded.size == 0:
        raise ValueError(f"cannot decode image file (corrupt or unsupported format): {path}")
    if max_pixels is not None and decoded.shape[0] * decoded.shape[1] > max_pixels:
        raise _too_large(path, decoded.shape[1], decoded.shape[0], max_pixels)
    return decoded if rgb_flag is not None else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels read from an image file's header without decoding it (PNG, JPEG, BMP,
    WebP, TIFF, PNM; TIFF: the first page), or None for other formats or a header that cannot be parsed."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:2] == b"BM":
            header = struct.unpack("<I", data[14:18])[0]
            if header == 12:  # OS/2 BITMAPCOREHEADER
                w, h = struct.unpack("<HH", data[18:22])
            else:
                w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
            return _pnm_size(data)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L":
        b = data[21:25]
        w = 1 + (b[0] | (b[1] & 0x3F) << 8)
        h = 1 + (b[1] >> 6 | b[2] << 2 | (b[3] & 0x0F) << 10)
        return w, h
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[offset:offset + 2])[0]
    found: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k: offset + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), entry[8:10] if kind == 3 else entry[8:12])[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens: list[int] = []
    i = 2
    while len(tokens) < 2 and i < min(len(data), 4096):
        c = data[i:i + 1]
        if c == b"#":
            while i < len(data) and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isdigit():
            j = i
            while j < len(data) and data[j:j + 1].isdigit():
                j += 1
            tokens.append(int(data[i:j]))
            i = j
            continue
        elif not c.isspace():
            return None
        i += 1
    return (tokens[0], tokens[1]) if len(tokens) == 2 else None


def save_image(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image to ``path`` (format by suffix: .png, .jpg, ...), atomically
    (:func:`fitlib.io.atomic_write`): the image is encoded in memory first, so a failed encode or a full
    disk leaves no file, never a partial one.

    Raises:
        ValueError: not an RGB uint8 image, or a format OpenCV cannot encode.
        OSError: as the file system raises it (e.g. ``ENOSPC``).
    """
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"save_image takes an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error as exc:
        raise ValueError(f"cannot encode an image as {path.suffix!r}: {exc}") from None
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {path.suffix!r} for {path}")
    with atomic_write(path) as fh:
        fh.write(encoded.tobytes())
    return path
