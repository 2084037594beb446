"""FitResult: save/load round trips, meshes, overlay; the versioned schema and its checks."""
import re
from pathlib import Path

import numpy as np
import pytest

import fitlib
from fitlib.result import FitResult

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def result(data_dir):
    return fitlib.fit(data_dir / "messi5.jpg")


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_load_identical(result, tmp_path, suffix):
    path = result.save(tmp_path / f"r{suffix}")
    back = FitResult.load(path)
    for name in ("pose", "betas", "transl", "K", "keypoints", "joints", "reprojection_error", "fitted"):
        np.testing.assert_array_equal(getattr(back, name), getattr(result, name))
    assert back.layout == result.layout and back.image_size == result.image_size


def test_meshes_and_overlay(result, tmp_path, data_dir, open_model):
    paths = result.export_meshes(tmp_path, fmt="ply")
    assert len(paths) == int(result.fitted.sum()) >= 1
    img = fitlib.load_image(data_dir / "messi5.jpg")
    overlay = result.render_overlay(img)
    assert overlay.shape == img.shape
    assert np.abs(overlay.astype(int) - img.astype(int)).sum() > 0


def test_load_rejects_garbage(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(ValueError, match="lacks"):
        FitResult.load(p)
    with pytest.raises(FileNotFoundError):
        FitResult.load(tmp_path / "missing.npz")
    p.write_text('{"pose": [[0.1, ')  # a truncated file
    with pytest.raises(ValueError, match="not a readable fit result"):
        FitResult.load(p)
    z = tmp_path / "x.npz"
    z.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="not a readable fit result"):
        FitResult.load(z)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_nobody_round_trip_and_geometry(tmp_path, suffix, open_model):
    empty = fitlib.fit(np.full((120, 160, 3), 128, np.uint8))
    assert len(empty) == 0
    back = FitResult.load(empty.save(tmp_path / f"e{suffix}"))
    for name in ("pose", "betas", "transl", "keypoints", "projected", "joints"):
        assert getattr(back, name).shape == getattr(empty, name).shape, name
    assert back.vertices(open_model).shape == (0, open_model.num_vertices, 3)
    assert back.export_meshes(tmp_path / "m", body_model=open_model) == []
    again = fitlib.fit(np.full((120, 160, 3), 128, np.uint8), init=back)  # a video frame after an empty one
    assert len(again) == 0


def test_repr_is_one_short_line(result):
    text = repr(result)
    h, w = result.image_size
    mean = float(np.nanmean(result.reprojection_error[result.fitted]))
    assert text == (f"FitResult({len(result)} {'person' if len(result) == 1 else 'people'}, "
                    f"{int(result.fitted.sum())} fitted, open model, coco17, {w}x{h} px, "
                    f"mean reprojection {mean:.1f} px)")
    empty = fitlib.fit(np.full((120, 160, 3), 128, np.uint8))
    assert repr(empty) == "FitResult(0 people, 0 fitted, open model, coco17, 160x120 px)"


def test_overlay_takes_what_fit_takes(result, data_dir):
    from_path = result.render_overlay(data_dir / "messi5.jpg")
    img = fitlib.load_image(data_dir / "messi5.jpg")
    assert np.array_equal(from_path, result.render_overlay(img))
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], -1)
    assert np.array_equal(result.render_overlay(rgba), from_path)
    with pytest.raises(ValueError, match="fit was made on"):
        result.render_overlay(img[:100])


# ------------------------------------------------------------------------------------------ schema 2
import json  # noqa: E402
import os  # noqa: E402

from fitlib.result import SCHEMA_VERSION, config_hash  # noqa: E402


def _raise(constant):
    raise ValueError(f"not JSON: {constant}")


@pytest.fixture(scope="module")
def with_unfitted(result):
    """The messi5 fit plus a second person who could not be fitted, carrying the fitter's starting values
    (z = 300 m), as the fitter hands them over."""
    def two(a, b):
        return np.concatenate([a, b])

    P1 = lambda a: np.asarray(a)[:1]  # noqa: E731
    start = np.zeros((1, 72))
    return FitResult(two(result.pose, start), two(result.betas, np.zeros((1, 10))),
                     two(result.transl, [[0.0, 0.0, 300.0]]), result.K, result.image_size, result.layout,
                     two(result.keypoints, np.zeros_like(P1(result.keypoints))),
                     two(result.projected, np.full_like(P1(result.projected), 5.0)),
                     two(result.joints, np.ones_like(P1(result.joints))), two(result.reprojection_error, [7.0]),
                     two(result.loss, [1.0]), two(result.converged, [True]), two(result.fitted, [False]))


