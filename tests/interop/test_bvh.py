"""BVH export: the file's skeleton, driven by its own channels, reproduces the body model's posed joints."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from fitlib.interop.bvh import bvh_text, write_bvh


def _parse(text: str):
    """Offsets per joint (file order), parents, and the motion rows of a BVH file written by fitlib."""
    names, offsets, parents, stack, lines = [], [], [], [], text.splitlines()
    i = 0
    while not lines[i].startswith("MOTION"):
        tok = lines[i].split()
        if tok[0] in ("ROOT", "JOINT"):
            names.append(tok[1])
            parents.append(stack[-1] if stack else -1)
            stack.append(len(offsets))
            offsets.append(None)
        elif tok[0] == "End":
            stack.append(None)
        elif tok[0] == "OFFSET" and stack[-1] is not None and offsets[stack[-1]] is None:
            offsets[stack[-1]] = np.array([float(v) for v in tok[1:]])
        elif tok[0] == "}":
            stack.pop()
        i += 1
    frames = int(lines[i + 1].split()[1])
    rows = np.array([[float(v) for v in ln.split()] for ln in lines[i + 3:i + 3 + frames]])
    return names, np.stack(offsets), parents, rows


def test_bvh_channels_reproduce_the_model_joints(open_model, tmp_path):
    g = torch.Generator().manual_seed(0)
    T = 5
    pose = torch.randn(T, 72, generator=g) * 0.4
    betas = torch.randn(1, 10, generator=g)
    trans = torch.randn(T, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, 4.0])
    joints = open_model(pose, betas.expand(T, 10), trans).joints.double().numpy()  # camera frame
    rest = open_model.rest_joints(betas)[0].double().numpy()
    path = write_bvh(tmp_path / "track.bvh", pose.numpy(), trans.numpy(), rest, 30.0)
    names, offsets, parents, rows = _parse(path.read_text())
    assert len(offsets) == 24 and rows.shape == (T, 3 + 3 * 24)
    flip = np.diag([1.0, -1.0, -1.0])
    for t in range(T):
        R = [None] * 24
        p = np.zeros((24, 3))
        for j in range(24):
            r = Rotation.from_euler("ZXY", rows[t, 3 + 3 * j:6 + 3 * j], degrees=True).as_matrix()
            if parents[j] < 0:
                R[j], p[j] = r, rows[t, :3]
            else:
                R[j] = R[parents[j]] @ r
                p[j] = p[parents[j]] + R[parents[j]] @ offsets[j]
        # the file lists joints depth first: compare by name
        from fitlib.body.skeleton import SMPL_JOINT_NAMES

        want = joints[t][[SMPL_JOINT_NAMES.index(n) for n in names]] @ flip.T
        np.testing.assert_allclose(p, want, atol=1e-4)
    upright = torch.zeros(1, 72)
    upright[0, 0] = np.pi  # a person standing upright in the camera frame (y down) is turned 180 deg about x
    up = open_model(upright, betas, torch.tensor([[0.0, 0.0, 3.0]])).joints[0].double().numpy() @ flip.T
    assert up[SMPL_JOINT_NAMES.index("head"), 1] > up[0, 1] + 0.3  # y up in the file: the head above the pelvis


def test_bvh_refuses_bad_input():
    rest = np.zeros((24, 3))
    with pytest.raises(ValueError, match="poses"):
        bvh_text(np.zeros((3, 69)), np.zeros((3, 3)), rest, 30)
    with pytest.raises(ValueError, match="finite"):
        bvh_text(np.full((2, 72), np.nan), np.zeros((2, 3)), rest, 30)
    with pytest.raises(ValueError, match="fps"):
        bvh_text(np.zeros((2, 72)), np.zeros((2, 3)), rest, 0)
