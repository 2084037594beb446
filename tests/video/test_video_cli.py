"""``fitlib fit VIDEO --out DIR``: fits the clip, resumes (skips a done video), fits a folder holding only a
video, reports an unreadable one with status 1."""
import json
import shutil

from fitlib.cli import main


def test_fit_video_file_then_resume(open_model, data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    clip = data_dir / "sports2d_clip.webm"
    assert main(["fit", str(clip), "--out", str(out), "--max-frames", "3", "--every", "2"]) == 0
    folder = out / "sports2d_clip"
    summary = json.loads((folder / "video.json").read_text())
    assert [f["index"] for f in summary["frames"]] == [0, 2, 4]
    assert len(summary["tracks"]) == 2 and (folder / summary["overlay"]).is_file()
    assert "3 frames, 2 tracks" in capsys.readouterr().out
    assert main(["fit", str(clip), "--out", str(out), "--max-frames", "3", "--every", "2"]) == 0
    assert "already fitted" in capsys.readouterr().out
    (folder / summary["tracks"][0]["file"]).unlink()  # an incomplete result is made again
    assert main(["fit", str(clip), "--out", str(out), "--max-frames", "3", "--every", "2", "--no-overlay"]) == 0
    assert (folder / summary["tracks"][0]["file"]).is_file()


def test_folder_with_only_a_video_and_a_broken_one(open_model, data_dir, tmp_path, capsys):
    src = tmp_path / "clips"
    src.mkdir()
    shutil.copy(data_dir / "sports2d_clip.webm", src / "a.webm")
    (src / "b.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    status = main(["fit", str(src), "--out", str(out), "--max-frames", "2", "--no-overlay"])
    captured = capsys.readouterr()
    assert status == 1
    assert "a.webm: 2 frames" in captured.out
    assert "b.mp4" in captured.err and "cannot decode video" in captured.err
    assert (out / "a" / "video.json").is_file() and not (out / "b" / "video.json").exists()
