"""Keypoint inputs of other tools, recognised by content: what ``fitlib.fit(image, keypoints)`` and
``fitlib fit IMAGE --keypoints FILE`` accept besides arrays, :class:`~fitlib.Keypoints` and mmpose output."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fitlib.detection.keypoints import Keypoints
from fitlib.interop._common import read_json
from fitlib.interop.coco_annotations import MAX_COCO_FILE_BYTES, coco_image, is_coco_annotations, read_coco_keypoints
from fitlib.interop.openpose import is_openpose, read_openpose


def foreign_keypoints(obj: Any, *, image: str | os.PathLike | None = None,
                      source: str | None = None) -> Keypoints | None:
    """The people of an OpenPose JSON frame or a COCO keypoint annotation file, else None.

    Args:
        obj: a path to a ``.json`` file, or parsed JSON (a dict). Anything else gives None.
        image: the image the keypoints belong to: picks its entry from a COCO annotation file holding several
            images (by ``file_name``, see :func:`fitlib.interop.coco_annotations.coco_image`).
        source: how errors name parsed data (default: the path, or ``"<data>"``).
    Returns:
        :class:`~fitlib.Keypoints`: ``body25`` (or ``openpose18``) for OpenPose, ``coco17`` for COCO; None when
        ``obj`` is neither (e.g. mmpose output, which :func:`fitlib.detection.keypoints_from_mmpose` reads).
    Raises:
        ValueError: the file or data is OpenPose / COCO but broken (naming the file and the field), a
            ``.json`` path that cannot be read, or a COCO file of several images without ``image``.
    """
    path = None
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.suffix.lower() != ".json" or not path.is_file():
            return None
        obj = read_json(path, max_bytes=MAX_COCO_FILE_BYTES, what="keypoint file")
    if not isinstance(obj, dict):
        return None
    name = source or (str(path) if path is not None else "<data>")
    if is_openpose(obj):
        try:
            return read_openpose(obj).to_keypoints()
        except ValueError as exc:
            raise ValueError(str(exc).replace("<data>", name, 1)) from None
    if is_coco_annotations(obj):
        try:
            images = read_coco_keypoints(obj)
        except ValueError as exc:
            raise ValueError(str(exc).replace("<data>", name, 1)) from None
        if image is None:
            if len(images) != 1:
                raise ValueError(f"the COCO annotations {name} hold {len(images)} images: name the image (e.g. "
                                 "fitlib fit IMAGE --keypoints FILE), or read them with "
                                 "fitlib.interop.read_coco_keypoints and pass one image's .to_keypoints()")
            return images[0].to_keypoints()
        return coco_image(images, image, f"the COCO annotations {name}").to_keypoints()
    return None
