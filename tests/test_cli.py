"""``fitlib fit`` / ``detect`` / ``build-model``: done only when written, resumes by settings, messages instead
of tracebacks (an existing file as --out, a folder as detect --out, a full disk, Ctrl-C, a missing mmpose
config, an empty folder, a FIFO), two runs on one folder at once.

Most tests replace the optimiser by a stand-in returning one real fit of messi5.jpg (``fake_fit``): they test
the command, not the fitter."""
import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import fitlib
from fitlib.cli import main
from fitlib.result import FitResult, config_hash

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def messi_fit():
    return fitlib.fit(DATA / "messi5.jpg", config="fast")


@pytest.fixture
def fake_fit(monkeypatch, messi_fit):
    """``fitlib.api.fit_batch`` replaced by a stand-in that returns the messi5 fit for every image; ``calls``
    lists the images of each call, ``interrupt_at`` raises KeyboardInterrupt at that call number."""
    from fitlib import api

    state = {"calls": [], "interrupt_at": None}

    def fit_batch(images, keypoints=None, *, config=None, model="open", **kw):
        state["calls"].append((len(images), config))
        if state["interrupt_at"] == len(state["calls"]):
            raise KeyboardInterrupt
        return [dataclasses.replace(messi_fit, provenance={}, outputs={}) for _ in images]

    monkeypatch.setattr(api, "fit_batch", fit_batch)
    return state


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(DATA / "messi5.jpg", images / name)
    return images


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_results_record_settings_and_outputs(folder, tmp_path, fake_fit):
    from fitlib.body.model import model_identity

    out = tmp_path / "out"
    assert main(["fit", str(folder), "--out", str(out), "--batch-images", "2"]) == 0
    data = json.loads((out / "a.json").read_text())
    assert data["provenance"]["config_hash"] == config_hash(None)
    assert data["provenance"]["body_model"] == model_identity("open") and data["provenance"]["keypoints"] == "detector"
    assert data["outputs"] == {"mesh_format": "obj", "mesh_frame": "world", "meshes": ["a_meshes/person_0.obj"],
                               "overlay": "a_overlay.png"}
    assert (out / "a_meshes" / "person_0.obj").is_file() and (out / "a_overlay.png").stat().st_size > 1000
    assert [n for n, _ in fake_fit["calls"]] == [2, 1] and _no_temporaries(out)


def test_resume_redoes_what_differs(folder, tmp_path, fake_fit, capsys):
    """Same settings: nothing is redone. Another mesh format: meshes and overlay from the saved fit, no refit.
    Another config: refitted. A result of the previous schema (no settings recorded): refitted."""
    out = tmp_path / "out"
    assert main(["fit", str(folder), "--out", str(out)]) == 0
    assert len(fake_fit["calls"]) == 1
    first = (out / "b.json").read_text()
    capsys.readouterr()
    assert main(["fit", str(folder), "--out", str(out)]) == 0
    assert len(fake_fit["calls"]) == 1 and "3 of 3 images already fitted" in capsys.readouterr().out
    assert (out / "b.json").read_text() == first
    assert main(["fit", str(folder), "--out", str(out), "--mesh-format", "ply"]) == 0
    assert len(fake_fit["calls"]) == 1 and "outputs completed from the previous fit" in capsys.readouterr().out
    assert json.loads((out / "b.json").read_text())["outputs"]["meshes"] == ["b_meshes/person_0.ply"]
    assert (out / "b_meshes" / "person_0.ply").is_file()
    (out / "c_overlay.png").unlink()  # an output lost: completed, not refitted
    assert main(["fit", str(folder), "--out", str(out), "--mesh-format", "ply"]) == 0
    assert len(fake_fit["calls"]) == 1 and (out / "c_overlay.png").is_file()
    assert main(["fit", str(folder), "--out", str(out), "--mesh-format", "ply", "--config", "fast"]) == 0
    assert fake_fit["calls"][-1] == (3, "fast")
    assert json.loads((out / "a.json").read_text())["provenance"]["config_hash"] == config_hash("fast")
    old = json.loads((out / "a.json").read_text())
    v1 = {k: v for k, v in old.items() if k not in ("schema", "schema_version", "people", "provenance", "outputs")}
    (out / "a.json").write_text(json.dumps(v1))
    assert FitResult.load(out / "a.json").provenance["config_hash"] is None
    assert main(["fit", str(folder), "--out", str(out), "--mesh-format", "ply", "--config", "fast"]) == 0
    assert fake_fit["calls"][-1] == (1, "fast")