def test_unfitted_people_have_no_parameters(with_unfitted, tmp_path):
    r = with_unfitted
    for name in ("pose", "betas", "transl", "projected", "joints", "reprojection_error", "loss"):
        assert np.isnan(getattr(r, name)[1]).all(), name  # not the starting values
        assert np.isfinite(getattr(r, name)[0]).all() or name == "projected", name
    assert not r.converged[1] and np.array_equal(r.keypoints[1], np.zeros_like(r.keypoints[1]))  # inputs kept
    text = r.save(tmp_path / "r.json").read_text()
    data = json.loads(text, parse_constant=_raise)  # valid JSON for any parser (JavaScript's JSON.parse too)
    for name in ("pose", "betas", "transl", "projected", "joints", "reprojection_error", "loss"):
        assert data[name][1] is None, name
    assert data["fitted"] == [True, False] and data["people"] == 2 and data["schema_version"] == SCHEMA_VERSION
    back = FitResult.load(tmp_path / "r.json")
    for name in ("pose", "betas", "transl", "joints", "keypoints", "reprojection_error"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name), err_msg=name)
    npz = FitResult.load(r.save(tmp_path / "r.npz"))
    np.testing.assert_array_equal(npz.pose, r.pose)
    assert npz.vertices().shape[0] == 2 and np.isnan(npz.vertices()[1]).all()


def test_provenance(result, tmp_path):
    from fitlib.body.model import model_identity

    data = json.loads(result.save(tmp_path / "r.json").read_text())
    assert data["schema"] == "fitlib.FitResult"
    prov = data["provenance"]
    assert prov["fitlib_version"] and prov["body_model"] == model_identity("open")
    assert FitResult.load(tmp_path / "r.json").provenance["body_model"] == prov["body_model"]
    assert config_hash() == config_hash("default") != config_hash("fast") and len(config_hash()) == 64


def _old_schema(result) -> dict:
    """A result as the previous fitlib wrote it: no schema_version, bare NaN, an unfitted person with its
    starting values."""
    return {"pose": [result.pose[0].tolist(), [0.0] * 72], "betas": [result.betas[0].tolist(), [0.0] * 10],
            "transl": [result.transl[0].tolist(), [0.0, 0.0, 300.0]], "K": result.K.tolist(),
            "image_size": list(result.image_size), "layout": result.layout,
            "keypoints": [result.keypoints[0].tolist(), np.zeros((17, 3)).tolist()],
            "projected": [result.projected[0].tolist(), np.zeros((17, 2)).tolist()],
            "joints": [result.joints[0].tolist(), np.zeros((24, 3)).tolist()],
            "reprojection_error": [float(result.reprojection_error[0]), float("nan")],
            "loss": [float(result.loss[0]), 3.5], "converged": [bool(result.converged[0]), False],
            "fitted": [True, False], "model": "open"}


def test_loads_files_of_the_previous_schema(result, tmp_path):
    old = _old_schema(result)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))  # json.dumps writes bare NaN, as the old save did
    assert "NaN" in path.read_text()
    npz = tmp_path / "old.npz"
    np.savez_compressed(npz, **{k: np.asarray(v) for k, v in old.items()})
    for back in (FitResult.load(path), FitResult.load(npz)):
        np.testing.assert_array_equal(back.pose[0], result.pose[0])
        np.testing.assert_array_equal(back.transl[0], result.transl[0])
        assert np.isnan(back.transl[1]).all() and np.isnan(back.loss[1])  # the starting values are dropped
        assert back.fitted.tolist() == [True, False] and back.layout == "coco17" and back.model == "open"
        assert back.provenance["config_hash"] is None  # unknown for old files


def _mutated(result, tmp_path, change) -> str:
    data = json.loads(json.dumps(result.to_dict()))
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as err:
        FitResult.load(path)
    assert str(err.value).startswith(f"{path} is not a readable fit result")
    return str(err.value)


@pytest.mark.parametrize("change,message", [
    (lambda d: d.update(pose=[[0.1, 0.2, 0.3]]), r"pose must have shape \[1, 72\]: axis 1 has 3 entries"),
    (lambda d: d.update(betas=[[0.0] * 10, [0.0] * 10]), r"betas must have shape \[1, 10\]: axis 0 has 2"),
    (lambda d: d.update(layout="bogus"), "unknown keypoint layout 'bogus'"),
    (lambda d: d.update(fitted=[1]), "fitted must be a list of true/false"),
    (lambda d: d.update(converged="yes"), "converged must be a list of true/false"),
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1), f"schema version {SCHEMA_VERSION + 1} by a newer fitlib"),
    (lambda d: d.update(extra=1), r"unknown entries \['extra'\]"),
    (lambda d: d.update(people=2), "people is 2 but fitted has 1"),
    (lambda d: d.update(K="abc"), "K must have shape"),
    (lambda d: d.update(K=[[1, 0, 0], [0, 1, 0], [0, 0, None]]), "K contains NaN"),
    (lambda d: d.update(image_size=[0, 5]), "image_size must be"),
    (lambda d: d.update(image_size=[1.5, 5]), "image_size must be"),
    (lambda d: d.update(pose=[None]), "person 0 is marked fitted but its pose is not finite"),
    (lambda d: d["transl"][0].__setitem__(0, "x"), "transl must hold numbers"),
    (lambda d: d.update(provenance=[]), "provenance must be a dict"),
    (lambda d: d.pop("joints"), r"lacks \['joints'\]"),
])
def test_validation_on_load(result, tmp_path, change, message):
    assert re.search(message, _mutated(result, tmp_path, change))


