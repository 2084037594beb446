"""Exporting a store to training files, its statistics and histogram, and the label commands."""
import cv2
import numpy as np
import pytest

from fitlib.cli import main
from fitlib.labels import LabelStore, items, run_label_job
from fitlib.labels.export import export_store, store_stats


@pytest.fixture(scope="module")
def store(label_set, tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "s.sqlite"
    run_label_job(items([label_set]), path, progress=False)
    return path


def _valid(store):
    with LabelStore(store) as st:
        return list(st.labels(valid_only=True))


def test_spin_export_holds_the_stored_fits(store, tmp_path):
    path, n = export_store(store, tmp_path / "spin.npz", "spin")
    labs = _valid(store)
    assert n == len(labs) > 0
    with np.load(path, allow_pickle=False) as d:
        assert d["pose"].shape == (n, 72) and d["part"].shape == (n, 24, 3) and d["scale"].shape == (n,)
        has = d["has_smpl"].astype(bool)
        np.testing.assert_allclose(d["pose"][has], np.stack([lab.pose for lab in labs])[has], atol=1e-6)
        assert list(d["imgname"]) == [f"{lab.dataset}/{lab.item}" for lab in labs]
        assert has.tolist() == [lab.has_smpl for lab in labs]


def test_npz_and_humandata_exports(store, tmp_path):
    path, n = export_store(store, tmp_path / "all.npz", "npz", valid_only=False)
    with np.load(path, allow_pickle=False) as d:
        assert len(d["key"]) == n == store_stats(store)["labels"]
        assert d["keypoints"].shape == (n, 17, 3) and str(d["body_model"]) == "open"
    path, m = export_store(store, tmp_path / "hd.npz", "humandata")
    assert m == len(_valid(store)) and path.stat().st_size > 0
    with pytest.raises(ValueError, match="unknown export format"):
        export_store(store, tmp_path / "x.npz", "csv")


def test_stats_and_histogram_commands(store, tmp_path, capsys):
    png = tmp_path / "hist.png"
    assert main(["labels", "stats", str(store), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    st = store_stats(store)
    assert f"{st['labels']} labels: {st['valid']} valid" in out and "round 0:" in out
    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] == 800 and (img < 250).any()
    assert main(["labels", "export", str(store), "--format", "spin", "--out", str(tmp_path / "s.npz")]) == 0


def test_label_command_exit_status(tmp_path, data_dir, capsys):
    assert main(["label", str(data_dir / "messi5.jpg"), "--store", str(tmp_path / "a.sqlite"), "--quiet"]) == 0
    assert "1 items done" in capsys.readouterr().out
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert main(["label", str(tmp_path / "bad.jpg"), "--store", str(tmp_path / "a.sqlite"), "--quiet"]) == 1
    assert "failed: " in capsys.readouterr().out
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 100)
    assert main(["label", str(data_dir / "messi5.jpg"), "--store", str(tmp_path / "junk.sqlite"), "--quiet"]) == 2
    assert "not a fitlib label store" in capsys.readouterr().err
