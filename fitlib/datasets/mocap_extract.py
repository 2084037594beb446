"""Extract the offline mocap from the pybullet and holosoma-retargeting wheels into priors/mocap_poses.npz
(``fitlib extract-mocap``).

Only the data folders are read from the wheels (zip files); the wheels are not installed.

    fitlib extract-mocap --pybullet-wheel /tmp/whl/pybullet-3.2.7-*.whl \\
        --holosoma-wheel /tmp/whl/holosoma_retargeting-0.1.0-py3-none-any.whl --out priors/mocap_poses.npz

Without a wheel path, the wheel is fetched with ``pip download --no-deps`` into a temporary folder.
The output holds, per clip ``<name>``: ``<name>/poses`` [T, 72] float32 SMPL axis-angle (radians),
``<name>/transl`` [T, 3] float32 pelvis position (metres, y up), ``<name>/fps`` and
``<name>/source``. See priors/DATA.md and fitlib.datasets.mocap for conventions and splits.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from fitlib.datasets import mocap

PYBULLET = "pybullet==3.2.7"
HOLOSOMA = "holosoma-retargeting==0.1.0"
HOLOSOMA_STEP = 3
"""Keep every 3rd holosoma frame (30 fps -> 10 fps): neighbouring frames are near duplicates."""


def wheel(path: str | None, requirement: str, tmp: Path) -> Path:
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"wheel {path} not found")
        return Path(path)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp), requirement], check=True)
    name = requirement.split("==")[0].replace("-", "_")
    return next(tmp.glob(f"{name}-*.whl"))


def extract(pybullet_wheel: Path, holosoma_wheel: Path) -> dict[str, np.ndarray]:
    """Convert every clip of both wheels; returns the arrays to store (see module docstring)."""
    out: dict[str, np.ndarray] = {}

    def put(name: str, clip: mocap.MocapClip) -> None:
        out[f"{name}/poses"] = clip.poses.astype(np.float32)
        out[f"{name}/transl"] = clip.transl.astype(np.float32)
        out[f"{name}/fps"] = np.float32(clip.fps)
        out[f"{name}/source"] = np.array(clip.source)

    with zipfile.ZipFile(pybullet_wheel) as z:
        for name in mocap.DEEPMIMIC_CLIPS:
            data = json.loads(z.read(f"pybullet_data/data/motions/humanoid3d_{name}.txt"))
            frames = np.asarray(data["Frames"], dtype=np.float64)
            poses, transl = mocap.deepmimic_to_smpl(frames)
            fps = float(1.0 / np.median(frames[:-1, 0]))
            put(name, mocap.MocapClip(poses, transl, fps, "deepmimic", mocap.LICENCES["deepmimic"]))
    with zipfile.ZipFile(holosoma_wheel) as z:
        files = z.namelist()
        for name in mocap.HOLOSOMA_CLIPS:
            prefix = f"holosoma_retargeting/demo_data/climb/mocap_{name}/mocap_{name}_joint_positions_"
            (member,) = [f for f in files if f.startswith(prefix) and f.endswith(".npy")]
            positions = np.load(io.BytesIO(z.read(member)))[::HOLOSOMA_STEP]
            poses, transl = mocap.holosoma_to_smpl(positions)
            put(name, mocap.MocapClip(poses, transl, mocap.HOLOSOMA_FPS / HOLOSOMA_STEP, "holosoma",
                                      mocap.LICENCES["holosoma"]))
    return out
