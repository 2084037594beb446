"""fitlib.fit on a real photograph: detection, mmpose-format input, init, the CLI."""
import json

import numpy as np
import pytest

import fitlib
from fitlib.cli import main
from fitlib.result import FitResult


def test_fit_detects_and_fits_real_photo(data_dir):
    res = fitlib.fit(data_dir / "messi5.jpg")
    assert len(res) == 1 and res.fitted.all()
    h, w = res.image_size
    assert float(res.reprojection_error[0]) < 0.03 * max(h, w)
    assert res.transl[0, 2] > 0.5  # in front of the camera
    assert res.provenance["world_landmarks"] is True  # the bundled detector's 3D landmarks were read


def test_bus_photo_two_people_in_full_view(data_dir):
    """bus.jpg (tests/data/LICENSES.md): the two people in full view are found and fitted upright, the
    taller one in the image nearer the camera. The two cut by the image border are not found: the
    bundled detector finds people by their head (README, Detection)."""
    res = fitlib.fit(data_dir / "bus.jpg")
    assert len(res) == 2 and res.fitted.all()
    h, w = res.image_size
    assert (h, w) == (1080, 810)
    conf = res.keypoints[..., 2] > 0.5
    centre_x = np.array([kp[c, 0].mean() for kp, c in zip(res.keypoints, conf)])
    left, right = np.argsort(centre_x)
    assert 60 < centre_x[left] < 240 and 200 < centre_x[right] < 420
    assert np.all(res.reprojection_error < 0.01 * max(h, w))
    head, knees, ankles = res.joints[:, 15, 1], res.joints[:, [4, 5], 1].mean(1), res.joints[:, [7, 8], 1].mean(1)
    assert np.all(head < knees) and np.all(knees < ankles)  # upright (camera y points down)
    height_px = np.array([np.ptp(kp[c, 1]) for kp, c in zip(res.keypoints, conf)])
    near, far = np.argsort(res.transl[:, 2])
    assert height_px[near] > height_px[far]  # the one that looks taller stands nearer


def test_mmpose_dicts_and_init(data_dir):
    det = fitlib.detect(data_dir / "messi5.jpg")
    mm = [{"keypoints": det.keypoints[0, :, :2].tolist(), "keypoint_scores": det.keypoints[0, :, 2].tolist(),
           "bbox": [det.boxes[0].tolist()], "bbox_score": 1.0}]
    a = fitlib.fit(data_dir / "messi5.jpg", mm)
    b = fitlib.fit(data_dir / "messi5.jpg", det.keypoints)
    np.testing.assert_allclose(a.pose, b.pose, atol=1e-5)
    assert not a.provenance["world_landmarks"] and not b.provenance["world_landmarks"]  # 2D alone
    again = fitlib.fit(data_dir / "messi5.jpg", det.keypoints, init=a)
    # Starting from a fit keeps it (a re-run from a converged fit is not yet guaranteed to improve it).
    assert float(again.reprojection_error[0]) < 2 * float(a.reprojection_error[0])


def test_nobody_and_bad_input(data_dir):
    empty = fitlib.fit(np.zeros((64, 64, 3), np.uint8), np.zeros((0, 17, 3)))
    assert len(empty) == 0
    with pytest.raises(ValueError, match="shape"):
        fitlib.fit(np.zeros((64, 64, 3), np.uint8), np.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match=r"\[P, J, 3\].*\(1, 1, 17, 3\)"):
        fitlib.fit(np.zeros((64, 64, 3), np.uint8), np.zeros((1, 1, 17, 3)))


def test_cli_round_trip(data_dir, tmp_path):
    det = fitlib.detect(data_dir / "messi5.jpg")
    kp_file = tmp_path / "kp.json"
    kp_file.write_text(json.dumps([{"keypoints": det.keypoints[0, :, :2].tolist(),
                                    "keypoint_scores": det.keypoints[0, :, 2].tolist()}]))
    assert main(["fit", str(data_dir / "messi5.jpg"), "--keypoints", str(kp_file), "--out", str(tmp_path)]) == 0
    res = FitResult.load(tmp_path / "messi5.json")
    assert (tmp_path / "messi5_overlay.png").stat().st_size > 1000
    direct = fitlib.fit(data_dir / "messi5.jpg", det.keypoints)
    np.testing.assert_allclose(res.pose, direct.pose, atol=1e-5)


