"""COCO keypoint annotation JSON (``person_keypoints_*.json``) into per-image keypoints.

The file holds ``images`` (``id``, ``file_name``, ``width``, ``height``) and ``annotations`` (``id``,
``image_id``, ``keypoints``: 17 x, y, v triples in COCO's order, ``num_keypoints``, ``bbox`` [x, y, w, h] px,
``iscrowd``, ``category_id``). Visibility v = 0: not labelled (fitlib: missing, confidence 0); v = 1
(labelled, occluded) and v = 2 (labelled, visible): confidence 1. Layout ``"coco17"``, the same order.

Left out: crowd annotations (``iscrowd`` = 1: a region of many people, without keypoints) and annotations
without any labelled keypoint (``num_keypoints`` = 0, or every v = 0). Every image is returned, also those
left with nobody, so that a label job can count them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fitlib.detection.keypoints import Keypoints
from fitlib.interop._common import is_whole, number_list, read_json

MAX_COCO_FILE_BYTES = 512 * 2**20
"""Largest annotation file read (bytes): COCO 2017's ``person_keypoints_train2017.json`` is 238 MB."""


@dataclass
class CocoImage:
    """One image of a COCO keypoint annotation file and its annotated people.

    Attributes:
        file_name: the image's ``file_name`` (relative to the image folder, as COCO gives it).
        image_id: the image's ``id``.
        width, height: image size in pixels (None where the file does not give them).
        annotation_ids: [P] int64, the ``id`` of each person's annotation.
        keypoints: [P, 17, 3] float64, x px, y px, confidence (1 labelled, 0 not labelled), ``coco17``.
        boxes: [P, 4] float64, COCO's ``bbox``: x, y (top left), width, height in pixels.
    """

    file_name: str
    image_id: int
    width: int | None
    height: int | None
    annotation_ids: np.ndarray
    keypoints: np.ndarray
    boxes: np.ndarray

    layout = "coco17"

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @property
    def boxes_xyxy(self) -> np.ndarray:
        """[P, 4] boxes as x1, y1, x2, y2 pixels."""
        return np.concatenate([self.boxes[:, :2], self.boxes[:, :2] + self.boxes[:, 2:]], axis=1)

    def to_keypoints(self) -> Keypoints:
        """The people as fitlib :class:`~fitlib.Keypoints` (boxes xyxy, scores 1: annotations)."""
        size = (self.height, self.width) if self.width and self.height else None
        return Keypoints(self.keypoints, self.boxes_xyxy, np.ones(len(self)), "coco17", size)


def is_coco_annotations(data: Any) -> bool:
    """Whether parsed JSON ``data`` looks like a COCO annotation file (an object with ``images`` and
    ``annotations`` lists)."""
    return isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)


def _whole(value: Any, where: str, *, minimum: int | None = None) -> int:
    if not is_whole(value):
        raise ValueError(f"{where} must be a whole number, got {value!r:.40}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{where} must be at least {minimum}, got {value}")
    return value


