"""Meshes of a real fit: .glb / .obj / .ply with vertex normals, the y-up world frame (upright, on y = 0, near
the origin) vs the camera frame, and ``FitResult.smplx_kwargs`` posing plain ``smplx.SMPL`` identically."""
import json
import struct

import numpy as np
import pytest
import smplx
import torch
import trimesh


def _glb_json(path):
    raw = path.read_bytes()
    assert raw[:4] == b"glTF"
    n = struct.unpack("<I", raw[12:16])[0]
    return json.loads(raw[20:20 + n])


def test_glb_world_frame_upright(messi, tmp_path, open_model):
    _, result = messi
    paths = result.export_meshes(tmp_path, fmt="glb", body_model=open_model)
    assert [p.name for p in paths] == [f"person_{i}.glb" for i in np.flatnonzero(result.fitted)]
    assert "NORMAL" in _glb_json(paths[0])["meshes"][0]["primitives"][0]["attributes"]
    verts_cam = result.vertices(open_model)
    i = int(np.flatnonzero(result.fitted)[0])
    mesh = trimesh.load(paths[0], force="mesh", process=False)
    assert mesh.vertices.shape == verts_cam[i].shape and len(mesh.faces) == len(open_model.faces)
    # the vertices nearest the head and the ankles (found in the camera frame)
    near = lambda j: int(np.argmin(np.linalg.norm(verts_cam[i] - result.joints[i, j], axis=1)))  # noqa: E731
    head, ankles = near(15), [near(7), near(8)]
    w = mesh.vertices
    assert w[head, 1] > max(w[ankles, 1]) + 0.5  # metres: the head is above both feet (+y; he runs, one foot up)
    assert w[head, 1] > min(w[ankles, 1]) + 0.8  # ... and well above the standing foot (he lunges low)
    assert verts_cam[i][head, 1] < verts_cam[i][ankles[0], 1]  # ... whereas the camera frame has y down
    assert abs(w[:, 1].min()) < 1e-6  # standing on y = 0
    offset = verts_cam[i][0] * [1, -1, -1] - w[0]  # world = camera turned 180 degrees about x, minus an offset
    np.testing.assert_allclose(verts_cam[i] * [1, -1, -1] - offset, w, atol=1e-5)
    pelvis = (result.joints[result.fitted, 0] * [1, -1, -1] - offset).mean(0)
    assert np.hypot(pelvis[0], pelvis[2]) < 1e-5  # the people's mean pelvis above the origin
    # the transform is a rotation plus an offset: distances are kept
    np.testing.assert_allclose(np.linalg.norm(w[head] - w[ankles[0]]),
                               np.linalg.norm(verts_cam[i][head] - verts_cam[i][ankles[0]]), rtol=1e-6)


def test_camera_frame_and_normals_in_obj_and_ply(messi, tmp_path, open_model):
    _, result = messi
    i = int(np.flatnonzero(result.fitted)[0])
    obj = result.export_meshes(tmp_path / "o", fmt="obj", body_model=open_model, frame="camera")[0]
    text = obj.read_text()
    assert text.count("\nvn ") == open_model.num_vertices
    mesh = trimesh.load(obj, force="mesh", process=False)
    np.testing.assert_allclose(mesh.vertices, result.vertices(open_model)[i], atol=1e-6)
    ply = result.export_meshes(tmp_path / "p", fmt="ply", body_model=open_model)[0]
    header = ply.read_bytes()[:400]
    assert b"property float nx" in header
    world = trimesh.load(ply, process=False).vertices
    assert abs(world[:, 1].min()) < 1e-5  # the default frame is the world frame
    with pytest.raises(ValueError, match="frame must be"):
        result.export_meshes(tmp_path, frame="blender", body_model=open_model)
    with pytest.raises(ValueError, match="mesh format must be"):
        result.export_meshes(tmp_path, fmt="fbx", body_model=open_model)


def test_smplx_kwargs_pose_plain_smplx(messi, open_model):
    from fitlib.body.open_model import ensure_open_model

    _, result = messi
    smpl = smplx.SMPL(model_path=str(ensure_open_model(progress=False)), dtype=torch.float64)
    rows = np.flatnonzero(result.fitted)
    expected = result.vertices(open_model)[rows]
    kw = result.smplx_kwargs(dtype=torch.float64)
    assert {k: tuple(v.shape) for k, v in kw.items()} == {
        "global_orient": (len(result), 3), "body_pose": (len(result), 69), "betas": (len(result), 10),
        "transl": (len(result), 3)}
    out = smpl(**{k: v[rows] for k, v in kw.items()})
    assert np.abs(out.vertices.numpy() - expected).max() < 1e-4
    rot = result.smplx_kwargs(as_rotmat=True, dtype=torch.float64)
    assert rot["global_orient"].shape == (len(result), 1, 3, 3) and rot["body_pose"].shape == (len(result), 23, 3, 3)
    assert rot.pop("pose2rot") is False
    out = smpl(**{k: v[rows] for k, v in rot.items()}, pose2rot=False)
    assert np.abs(out.vertices.numpy() - expected).max() < 1e-4
    R = result.pose_rotmat()
    assert R.shape == (len(result), 24, 3, 3)
    np.testing.assert_allclose(R[rows] @ np.swapaxes(R[rows], -1, -2), np.broadcast_to(np.eye(3), R[rows].shape),
                               atol=1e-12)