@pytest.mark.parametrize("target", ["overlay", "mesh"])
def test_full_disk_is_reported_and_nothing_is_marked_done(folder, tmp_path, fake_fit, monkeypatch, capsys, target):
    """The disk fills up while the overlay (or a mesh) is written: the image is not marked done, the run stops
    with status 1 and says why, no partial or temporary file is left; the next run fits it."""
    from fitlib import result as result_module
    from fitlib.io import images

    module = images if target == "overlay" else result_module
    real = module.atomic_write

    def full(path):
        if (target == "overlay") == path.name.endswith("_overlay.png"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path)

    monkeypatch.setattr(module, "atomic_write", full)
    out = tmp_path / "out"
    assert main(["fit", str(folder), "--out", str(out), "--batch-images", "1"]) == 1
    err = capsys.readouterr().err
    assert "could not write the outputs of a.jpg" in err and "No space left on device" in err
    assert "stopped: the disk of" in err and "Traceback" not in err
    assert not list(out.glob("*.json")) and not (out / "a_overlay.png").exists() and _no_temporaries(out)
    assert len(fake_fit["calls"]) == 1  # it stopped: b and c were not fitted into a full disk
    monkeypatch.setattr(module, "atomic_write", real)
    assert main(["fit", str(folder), "--out", str(out), "--batch-images", "1"]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "b.json", "c.json"]


def test_an_overlay_that_cannot_be_encoded_is_not_done(folder, tmp_path, fake_fit, monkeypatch, capsys):
    """What cv2.imwrite's unchecked False used to hide: the image is reported and not marked done."""
    import cv2

    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    out = tmp_path / "out"
    assert main(["fit", str(folder / "a.jpg"), "--out", str(out)]) == 1
    assert "could not write the outputs of a.jpg" in capsys.readouterr().err
    assert not (out / "a.json").exists()


def test_ctrl_c_exits_quietly_with_a_summary(folder, tmp_path, fake_fit, capsys):
    out = tmp_path / "out"
    fake_fit["interrupt_at"] = 2
    assert main(["fit", str(folder), "--out", str(out), "--batch-images", "1"]) == 130
    err = capsys.readouterr().err
    assert "interrupted: 1 of 3 images done" in err and "run the same command again to resume" in err
    assert "Traceback" not in err and _no_temporaries(out)
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json"]
    fake_fit["interrupt_at"] = None
    assert main(["fit", str(folder), "--out", str(out), "--batch-images", "1"]) == 0
    assert "1 of 3 images already fitted" in capsys.readouterr().out


def test_empty_folder_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(SystemExit, match="no images to fit in") as exit_info:
        main(["fit", str(empty), "--out", str(tmp_path / "out")])
    assert exit_info.value.code != 0


def test_fifo_in_the_folder_is_skipped(folder, tmp_path, fake_fit, capsys):
    os.mkfifo(folder / "d.jpg")
    codes = []
    run = threading.Thread(target=lambda: codes.append(main(["fit", str(folder), "--out", str(tmp_path / "out")])),
                           daemon=True)
    run.start()
    run.join(120)
    assert not run.is_alive(), "the run hangs on a FIFO"
    assert codes == [1] and "skipped d.jpg: not a regular file" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.json")) == ["a.json", "b.json", "c.json"]
    assert main(["fit", str(folder / "d.jpg"), "--out", str(tmp_path / "out2")]) == 1  # given by name
    assert "FIFO" in capsys.readouterr().err