def read_coco_keypoints(path: str | os.PathLike | dict, *, max_bytes: int = MAX_COCO_FILE_BYTES) -> list[CocoImage]:
    """Read a COCO keypoint annotation file (or its parsed content) into one :class:`CocoImage` per image.

    Args:
        path: the annotation JSON file, or the dict ``json.load`` gave for one.
        max_bytes: refuse larger files, before reading them.
    Returns:
        The images in the file's order, each with its people in the file's order (crowd annotations and
        annotations with ``num_keypoints`` 0 left out, see the module doc).
    Raises:
        FileNotFoundError: no such file.
        ValueError naming the file and the field (e.g. ``annotations[3].keypoints``): not a regular file, too
            large, not UTF-8 JSON (NaN / Infinity literals included), missing ``images`` / ``annotations``, an
            image without a whole ``id`` or a text ``file_name``, a repeated image id, an annotation of an
            unknown image, keypoints that are not 51 finite numbers, a visibility other than 0, 1, 2, a bbox
            that is not 4 finite numbers with width and height >= 0.
    """
    if isinstance(path, dict):
        data, source = path, "<data>"
    else:
        data, source = read_json(path, max_bytes=max_bytes, what="COCO annotation file"), str(path)
    where = f"COCO annotation file {source}"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with 'images' and 'annotations', got a "
                         f"{type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{where}: '{key}' must be a list, got "
                             f"{'nothing' if key not in data else type(data[key]).__name__}")
    images: dict[int, dict] = {}
    order: list[int] = []
    for i, img in enumerate(data["images"]):
        f = f"{where}: images[{i}]"
        if not isinstance(img, dict):
            raise ValueError(f"{f} must be an object, got {type(img).__name__}")
        image_id = _whole(img.get("id"), f"{f}.id")
        if image_id in images:
            raise ValueError(f"{f}.id {image_id} is repeated (image ids must be unique)")
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{f}.file_name must be the image's file name (text), got {name!r:.40}")
        size = []
        for key in ("width", "height"):
            v = img.get(key)
            size.append(None if v is None else _whole(v, f"{f}.{key}", minimum=1))
        images[image_id] = {"file_name": name, "width": size[0], "height": size[1], "ids": [], "kps": [], "boxes": []}
        order.append(image_id)
    for i, ann in enumerate(data["annotations"]):
        f = f"{where}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise ValueError(f"{f} must be an object, got {type(ann).__name__}")
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1) or isinstance(iscrowd, bool):
            raise ValueError(f"{f}.iscrowd must be 0 or 1, got {iscrowd!r:.40}")
        image_id = _whole(ann.get("image_id"), f"{f}.image_id")
        if image_id not in images:
            raise ValueError(f"{f}.image_id {image_id} names no image of 'images'")
        if iscrowd:
            continue
        if "keypoints" not in ann:
            raise ValueError(f"{f} has no 'keypoints' (17 x, y, visibility triples)")
        kp = number_list(ann["keypoints"], f"{f}.keypoints", 51).reshape(17, 3)
        v = kp[:, 2]
        if not np.isin(v, (0, 1, 2)).all():
            raise ValueError(f"{f}.keypoints: visibility must be 0, 1 or 2, got {v[~np.isin(v, (0, 1, 2))][0]:g}")
        num = ann.get("num_keypoints")
        if num is not None:
            num = _whole(num, f"{f}.num_keypoints", minimum=0)
        if num == 0 or not (v > 0).any():
            continue
        ann_id = _whole(ann.get("id"), f"{f}.id")
        if "bbox" in ann:
            box = number_list(ann["bbox"], f"{f}.bbox", 4)
            if box[2] < 0 or box[3] < 0:
                raise ValueError(f"{f}.bbox must be x, y, width, height with width and height >= 0, got {box.tolist()}")
        else:
            pts = kp[v > 0, :2]
            box = np.concatenate([pts.min(0), pts.max(0) - pts.min(0)])
        out = images[image_id]
        out["ids"].append(ann_id)
        out["kps"].append(np.concatenate([kp[:, :2], (v > 0)[:, None].astype(np.float64)], axis=1))
        out["boxes"].append(box)
    result = []
    for image_id in order:
        img = images[image_id]
        result.append(CocoImage(
            file_name=img["file_name"], image_id=image_id, width=img["width"], height=img["height"],
            annotation_ids=np.array(img["ids"], dtype=np.int64),
            keypoints=np.stack(img["kps"]) if img["kps"] else np.zeros((0, 17, 3)),
            boxes=np.stack(img["boxes"]) if img["boxes"] else np.zeros((0, 4))))
    return result


def coco_image(images: list[CocoImage], image: str | os.PathLike, source: str = "COCO annotations") -> CocoImage:
    """The entry of ``images`` for an image file: the one whose ``file_name`` is ``image``'s path as given, else
    the only one with the same base name; ValueError when none or several match."""
    given = os.fspath(image)
    exact = [im for im in images if im.file_name == given]
    if len(exact) == 1:
        return exact[0]
    base = Path(given).name
    named = [im for im in images if Path(im.file_name).name == base]
    if len(named) == 1:
        return named[0]
    if not named:
        raise ValueError(f"{source} hold no image named {base!r} ({len(images)} images)")
    raise ValueError(f"{source} hold {len(named)} images named {base!r}: give the path as the file's "
                     "file_name says")

