"""EasyMocap per-frame SMPL JSON: Rh / Th place the same mesh as SMPL's global_orient / transl (the pelvis
offset measured on the open model's vertices), round trip, a real fit exported, broken files refused."""
import json

import numpy as np
import pytest
import torch

from fitlib.interop import easymocap_people, export_easymocap, read_easymocap, rest_pelvis, write_easymocap
from fitlib.interop.easymocap import _rotmat


def _params(P=3, seed=0):
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.3, (P, 72))
    pose[:, :3] = rng.normal(0, 1.5, (P, 3))  # large global rotations: the offset matters
    return pose, rng.normal(0, 1, (P, 10)), rng.normal(0, 1, (P, 3)) + [0, 0, 4]


def test_same_mesh_as_smpl_parameters(open_model):
    pose, betas, transl = _params()
    t = lambda a: torch.as_tensor(a, dtype=open_model.joint_template.dtype)  # noqa: E731
    with torch.no_grad():
        smpl = open_model(t(pose), t(betas), t(transl), vertices=True).vertices.double().numpy()
        people = easymocap_people(pose=pose, betas=betas, transl=transl, pelvis=rest_pelvis(betas, open_model))
        poses = np.array([p["poses"][0] for p in people])
        assert not poses[:, :3].any()
        X = open_model(t(poses), t(betas), None, vertices=True).vertices.double().numpy()  # no global rotation
    Rh = np.array([p["Rh"][0] for p in people])
    Th = np.array([p["Th"][0] for p in people])
    easymocap = np.einsum("pvj,pij->pvi", X, _rotmat(Rh)) + Th[:, None]  # EasyMocap: V = X R^T + Th
    assert np.abs(easymocap - smpl).max() < 1e-5  # metres
    # without the pelvis term (Th = transl) the meshes would be centimetres apart
    assert np.abs(np.einsum("pvj,pij->pvi", X, _rotmat(Rh)) + transl[:, None] - smpl).max() > 0.01


def test_round_trip(tmp_path, open_model):
    pose, betas, transl = _params(2, seed=1)
    path = write_easymocap(tmp_path / "000000.json", pose=pose, betas=betas, transl=transl, body_model=open_model,
                           ids=[5, 9])
    data = json.loads(path.read_text())
    assert [p["id"] for p in data] == [5, 9]
    assert all(np.shape(p["Rh"]) == (1, 3) and np.shape(p["Th"]) == (1, 3) and np.shape(p["poses"]) == (1, 72)
               and np.shape(p["shapes"]) == (1, 10) for p in data)
    back = read_easymocap(path, body_model=open_model)
    assert back["ids"].tolist() == [5, 9]
    np.testing.assert_allclose(back["pose"], pose, atol=1e-12)
    np.testing.assert_allclose(back["betas"], betas)
    np.testing.assert_allclose(back["transl"], transl, atol=1e-9)
    assert read_easymocap({"annots": data}, body_model=open_model)["pose"].shape == (2, 72)


def test_real_fit_exported(messi, tmp_path, open_model):
    image, result = messi
    paths = export_easymocap([result, result], tmp_path / "smpl", body_model=open_model)
    assert [p.name for p in paths] == ["000000.json", "000001.json"]
    back = read_easymocap(paths[1], body_model=open_model)
    rows = np.flatnonzero(result.fitted)
    assert back["ids"].tolist() == rows.tolist()
    np.testing.assert_allclose(back["pose"], result.pose[rows], atol=1e-9)
    np.testing.assert_allclose(back["transl"], result.transl[rows], atol=1e-6)


@pytest.mark.parametrize("data, message", [
    ({"people": []}, "expected a list of people"),
    ([3], r"\[0\] must be an object"),
    ([{"id": 0, "Rh": [[0, 0]], "Th": [[0, 0, 0]], "poses": [[0] * 72], "shapes": [[0] * 10]}], r"\[0\].Rh must hold 3"),
    ([{"id": 0, "Rh": [[0, 0, 0]], "Th": [[0, 0, 0]], "poses": [[0] * 78], "shapes": [[0] * 10]}], r"poses must hold 72"),
    ([{"id": "a", "Rh": [[0, 0, 0]], "Th": [[0, 0, 0]], "poses": [[0] * 72], "shapes": [[0] * 10]}], r"id must be a whole"),
    ([{"id": 0, "Rh": [[0, 0, 0]], "Th": [[0, 0, 0]], "poses": [[0.5] + [0] * 71], "shapes": [[0] * 10]}],
     "non-zero rotation"),
])
def test_broken_files(tmp_path, data, message):
    p = tmp_path / "000000.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        read_easymocap(p, pelvis=np.zeros((1, 3)))
    assert str(p) in str(info.value)