def test_nan_literals_are_refused_in_schema_2(result, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(re.sub(r'"loss": \[[^\]]+\]', '"loss": [NaN]', result.save(tmp_path / "ok.json").read_text()))
    assert '"loss": [NaN]' in path.read_text()
    with pytest.raises(ValueError, match="'NaN', which is not JSON"):
        FitResult.load(path)


def test_a_model_named_in_a_result_file_is_not_opened(result, tmp_path, open_model):
    """A result file naming a model file (here one whose unpickling would run a command) does not make
    fitlib open it: meshes and overlays need the model passed explicitly."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "SMPL_NEUTRAL.pkl"
    evil.write_bytes(b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.")
    data = result.to_dict()
    data["model"] = str(evil)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    loaded = FitResult.load(path)
    assert loaded.model_from_file
    for call in (loaded.vertices, lambda: loaded.export_meshes(tmp_path / "m"),
                 lambda: loaded.render_overlay(fitlib.load_image(DATA / "messi5.jpg"))):
        with pytest.raises(ValueError, match="does not open a model file because a result file names it"):
            call()
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to unpickle"):  # named by the caller: the allow-list still holds
        loaded.vertices(body_model=evil)
    assert not marker.exists()
    np.testing.assert_allclose(loaded.vertices(body_model=open_model), result.vertices(open_model))
    assert FitResult.load(result.save(tmp_path / "open.json")).vertices().shape[0] == 1  # "open" is fitlib's own


def test_damaged_npz_results_are_clear_errors(result, tmp_path):
    raw = result.save(tmp_path / "r.npz").read_bytes()
    rng = np.random.default_rng(0)
    for trial in range(40):
        bad = bytearray(raw)
        for at in rng.integers(0, len(bad), size=3):
            bad[at] ^= int(rng.integers(1, 256))
        path = tmp_path / f"bad{trial}.npz"
        path.write_bytes(bytes(bad))
        try:
            back = FitResult.load(path)
        except ValueError as exc:
            assert str(exc).startswith(f"{path} is not a readable fit result")
        else:  # a change the zip CRCs do not cover (e.g. in a local header's date) loads the same numbers
            np.testing.assert_array_equal(back.pose, result.pose)


def test_constructor_checks_types(result):
    kw = {f: getattr(result, f) for f in ("pose", "betas", "transl", "K", "image_size", "layout", "keypoints",
                                          "projected", "joints", "reprojection_error", "loss", "converged", "fitted")}
    with pytest.raises(ValueError, match="K must be numeric"):
        FitResult(**{**kw, "K": "abc"})
    with pytest.raises(ValueError, match="fitted must be a vector of booleans"):
        FitResult(**{**kw, "fitted": np.ones(1)})
    with pytest.raises(ValueError, match="alpha must be a number in"):
        result.render_overlay(DATA / "messi5.jpg", alpha=2)


def test_meshes_are_written_atomically(result, tmp_path, monkeypatch, open_model):
    import errno

    written = []
    real_fsync = os.fsync

    def fsync(fd):
        if written:  # the second file: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(fd)
        real_fsync(fd)

    two = FitResult(*(np.concatenate([getattr(result, f)] * 2) if f not in ("K", "image_size", "layout") else
                      getattr(result, f) for f in ("pose", "betas", "transl", "K", "image_size", "layout",
                                                   "keypoints", "projected", "joints", "reprojection_error",
                                                   "loss", "converged", "fitted")))
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        two.export_meshes(tmp_path / "m", body_model=open_model)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["person_0.obj"]  # complete, or absent


def test_detector_boxes_and_scores_are_kept(tmp_path, data_dir):
    """Schema 3: a fit of detected people keeps the detector's boxes and scores, through save and load; a plain
    keypoint array has none (NaN)."""
    import fitlib

    img = str(data_dir / "messi5.jpg")
    found = fitlib.detect(img)
    res = fitlib.fit(img, found)
    np.testing.assert_allclose(res.boxes, found.boxes)
    np.testing.assert_allclose(res.scores, found.scores)
    for suffix in (".json", ".npz"):
        back = FitResult.load(res.save(tmp_path / f"r{suffix}"))
        np.testing.assert_allclose(back.boxes, found.boxes, atol=1e-9)
        np.testing.assert_allclose(back.scores, found.scores, atol=1e-9)
    plain = fitlib.fit(img, found.keypoints)
    assert np.isnan(plain.boxes).all() and np.isnan(plain.scores).all()
    assert np.isnan(FitResult.load(plain.save(tmp_path / "p.json")).boxes).all()


def test_results_state_the_mesh_topology(tmp_path, data_dir, open_model):
    """The open model is not SMPL's mesh: a result says how many vertices and faces its model has."""
    import fitlib

    res = fitlib.fit(str(data_dir / "messi5.jpg"))
    topo = FitResult.load(res.save(tmp_path / "r.json")).provenance["topology"]
    assert topo == {"vertices": open_model.num_vertices, "faces": len(open_model.faces)}
    assert res.vertices().shape[1] == topo["vertices"] != 6890
