"""fit_video end to end on a short real clip (tests/data/sports2d_clip.webm: two people, the sports2d demo
video at 480x270, tests/data/LICENSES.md) with the open model and the bundled detector; the same frames as
arrays; the saved outputs; the warm-start modes on one person's tracked keypoints."""
import json

import numpy as np
import pytest

import fitlib
from fitlib.interop.amass import read_amass_npz
from fitlib.video import read_video
from fitlib.video.fit import VideoResult

N = 5


@pytest.fixture(scope="module")
def clip_result(open_model, data_dir) -> VideoResult:
    return fitlib.fit_video(data_dir / "sports2d_clip.webm", max_frames=N)


def test_two_people_tracked_and_fitted(clip_result):
    r = clip_result
    assert len(r) == N
    np.testing.assert_allclose(r.times, np.arange(N) / 15.0, atol=1e-3)  # the clip is 15 fps
    assert [f.index for f in read_video(r.source, max_frames=N)] == r.frame_indices.tolist()
    assert all(len(ids) == 2 for ids in r.track_ids)
    assert len(r.tracks) == 2 and all(len(t) == N for t in r.tracks.values())
    first = {tid: r.frames[0].keypoints[i, :, 0].mean() for i, tid in enumerate(r.track_ids[0])}
    for res, ids in zip(r.frames, r.track_ids):  # each id stays with the same side of the image
        for i, tid in enumerate(ids):
            assert abs(res.keypoints[i, :, 0].mean() - first[tid]) < 60
        assert res.fitted.all()
        assert np.nanmax(res.reprojection_error) < 25  # px on a 480x270 frame
    assert all(np.isfinite(res.boxes).all() and ((res.scores > 0) & (res.scores <= 1)).all() for res in r.frames)
    for tr in r.tracks.values():
        assert tr.poses.shape == (N, 72) and tr.trans.shape == (N, 3) and tr.betas.shape == (10,)
        for k in range(N):  # one shape per track, in every frame's result
            np.testing.assert_allclose(r.frames[tr.frames[k]].betas[tr.rows[k]], tr.betas, atol=1e-6)
        assert (tr.trans[:, 2] > 0.5).all()  # in front of the camera


def test_save_writes_readable_outputs(clip_result, tmp_path):
    summary = clip_result.save(tmp_path)
    data = json.loads((tmp_path / "video.json").read_text())
    assert data == json.loads(json.dumps(summary)) and len(data["frames"]) == N and len(data["tracks"]) == 2
    res = fitlib.FitResult.load(tmp_path / data["frames"][2]["file"])
    assert res.provenance["video"]["track_ids"] == clip_result.track_ids[2].tolist()
    track = read_amass_npz(tmp_path / data["tracks"][0]["file"])
    assert track["poses"].shape == (N, 72) and float(track["mocap_framerate"]) == pytest.approx(15.0)
    bvh = (tmp_path / data["tracks"][0]["bvh"]).read_text()
    assert bvh.startswith("HIERARCHY\nROOT pelvis") and f"Frames: {N}\n" in bvh
    overlay = list(read_video(tmp_path / data["overlay"]))
    assert len(overlay) == N and overlay[0].image.shape[:2] == (270, 480)
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_frames_as_arrays_with_keypoints(clip_result):
    """The decoded frames as arrays with the detections as keypoints give the same tracks; without fps: error."""
    frames = [f.image for f in read_video(clip_result.source, max_frames=3)]
    kps = [clip_result.frames[k].keypoints for k in range(3)]
    r = fitlib.fit_video(frames, kps, fps=15.0, warm="scratch", smoothing="none", track_betas=False)
    assert [ids.tolist() for ids in r.track_ids] == [ids.tolist() for ids in clip_result.track_ids[:3]]
    assert all(f.fitted.all() for f in r.frames)
    with pytest.raises(ValueError, match="fps"):
        fitlib.fit_video(frames, kps)
    with pytest.raises(ValueError, match="keypoints are given for 2 frames"):
        fitlib.fit_video(frames, kps[:2], fps=15.0)


def test_unreadable_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2000))
    with pytest.raises(ValueError, match="cannot decode video"):
        fitlib.fit_video(bad)
