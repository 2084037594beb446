"""mmhuman3d HumanData npz: the keys and shapes HumanData.load reads, keypoints in the human_data
convention with their mask, the smpl dict (a pickle, read back only through fitlib's allow-list unpickler),
a real fit exported, and bad input refused."""
import os

import numpy as np
import pytest

from fitlib.interop import export_training_file, read_humandata, results_to_arrays, to_human_data, write_humandata


def _samples(n=3, seed=0):
    rng = np.random.default_rng(seed)
    kps = np.concatenate([rng.uniform(0, 400, (n, 17, 2)), rng.uniform(0.2, 1, (n, 17, 1))], -1)
    kps[0, 4] = [np.nan, np.nan, 0.0]  # a missing point
    return dict(image_path=[f"images/{i}.jpg" for i in range(n)], pose=rng.normal(0, 0.3, (n, 72)),
                betas=rng.normal(0, 1, (n, 10)), transl=rng.normal(0, 1, (n, 3)) + [0, 0, 5], keypoints=kps,
                layout="coco17", boxes=np.array([[10, 20, 110, 220]] * n, float), box_scores=np.linspace(0.5, 1, n))


def test_round_trip(tmp_path):
    s = _samples()
    s["pose"][2] = np.nan  # a person without a fit
    s["betas"][2] = np.nan
    path = write_humandata(tmp_path / "hd.npz", **s, config="mydata", meta={"body_model": "open"})
    assert not list(tmp_path.glob(".*.tmp"))
    with np.load(path, allow_pickle=False) as plain:  # everything but the dicts loads without pickles
        assert set(plain.files) == {"image_path", "bbox_xywh", "keypoints2d", "keypoints2d_mask",
                                    "keypoints2d_convention", "smpl", "has_smpl", "config", "meta",
                                    "__key_strict__", "__data_len__", "__keypoints_compressed__"}
        assert plain["image_path"].tolist() == s["image_path"]
        np.testing.assert_allclose(plain["bbox_xywh"], [[10, 20, 100, 200, x] for x in s["box_scores"]])
        assert plain["keypoints2d"].shape == (3, 190, 3) and plain["keypoints2d_mask"].shape == (190,)
        assert plain["keypoints2d_mask"].dtype == np.uint8 and plain["keypoints2d_mask"].sum() == 17
        assert str(plain["keypoints2d_convention"]) == "human_data" and str(plain["config"]) == "mydata"
        assert int(plain["__data_len__"]) == 3 and not bool(plain["__key_strict__"])
        assert not bool(plain["__keypoints_compressed__"])
        assert plain["has_smpl"].tolist() == [1, 1, 0]
        kp = plain["keypoints2d"]
        np.testing.assert_allclose(kp[:, 55], s["keypoints"][:, 0])  # nose
        np.testing.assert_allclose(kp[:, 145], s["keypoints"][:, 11])  # COCO left hip -> left_hip_extra
        np.testing.assert_allclose(kp[:, 7], s["keypoints"][:, 15])  # left ankle -> SMPL's left_ankle
        assert kp[0, 58].tolist() == [0, 0, 0]  # the missing right ear
        with pytest.raises(ValueError, match="allow_pickle"):
            plain["smpl"]  # HumanData's dicts are pickles: mmhuman3d loads them with allow_pickle=True
    back = read_humandata(path)
    smpl = back["smpl"]
    assert set(smpl) == {"global_orient", "body_pose", "betas", "transl"}
    np.testing.assert_allclose(smpl["global_orient"][:2], s["pose"][:2, :3])
    np.testing.assert_allclose(smpl["body_pose"][:2], s["pose"][:2, 3:].reshape(2, 23, 3))
    np.testing.assert_allclose(smpl["betas"][:2], s["betas"][:2])
    np.testing.assert_allclose(smpl["transl"][:2], s["transl"][:2])
    assert not smpl["body_pose"][2].any() and not smpl["transl"][2].any() and back["meta"] == {"body_model": "open"}
    assert back["__data_len__"] == 3 and back["config"] == "mydata"


def test_layouts_map_by_name():
    body25 = np.ones((1, 25, 3))
    kp, mask = to_human_data(body25, "body25")
    assert mask[153:178].all() and mask.sum() == 25
    kp, mask = to_human_data(np.ones((1, 23, 3)), "coco17_feet")
    assert mask[60:66].all() and mask.sum() == 23
    kp, mask = to_human_data(np.ones((1, 24, 3)), "smpl24")
    assert mask[:22].all() and mask[188] and mask[189] and mask.sum() == 24
    mp = np.ones((1, 33, 3))
    kp, mask = to_human_data(mp, "mediapipe33")  # converted to COCO-17 by name first
    assert mask.sum() == 17 and kp[0, 55, 2] == 1


