"""OpenPose keypoint JSON (``--write_json``): one file per image or video frame.

A file holds ``{"version": ..., "people": [{"person_id": [...], "pose_keypoints_2d": [x0, y0, c0, x1, y1,
c1, ...], "face_keypoints_2d": [...], "hand_left_keypoints_2d": [...], ...}, ...]}``. fitlib reads the body
part, ``pose_keypoints_2d``: 75 numbers for the BODY_25 model (layout ``"body25"``, the default model) or 54
for the 18-point COCO model (layout ``"openpose18"``); face and hand points are ignored. Coordinates are
pixels as OpenPose writes them; a point OpenPose did not find has confidence 0 (its x, y are then 0 and
meaningless). Confidences above 1 are clipped to 1; negative ones are an error.

File names: OpenPose names a file ``<image stem>_keypoints.json`` (images) or
``<video stem>_<12-digit frame>_keypoints.json`` (videos); :func:`read_openpose_folder` orders a folder by the
last number in each name (the frame), then by name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fitlib.detection.keypoints import Keypoints, keypoint_boxes
from fitlib.interop._common import frame_number, is_whole, number_list, read_json

MAX_OPENPOSE_FILE_BYTES = 64 * 2**20
"""Largest OpenPose JSON file read (bytes): a frame with 1,000 people and face and hands is about 2 MB."""

MAX_FOLDER_FILES = 10_000_000
"""Most JSON files :func:`read_openpose_folder` lists in one folder."""

_LAYOUTS = {75: "body25", 54: "openpose18"}


@dataclass
class OpenPoseFrame:
    """The people of one OpenPose JSON file.

    Attributes:
        keypoints: [P, J, 3] float64, x px, y px, confidence in [0, 1] (0: not found), in ``layout``.
        layout: ``"body25"`` (BODY_25, J = 25) or ``"openpose18"`` (OpenPose's COCO model, J = 18).
        person_ids: [P] int64, OpenPose's ``person_id`` (-1 where it has none, as OpenPose writes it).
        source: the file read, or ``"<data>"`` for parsed JSON.
        name: the file's stem without OpenPose's ``_keypoints`` suffix (the image or video frame name).
        frame: the last number in the file name (OpenPose's frame counter for videos), or None.
    """

    keypoints: np.ndarray
    layout: str = "body25"
    person_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source: str = "<data>"
    name: str = ""
    frame: int | None = None

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def to_keypoints(self, image_size: tuple[int, int] | None = None) -> Keypoints:
        """The people as fitlib :class:`~fitlib.Keypoints` (what ``fitlib.fit`` takes): boxes [P, 4] xyxy px around
        the points found, scores [P] the mean confidence of the points found (0 for a person with none)."""
        conf = self.keypoints[..., 2]
        found = conf > 0
        scores = np.where(found.any(1), (conf * found).sum(1) / np.maximum(found.sum(1), 1), 0.0)
        return Keypoints(self.keypoints, keypoint_boxes(self.keypoints), scores, self.layout, image_size)


def is_openpose(data: Any) -> bool:
    """Whether parsed JSON ``data`` is meant as an OpenPose file: an object with a ``people`` entry (which
    mmpose's and fitlib's own structures never have). It may still be broken: :func:`read_openpose` says how."""
    return isinstance(data, dict) and "people" in data and not ({"predictions", "instance_info", "layout"} & set(data))


def read_openpose(path: str | os.PathLike | dict, *, max_bytes: int = MAX_OPENPOSE_FILE_BYTES) -> OpenPoseFrame:
    """Read one OpenPose JSON file (or its parsed content, a dict).

    Args:
        path: the ``*_keypoints.json`` file, or the dict ``json.load`` gave for one.
        max_bytes: refuse larger files, before reading them.
    Returns:
        :class:`OpenPoseFrame` with keypoints [P, 25, 3] (``body25``) or [P, 18, 3] (``openpose18``).
    Raises:
        FileNotFoundError: no such file.
        ValueError naming the file and the field: not a regular file, too large, not UTF-8 JSON (NaN and
            Infinity literals included), no ``people`` list, a person without ``pose_keypoints_2d`` or with
            a count other than 75 / 54, non-numbers or non-finite numbers, negative confidences, people of
            different models in one file, a ``person_id`` that is not a whole number.
    """
    if isinstance(path, dict):
        data, source, name = path, "<data>", ""
    else:
        data = read_json(path, max_bytes=max_bytes, what="OpenPose file")
        source, name = str(path), Path(path).stem
    if name.endswith("_keypoints"):
        name = name[: -len("_keypoints")]
    frame = frame_number(name) if name else None
    where = f"OpenPose file {source}"
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with 'people', got a {type(data).__name__}")
    people = data.get("people")
    if not isinstance(people, list):
        raise ValueError(f"{where}: 'people' must be a list of people, got "
                         f"{'nothing' if people is None else type(people).__name__}")
    rows, ids, count = [], [], None
    for i, person in enumerate(people):
        field_ = f"{where}: people[{i}]"
        if not isinstance(person, dict):
            raise ValueError(f"{field_} must be an object, got {type(person).__name__}")
        if "pose_keypoints_2d" not in person:
            raise ValueError(f"{field_} has no 'pose_keypoints_2d' (OpenPose's body keypoints)")
        flat = person["pose_keypoints_2d"]
        if not isinstance(flat, list) or len(flat) not in _LAYOUTS:
            got = f"{len(flat)} numbers" if isinstance(flat, list) else type(flat).__name__
            raise ValueError(f"{field_}.pose_keypoints_2d must hold 75 numbers (BODY_25: 25 x, y, confidence "
                             f"triples) or 54 (the 18-point COCO model), got {got}")
        if count is not None and len(flat) != count:
            raise ValueError(f"{field_}.pose_keypoints_2d has {len(flat)} numbers but people[0] has {count}: "
                             "all people of one file come from one OpenPose model")
        count = len(flat)
        kp = number_list(flat, f"{field_}.pose_keypoints_2d").reshape(-1, 3)
        if np.any(kp[:, 2] < 0):
            raise ValueError(f"{field_}.pose_keypoints_2d has a negative confidence "
                             f"(point {int(np.flatnonzero(kp[:, 2] < 0)[0])})")
        kp[:, 2] = np.minimum(kp[:, 2], 1.0)
        rows.append(kp)
        pid = person.get("person_id", -1)
        if isinstance(pid, list):
            pid = pid[0] if len(pid) == 1 else -1 if not pid else pid
        if not is_whole(pid):
            raise ValueError(f"{field_}.person_id must be a whole number (or [number]), got {pid!r:.40}")
        ids.append(int(pid))
    layout = _LAYOUTS[count] if count is not None else "body25"
    J = 25 if layout == "body25" else 18
    keypoints = np.stack(rows) if rows else np.zeros((0, J, 3))
    return OpenPoseFrame(keypoints, layout, np.array(ids, dtype=np.int64), source, name, frame)


def list_openpose_files(folder: str | os.PathLike) -> list[Path]:
    """The ``*.json`` files of ``folder`` (not recursive; hidden files left out), ordered by frame: the last
    number in each name, then the name. ValueError for a missing folder, a file, or no JSON files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"OpenPose folder {folder} is not a folder" if folder.exists()
                         else f"OpenPose folder {folder} does not exist")
    files = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                files.append(Path(entry.path))
                if len(files) > MAX_FOLDER_FILES:
                    raise ValueError(f"OpenPose folder {folder} holds more than {MAX_FOLDER_FILES} JSON files")
    if not files:
        raise ValueError(f"OpenPose folder {folder} holds no .json files")

    def key(p: Path):
        stem = p.stem[: -len("_keypoints")] if p.stem.endswith("_keypoints") else p.stem
        n = frame_number(stem)
        return (n is None, n if n is not None else 0, p.name)

    return sorted(files, key=key)


def read_openpose_folder(folder: str | os.PathLike, *, max_bytes: int = MAX_OPENPOSE_FILE_BYTES) -> list[OpenPoseFrame]:
    """Read every OpenPose JSON file of a folder (one per frame), in frame order (:func:`list_openpose_files`).

    Raises ValueError naming the first file that cannot be read (see :func:`read_openpose`); to go on past
    bad files, loop over :func:`list_openpose_files` and call :func:`read_openpose` per file.
    """
    return [read_openpose(p, max_bytes=max_bytes) for p in list_openpose_files(folder)]