def test_out_naming_a_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("{}")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        main(["fit", str(DATA / "messi5.jpg"), "--out", str(target)])


def test_detect_out_naming_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit, match="is a folder; give the JSON file to write"):
        main(["detect", str(DATA / "messi5.jpg"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["detect", str(DATA / "messi5.jpg"), "--out", str(tmp_path / "missing" / "kp.json")])
    assert main(["detect", str(DATA / "messi5.jpg"), "--out", str(tmp_path / "kp.json")]) == 0
    assert json.loads((tmp_path / "kp.json").read_text())["layout"] == "coco17" and _no_temporaries(tmp_path)


def test_missing_mmpose_config(tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"")
    with pytest.raises(SystemExit, match="mmpose config .*missing.py does not exist"):
        main(["detect", str(DATA / "messi5.jpg"), "--backend", "mmpose", "--config", str(tmp_path / "missing.py"),
              "--checkpoint", str(checkpoint)])


def test_errors_are_messages(tmp_path, capsys):
    assert main(["fit", str(DATA / "messi5.jpg"), "--out", str(tmp_path / "o"), "--model", "missing.pkl"]) == 2
    assert "fitlib: error: body model 'missing.pkl'" in capsys.readouterr().err
    bad = tmp_path / "kp.json"
    bad.write_text("{not json")
    assert main(["fit", str(DATA / "messi5.jpg"), "--out", str(tmp_path / "o"), "--keypoints", str(bad)]) == 2
    assert "is not JSON" in capsys.readouterr().err
    assert main(["fit", str(DATA / "messi5.jpg"), "--out", str(tmp_path / "o"), "--max-pixels", "1000"]) == 1
    assert "more than the limit of 0.001 megapixels" in capsys.readouterr().err


def test_build_model_checks_the_cache_folder_first(tmp_path, monkeypatch, capsys):
    from fitlib.body import open_model

    blocker = tmp_path / "ro"
    blocker.mkdir()
    monkeypatch.setenv("FITLIB_CACHE_DIR", str(blocker))
    monkeypatch.setattr(open_model, "check_cache_writable",
                        lambda folder: (_ for _ in ()).throw(ValueError(f"{folder} is not writable; set FITLIB_CACHE_DIR")))
    monkeypatch.setattr(open_model, "build_open_model", lambda *a, **k: pytest.fail("built before the check"))
    assert main(["build-model"]) == 2
    assert "set FITLIB_CACHE_DIR" in capsys.readouterr().err


def test_two_runs_on_one_folder_at_once(folder, tmp_path):
    """Two ``fitlib fit`` processes on the same folder and output folder: both finish with status 0, every
    result loads, no temporary file is left (they wrote with temporary files of their own)."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "fitlib.cli", "fit", str(folder), "--out", str(out), "--config", "fast",
           "--batch-images", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    for name in ("a", "b", "c"):
        result = FitResult.load(out / f"{name}.json")
        assert result.fitted.all() and (out / f"{name}_overlay.png").is_file()
    assert _no_temporaries(out)


def test_a_chunk_holds_a_bounded_number_of_pixels(folder, tmp_path, fake_fit, monkeypatch):
    """--batch-images 16, but a chunk closes once its decoded images reach CHUNK_PIXELS."""
    from fitlib import cli

    monkeypatch.setattr(cli, "CHUNK_PIXELS", 2 * 342 * 548)  # two messi5.jpg
    assert main(["fit", str(folder), "--out", str(tmp_path / "out")]) == 0
    assert [n for n, _ in fake_fit["calls"]] == [2, 1]


def test_subfolders_are_fitted_and_mirrored(tmp_path, fake_fit):
    """FOLDER/x.jpg and FOLDER/sub/x.jpg share a stem but not a path: both are fitted, their outputs under
    --out/sub/... as the folder has them; an --out inside the folder is not searched."""
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    for rel in ("x.jpg", "sub/x.jpg", "sub/deeper/y.png"):
        shutil.copy(DATA / "messi5.jpg", root / rel)
    out = root / "out"
    assert main(["fit", str(root), "--out", str(out)]) == 0
    for name in ("x", "sub/x", "sub/deeper/y"):
        result = FitResult.load(out / f"{name}.json")
        stem = Path(name).name
        assert result.outputs["overlay"] == f"{stem}_overlay.png"  # relative to the result's folder
        assert (out / name).with_name(f"{stem}_meshes").joinpath("person_0.obj").is_file()
    assert sum(n for n, _ in fake_fit["calls"]) == 3
    assert main(["fit", str(root), "--out", str(out)]) == 0  # its own overlays are not new images
    assert sum(n for n, _ in fake_fit["calls"]) == 3


def test_outputs_can_be_left_out_and_results_written_as_npz(folder, tmp_path, fake_fit, capsys):
    out = tmp_path / "out"
    assert main(["fit", str(folder), "--out", str(out), "--no-meshes", "--no-overlay", "--result-format", "npz"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz", "c.npz"]
    assert FitResult.load(out / "a.npz").outputs == {}
    capsys.readouterr()
    assert main(["fit", str(folder), "--out", str(out), "--no-meshes", "--no-overlay", "--result-format", "npz"]) == 0
    assert "3 of 3 images already fitted" in capsys.readouterr().out and len(fake_fit["calls"]) == 1
    assert main(["fit", str(folder), "--out", str(out), "--no-meshes", "--result-format", "npz"]) == 0
    assert len(fake_fit["calls"]) == 1 and (out / "a_overlay.png").is_file()  # completed from the saved fits


def test_overlay_has_the_side_view_unless_asked_not_to(folder, tmp_path, fake_fit, messi_fit):
    from fitlib.io.images import load_image

    h, w = messi_fit.image_size
    assert main(["fit", str(folder / "a.jpg"), "--out", str(tmp_path / "o1")]) == 0
    assert load_image(tmp_path / "o1" / "a_overlay.png").shape == (h, 2 * w, 3)
    assert main(["fit", str(folder / "a.jpg"), "--out", str(tmp_path / "o2"), "--no-side-view"]) == 0
    assert load_image(tmp_path / "o2" / "a_overlay.png").shape == (h, w, 3)


def test_version_and_device(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"fitlib {fitlib.__version__}"
    assert main(["fit", str(DATA / "messi5.jpg"), "--out", str(tmp_path / "o"), "--device", "tpu9"]) == 2
    assert "unknown torch device 'tpu9'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_tflite_delegate_line_on_stderr(tmp_path):
    """The BlazePose runtime's 'Created TensorFlow Lite XNNPACK delegate' line is not printed."""
    run = subprocess.run([sys.executable, "-m", "fitlib.cli", "detect", str(DATA / "messi5.jpg")],
                         capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert run.returncode == 0 and json.loads(run.stdout)["layout"] == "coco17"
    assert "XNNPACK" not in run.stderr and "TensorFlow Lite" not in run.stderr


def test_fit_with_a_regressor_starts_from_it_and_records_it(tmp_path, capsys):
    """``--regressor``: an image regressor (random weights here) starts the real fit; the result records the
    checkpoint, and a run without it refits instead of skipping."""
    import torch

    from fitlib.regression.checkpoint import save_regressor
    from fitlib.regression.model import Regressor

    torch.manual_seed(0)
    ckpt = save_regressor(tmp_path / "img.pt", Regressor({"encoder": "image", "image_size": 64, "camera": "spin"}))
    out = tmp_path / "out"
    args = ["fit", str(DATA / "messi5.jpg"), "--out", str(out), "--no-meshes", "--no-overlay", "--config", "fast"]
    assert main(args + ["--regressor", str(ckpt)]) == 0
    res = FitResult.load(out / "messi5.json")
    assert res.fitted.all() and len(res.provenance["init_regressor"]) == 64
    capsys.readouterr()
    assert main(args + ["--regressor", str(ckpt)]) == 0 and "already fitted" in capsys.readouterr().out
    assert main(args) == 0 and "already fitted" not in capsys.readouterr().out
