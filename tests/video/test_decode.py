"""Decoding and encoding videos: real timestamps (also of a variable-rate file), every n-th frame, arrays with
an fps, corrupt and truncated files, the overlay writer's browser-playable output."""
import os

import cv2
import numpy as np
import pytest

from fitlib.video.decode import frames_from_arrays, read_video, video_info, write_video


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames whose mean brightness encodes their number (robust to lossy coding)."""
    return [np.full((h, w, 3), 10 + 20 * i, np.uint8) for i in range(n)]


def _number(img: np.ndarray) -> int:
    return int(round((float(img.mean()) - 10) / 20))


def test_reads_every_frame_with_timestamps(tmp_path):
    path = write_video(tmp_path / "clip.mp4", _frames(12), fps=8.0)
    assert path.is_file() and path.suffix in (".mp4", ".webm")
    info = video_info(path)
    assert info.width == 64 and info.height == 48 and info.fps == pytest.approx(8.0)
    frames = list(read_video(path))
    assert [f.index for f in frames] == list(range(12))
    assert [_number(f.image) for f in frames] == list(range(12))
    np.testing.assert_allclose([f.time for f in frames], np.arange(12) / 8.0, atol=1e-3)
    sub = list(read_video(path, every=3, start=1, max_frames=3))
    assert [f.index for f in sub] == [1, 4, 7]
    np.testing.assert_allclose([f.time for f in sub], [1 / 8, 4 / 8, 7 / 8], atol=1e-3)
    assert [_number(f.image) for f in sub] == [1, 4, 7]


def test_skipped_frames_keep_their_own_timestamps(tmp_path):
    """Reading every n-th frame gives each kept frame the time the stream gives it when read in full (the
    stream's timestamps, not a count of kept frames)."""
    path = write_video(tmp_path / "clip.mp4", _frames(10), fps=10.0)
    times = {f.index: f.time for f in read_video(path)}
    picked = list(read_video(path, every=4))
    assert [(f.index, f.time) for f in picked] == [(i, times[i]) for i in (0, 4, 8)]


def test_arrays_need_fps_and_one_size():
    frames = _frames(5)
    out = list(frames_from_arrays(frames, fps=25.0, every=2))
    assert [f.index for f in out] == [0, 2, 4] and [f.time for f in out] == [0.0, 0.08, 0.16]
    with pytest.raises(ValueError, match="fps"):
        list(frames_from_arrays(frames, fps=None))
    with pytest.raises(ValueError, match="one size"):
        list(frames_from_arrays(frames + [np.zeros((10, 10, 3), np.uint8)], fps=25.0))
    with pytest.raises(ValueError, match="every"):
        list(frames_from_arrays(frames, fps=25.0, every=0))


def test_corrupt_missing_and_truncated_files(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="cannot decode video"):
        list(read_video(bad))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        list(read_video(empty))
    with pytest.raises(FileNotFoundError):
        list(read_video(tmp_path / "none.mp4"))
    with pytest.raises(ValueError, match="regular file"):
        list(read_video(tmp_path))
    good = write_video(tmp_path / "good.mp4", [np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
                                               for _ in range(30)], fps=10.0)
    data = good.read_bytes()
    cut = tmp_path / f"cut{good.suffix}"
    cut.write_bytes(data[: len(data) // 2])
    try:
        frames = list(read_video(cut))
    except ValueError as exc:  # a container whose index is at the end: nothing readable, said clearly
        assert "cannot decode" in str(exc)
    else:
        assert len(frames) < 30


def test_writer_is_atomic_and_checks_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", [], fps=10.0)
    with pytest.raises(ValueError, match="one size"):
        write_video(tmp_path / "mixed.mp4", [np.zeros((48, 64, 3), np.uint8), np.zeros((40, 64, 3), np.uint8)], 10.0)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "x.mp4", _frames(2), fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # failed writes leave nothing behind
    odd = write_video(tmp_path / "odd.mp4", [np.zeros((47, 63, 3), np.uint8)] * 3, fps=5.0)  # padded to even
    cap = cv2.VideoCapture(str(odd))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 64
    cap.release()
