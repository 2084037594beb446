"""What a label job runs over: sources turned into :class:`Item`s (an image, a video frame or a keypoint
sample, with the people on it), lazily and in a stable order.

A SOURCE of ``fitlib label`` is one of:

* an image file or a folder of images (recursive; item: the path relative to the folder);
* a video file (every ``every``-th frame; item: ``<file name>#<frame index>``; frames are decoded by the job's
  driver and shipped to the workers);
* a keypoint file: COCO keypoint annotations (``images`` + ``annotations``; the images are looked up beside
  the file or in ``images_dir``; a person's key is its annotation id), an OpenPose JSON file or a folder of
  them (``people[].pose_keypoints_2d``, BODY_25; the image size from an image of the same stem in
  ``images_dir`` / beside the file, or ``image_size``), or a saved mmpose / fitlib detection JSON (one image,
  the image of the same stem);
* a 3DPW-format set (a folder with ``sequenceFiles/<split>/*.pkl``; keypoints from its ``poses2d``,
  intrinsics from the file, no image needed; item: ``<sequence>/<frame>``, person: the actor index).

An item whose source cannot be read still becomes an :class:`Item` with ``error`` set: the job counts and
reports it and goes on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from fitlib.io.images import IMAGE_SUFFIXES, load_image

@dataclass
class Item:
    """One image / frame / keypoint sample of a source, with its people.

    Attributes:
        dataset: the source's name (a folder's or file's name, or ``3dpw/<sequence>``).
        item: the stable name of the sample within its dataset.
        image_path: the image to read (and to detect people on when ``keypoints`` is None), or None.
        image: a decoded RGB uint8 image (video frames), or None.
        keypoints: [P, J, 3] (x px, y px, confidence) in ``layout``, or None: detect.
        layout: keypoint layout name.
        person_ids: P stable person names (annotation ids); default ``"0"``, ``"1"``, ... in keypoint order.
        K: [3, 3] intrinsics (pixels), or None: the default for the image size.
        image_size: (height, width) px; needed when there is no image.
        error: why the sample cannot be used (the job reports it; nothing is fitted).
    """

    dataset: str
    item: str
    image_path: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    keypoints: np.ndarray | None = field(default=None, repr=False)
    layout: str = "coco17"
    person_ids: list[str] | None = None
    K: np.ndarray | None = field(default=None, repr=False)
    image_size: tuple[int, int] | None = None
    error: str | None = None


def _image_size_of(path: Path) -> tuple[int, int]:
    return tuple(load_image(path).shape[:2])  # type: ignore[return-value]


def _find_image(stem: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for suffix in IMAGE_SUFFIXES:
            for cand in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
                if cand.is_file():
                    return cand
    return None


def image_folder_items(folder: Path) -> Iterator[Item]:
    """Every image under ``folder`` (recursive, sorted), detected by the job."""
    name = folder.resolve().name
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        yield Item(name, path.relative_to(folder).as_posix(), image_path=str(path))


def video_items(path: Path, every: int = 1) -> Iterator[Item]:
    """Every ``every``-th frame of a video, decoded here (:func:`fitlib.video.decode.read_video`)."""
    from fitlib.video.decode import read_video

    try:
        for frame in read_video(path, every):
            yield Item(path.name, f"{path.name}#{frame.index:06d}", image=frame.image)
    except (OSError, ValueError) as exc:
        yield Item(path.name, f"{path.name}#?", error=str(exc))


def threedpw_items(root: Path, split: str | None = None) -> Iterator[Item]:
    """Every frame of a 3DPW-format set with at least one person in view: the people's ``poses2d`` (COCO-17),
    the sequence's intrinsics; no image."""
    from fitlib.datasets.threedpw import load_sequence_file, openpose18_to_coco17

    base = root / "sequenceFiles"
    splits = [split] if split else sorted(p.name for p in base.iterdir() if p.is_dir())
    for sp in splits:
        for path in sorted((base / sp).glob("*.pkl")):
            try:
                data = load_sequence_file(path)
            except (OSError, ValueError) as exc:
                yield Item(f"3dpw/{path.stem}", "?", error=str(exc))
                continue
            name = str(data["sequence"])
            K = np.asarray(data["cam_intrinsics"], dtype=np.float64)
            size = (int(round(2 * K[1, 2])), int(round(2 * K[0, 2])))
            people = [openpose18_to_coco17(np.asarray(p, dtype=np.float64).transpose(0, 2, 1)) for p in data["poses2d"]]
            valid = [np.asarray(v).astype(bool).reshape(-1) for v in data["campose_valid"]]
            T = min(len(p) for p in people)
            for t in range(T):
                ids = [i for i in range(len(people)) if t < len(valid[i]) and valid[i][t]]
                if not ids:
                    continue
                yield Item(f"3dpw/{name}", f"{t:05d}", keypoints=np.stack([people[i][t] for i in ids]),
                           person_ids=[str(i) for i in ids], K=K, image_size=size)