def test_refuses_pickled_code(tmp_path):
    p = tmp_path / "evil.npz"
    np.savez(p, smpl=np.array(os.system, dtype=object), __data_len__=np.array(1))
    with pytest.raises(ValueError, match="refused to unpickle"):
        read_humandata(p)
    p.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not a readable .npz"):
        read_humandata(p)


@pytest.mark.parametrize("change, message", [
    (dict(pose=np.zeros((3, 69))), r"pose must have shape \[3, 72\]"),
    (dict(image_path="one.jpg"), "image_path must be a list of text"),
    (dict(has_smpl=[1, 1, 2]), "has_smpl must be 3 booleans"),
    (dict(box_scores=[0.5, 1.0, 1.5]), r"box_scores must lie in \[0, 1\]"),
    (dict(boxes=[[10, 20, 5, 220]] * 3), "x2 >= x1"),
    (dict(transl=np.full((3, 3), np.inf)), "transl holds NaN or infinite values"),
])
def test_bad_input(tmp_path, change, message):
    s = {**_samples(), **change}
    with pytest.raises(ValueError, match=message):
        write_humandata(tmp_path / "x.npz", **s)
    assert not (tmp_path / "x.npz").exists()


def test_nan_parameters_with_has_smpl_refused(tmp_path):
    s = _samples()
    s["pose"][1, 5] = np.nan
    with pytest.raises(ValueError, match="row 1 are not finite but has_smpl is set"):
        write_humandata(tmp_path / "x.npz", **s, has_smpl=[1, 1, 1])
    with pytest.raises(ValueError, match=r"\.npz file"):
        write_humandata(tmp_path / "x.json", **_samples())


def test_real_fit_exported(messi, tmp_path):
    image, result = messi
    arrays = results_to_arrays([result], ["messi5.jpg"])
    path = export_training_file(tmp_path / "messi.npz", arrays, "humandata")
    back = read_humandata(path)
    P = len(result)
    assert back["image_path"].tolist() == ["messi5.jpg"] * P and back["__data_len__"] == P
    np.testing.assert_allclose(back["smpl"]["global_orient"], result.pose[:, :3])
    np.testing.assert_allclose(back["smpl"]["body_pose"], result.pose[:, 3:].reshape(P, 23, 3))
    np.testing.assert_allclose(back["smpl"]["transl"], result.transl)
    np.testing.assert_allclose(back["keypoints2d"][:, 17], np.where(result.keypoints[:, 6, 2:] > 0,
                                                                    result.keypoints[:, 6], 0))  # right shoulder
    assert back["meta"] == {"body_model": "open"} and (back["bbox_xywh"][:, 2:4] > 50).all()


def test_loads_the_way_humandata_load_does(tmp_path):
    """mmhuman3d is not installable here (mmcv); these are the steps of its HumanData.load (np.load with
    allow_pickle=True, 0-d entries unwrapped with .item(), supported keys cast to their type, attributes popped)
    and the shape checks of its SUPPORTED_KEYS, applied to a file we wrote ourselves."""
    path = write_humandata(tmp_path / "hd.npz", **_samples())
    with np.load(path, allow_pickle=True) as npz:  # our own file: trusted
        data = dict(npz)
    attributes = {}
    for key, value in list(data.items()):
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        elif key in ("image_path", "image_id"):
            value = list(value)
        if key.startswith("__"):
            attributes[key] = value
            del data[key]
        else:
            data[key] = value
    assert attributes == {"__key_strict__": False, "__data_len__": 3, "__keypoints_compressed__": False}
    assert isinstance(data["image_path"], list) and isinstance(data["smpl"], dict) and isinstance(data["config"], str)
    assert data["bbox_xywh"].shape[1] == 5  # so load() does not append a score column
    assert data["keypoints2d"].ndim == 3 and data["keypoints2d"].shape[2] == 3
    assert data["keypoints2d_mask"].ndim == 1 and data["keypoints2d_mask"].shape[0] == data["keypoints2d"].shape[1]
    assert data["keypoints2d_convention"] == "human_data"
    assert data["smpl"]["betas"].shape[0] == attributes["__data_len__"]  # its slice_key gives the data length