def test_init_forms_and_mixed_inits_in_a_batch(data_dir):
    """init as a FitResult, numpy or torch (a regressor's output); images with and without an init,
    or with inits of different parameters, in one fit_batch give the same fits as alone."""
    import torch

    images = [data_dir / "messi5.jpg", data_dir / "astronaut.jpg"]
    first = [fitlib.fit(p) for p in images]
    as_numpy = {"pose": first[0].pose, "betas": first[0].betas + 0.5}
    as_torch = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in as_numpy.items()}
    a = fitlib.fit(images[0], init=as_numpy)
    b = fitlib.fit(images[0], init=as_torch)
    np.testing.assert_allclose(a.pose, b.pose, atol=1e-4)
    batch = fitlib.fit_batch(images, init=[as_numpy, None])
    np.testing.assert_allclose(batch[0].pose, a.pose, atol=1e-4)
    np.testing.assert_allclose(batch[1].pose, first[1].pose, atol=1e-4)
    mixed = fitlib.fit_batch(images, init=[as_numpy, {"betas": first[1].betas}])
    np.testing.assert_allclose(mixed[0].betas, a.betas, atol=1e-4)  # betas init not dropped
    with pytest.raises(ValueError, match="init pose must hold 72 numbers per person"):
        fitlib.fit(images[0], init={"pose": np.zeros((2, 72))})
    with pytest.raises(ValueError, match="positive focal"):
        fitlib.fit(images[0], K=np.diag([500.0, -500.0, 1.0]))


def test_fit_batch_matches_single_image_fits(data_dir):
    images = [data_dir / "messi5.jpg", data_dir / "astronaut.jpg"]
    batch = fitlib.fit_batch(images)
    assert [len(r) for r in batch] == [1, 1]
    for path, res in zip(images, batch):
        alone = fitlib.fit(path)
        np.testing.assert_allclose(res.pose, alone.pose, atol=1e-3)
        assert res.image_size == alone.image_size


def test_cli_folder_resumes(data_dir, tmp_path, capsys):
    import shutil

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("messi5.jpg", "astronaut.jpg"):
        shutil.copy(data_dir / name, folder / name)
    out = tmp_path / "out"
    assert main(["fit", str(folder), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["astronaut.json", "messi5.json"]
    first = (out / "astronaut.json").read_text()
    (out / "messi5.json").unlink()  # as if the run had been killed before finishing messi5
    capsys.readouterr()
    assert main(["fit", str(folder), "--out", str(out)]) == 0
    assert "1 of 2 images already fitted" in capsys.readouterr().out
    assert (out / "messi5.json").exists() and (out / "astronaut.json").read_text() == first


def test_cli_folder_with_nobody_corrupt_and_clashing_images(data_dir, tmp_path, capsys):
    """An image with nobody is a result; an unreadable one is reported and skipped (exit 1) while the
    others are fitted; a damaged result file is fitted again; same-stem images are refused."""
    import shutil

    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(data_dir / "astronaut.jpg", folder / "a.jpg")
    cv2.imwrite(str(folder / "b.png"), np.full((120, 160, 3), 128, np.uint8))
    (folder / "c.jpg").write_bytes((data_dir / "messi5.jpg").read_bytes()[:300])  # truncated
    out = tmp_path / "out"
    assert main(["fit", str(folder), "--out", str(out), "--config", "fast"]) == 1
    assert "c.jpg" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "b.json"]
    assert len(FitResult.load(out / "b.json")) == 0
    (out / "a.json").write_text('{"pose": [[0.1')  # damaged, e.g. by a disk fault
    assert main(["fit", str(folder), "--out", str(out), "--config", "fast"]) == 1
    assert "1 of 3 images already fitted" in capsys.readouterr().out  # b.json only
    assert len(FitResult.load(out / "a.json")) == 1
    shutil.copy(data_dir / "messi5.jpg", folder / "a.png")
    with pytest.raises(SystemExit, match="same outputs"):
        main(["fit", str(folder), "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["fit", str(folder), "--out", str(out), "--batch-images", "0"])


def test_openpose_frame_with_nobody_gives_an_empty_result(tmp_path, data_dir):
    import json

    path = tmp_path / "frame_keypoints.json"
    path.write_text(json.dumps({"version": 1.3, "people": []}))
    res = fitlib.fit(str(data_dir / "messi5.jpg"), str(path))
    assert len(res) == 0 and res.layout == "body25"