def coco_items(path: Path, images_dir: Path | None) -> Iterator[Item]:
    """Every image of a COCO keypoint annotation file with annotated people (person key: annotation id)."""
    from fitlib.interop.coco_annotations import read_coco_keypoints

    try:
        images = read_coco_keypoints(path)
    except (OSError, ValueError) as exc:
        yield Item(path.stem, "?", error=str(exc))
        return
    folders = [images_dir] if images_dir else [path.parent, path.parent / "images"]
    for im in images:
        if not len(im.keypoints):
            continue
        img = next((f / im.file_name for f in folders if (f / im.file_name).is_file()), None)
        size = (int(im.height), int(im.width)) if im.height and im.width else None
        yield Item(path.stem, im.file_name, image_path=None if img is None else str(img), keypoints=im.keypoints,
                   person_ids=[str(a) for a in im.annotation_ids], image_size=size,
                   error=None if (img is not None or size is not None) else
                   f"image {im.file_name} not found in {[str(f) for f in folders]} and the file gives no size")


def openpose_items(path: Path, images_dir: Path | None, image_size: tuple[int, int] | None) -> Iterator[Item]:
    """One item per OpenPose JSON file (a file, or a folder of ``*.json``), BODY_25 keypoints."""
    from fitlib.interop.openpose import list_openpose_files, read_openpose

    files = list_openpose_files(path) if path.is_dir() else [path]  # in frame order
    dataset = (path if path.is_dir() else path.parent).resolve().name
    for f in files:
        stem = f.stem.removesuffix("_keypoints")
        try:
            frame = read_openpose(f)
        except (OSError, ValueError) as exc:
            yield Item(dataset, f.name, error=str(exc))
            continue
        img = _find_image(stem, [images_dir] if images_dir else [f.parent])
        yield Item(dataset, f.name, image_path=None if img is None else str(img), keypoints=frame.keypoints,
                   layout=frame.layout, image_size=image_size,
                   error=None if (img is not None or image_size is not None) else
                   f"no image named {stem}.* beside {f.name} and no --image-size")


def mmpose_items(path: Path, images_dir: Path | None) -> Iterator[Item]:
    """A saved mmpose (or ``fitlib detect``) JSON of one image, with the image of the same stem."""
    from fitlib.detection import keypoints_from_mmpose

    try:
        kp = keypoints_from_mmpose(path)
    except (OSError, ValueError) as exc:
        yield Item(path.parent.name, path.name, error=str(exc))
        return
    img = _find_image(path.stem, [images_dir] if images_dir else [path.parent])
    size = kp.image_size if getattr(kp, "image_size", None) else None
    yield Item(path.parent.resolve().name, path.name, image_path=None if img is None else str(img),
               keypoints=np.asarray(kp.keypoints, dtype=np.float64), layout=kp.layout,
               image_size=None if size is None else tuple(size),
               error=None if (img is not None or size is not None) else f"no image named {path.stem}.* for {path.name}")


def _json_kind(path: Path) -> str:
    """``coco``, ``openpose`` or ``mmpose`` from a JSON file's content (ValueError: not JSON, too large)."""
    from fitlib.interop import is_coco_annotations, is_openpose
    from fitlib.interop._common import read_json
    from fitlib.interop.coco_annotations import MAX_COCO_FILE_BYTES

    data = read_json(path, max_bytes=MAX_COCO_FILE_BYTES, what="keypoint file")
    return "coco" if is_coco_annotations(data) else "openpose" if is_openpose(data) else "mmpose"


def items(sources: list[str | os.PathLike], *, every: int = 1, images_dir: str | os.PathLike | None = None,
          image_size: tuple[int, int] | None = None, split: str | None = None) -> Iterator[Item]:
    """The items of every source, in order (see the module doc for what a source may be).

    Args:
        sources: paths.
        every: keep every n-th video frame.
        images_dir: where keypoint files' images are (default: beside the file).
        image_size: (height, width) of OpenPose keypoint files without images.
        split: the 3DPW split to read (default: all).
    Raises:
        FileNotFoundError: a source does not exist. (Sources that exist but cannot be read become items with
        ``error`` set.)
    """
    from fitlib.video.decode import VIDEO_SUFFIXES

    imgs = Path(images_dir) if images_dir else None
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise FileNotFoundError(f"label source not found: {path}")
        if path.is_dir() and (path / "sequenceFiles").is_dir():
            yield from threedpw_items(path, split)
        elif path.is_dir() and any(path.glob("*.json")) and not any(
                p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            yield from openpose_items(path, imgs, image_size)
        elif path.is_dir():
            yield from image_folder_items(path)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            yield from video_items(path, every)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            yield Item(path.parent.resolve().name, path.name, image_path=str(path))
        elif path.suffix.lower() == ".json":
            try:
                kind = _json_kind(path)
            except ValueError as exc:
                yield Item(path.parent.resolve().name, path.name, error=str(exc))
                continue
            if kind == "coco":
                yield from coco_items(path, imgs)
            elif kind == "openpose":
                yield from openpose_items(path, imgs, image_size)
            else:
                yield from mmpose_items(path, imgs)
        else:
            yield Item(path.parent.resolve().name, path.name,
                       error=f"not a label source (an image, a video, a keypoint JSON or a 3DPW-format folder): {path}")
