"""People in one z-buffer with the real open model: the nearer person hides the farther one in the
person-index mask, the depth map is the body's surface depth, and a real fit's maps sit on the person."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import fitlib
from fitlib.render import rasterize_people, render_maps

DATA = Path(__file__).parents[1] / "data"
K = np.array([[600.0, 0.0, 160.0], [0.0, 600.0, 120.0], [0.0, 0.0, 1.0]])
SIZE = (240, 320)


def _people(model, transl):
    """Open-model bodies in the rest pose turned upright for the OpenCV camera (pi about x), at ``transl``."""
    P = len(transl)
    pose = torch.zeros(P, 72)
    pose[:, 0] = math.pi
    out = model(pose, torch.zeros(P, 10), torch.tensor(transl, dtype=torch.float32), vertices=True)
    return out.vertices.detach().numpy()


def test_the_nearer_person_hides_the_farther_one(open_model):
    verts = _people(open_model, [[0.0, 0.0, 6.0], [0.25, 0.0, 4.0]])  # person 1 is nearer, a little to the right
    pr = rasterize_people(verts, open_model.faces, K, SIZE)
    person = pr.person.numpy()
    alone = [rasterize_people(verts[i:i + 1], open_model.faces, K, SIZE).person.numpy() >= 0 for i in range(2)]
    overlap = alone[0] & alone[1]
    assert overlap.sum() > 500
    assert (person[overlap] == 1).all()  # the nearer one is seen wherever both are
    assert (person[alone[0] & ~alone[1]] == 0).all() and (person[~alone[0] & ~alone[1]] == -1).all()
    swapped = rasterize_people(verts[::-1].copy(), open_model.faces, K, SIZE).person.numpy()
    np.testing.assert_array_equal(np.where(swapped >= 0, 1 - swapped, -1), person)  # order does not matter


def test_depth_map_is_the_visible_surface(open_model):
    verts = _people(open_model, [[0.0, 0.1, 3.0]])
    pr = rasterize_people(verts, open_model.faces, K, SIZE)
    depth, mask = pr.depth.numpy(), pr.person.numpy() >= 0
    z = verts[0, :, 2]
    assert mask.sum() > 2000 and (depth[~mask] == 0).all()
    assert depth[mask].min() >= z.min() - 1e-5 and depth[mask].max() <= z.max() + 1e-5
    # a vertex facing the camera, projected to a pixel, is where the map's depth says (to a few mm)
    normals = fitlib.render.vertex_normals(torch.from_numpy(verts[0]), torch.from_numpy(open_model.faces)).numpy()
    uv = verts[0, :, :2] / verts[0, :, 2:] * 600 + [160, 120]
    facing = (normals[:, 2] < -0.9) & (uv[:, 0] > 0) & (uv[:, 1] > 0) & (uv[:, 0] < 319) & (uv[:, 1] < 239)
    px = np.round(uv[facing]).astype(int)
    assert facing.sum() > 100
    assert np.median(np.abs(depth[px[:, 1], px[:, 0]] - z[facing])) < 0.01
    # a vertex on the back is hidden: the map holds a surface well in front of it
    back = (normals[:, 2] > 0.9) & (uv[:, 0] > 0) & (uv[:, 1] > 0) & (uv[:, 0] < 319) & (uv[:, 1] < 239)
    px = np.round(uv[back]).astype(int)
    assert back.sum() > 100
    assert np.median(z[back] - depth[px[:, 1], px[:, 0]]) > 0.05


@pytest.fixture(scope="module")
def messi():
    return fitlib.fit(DATA / "messi5.jpg")


def test_maps_of_a_real_fit(messi, open_model):
    maps = render_maps(messi, open_model)
    assert maps.person.shape == messi.image_size and maps.depth.shape == messi.image_size
    v = messi.vertices(open_model)[0]
    uv = v[:, :2] / v[:, 2:] * np.diag(messi.K)[:2] + messi.K[:2, 2]
    ys, xs = np.nonzero(maps.person == 0)
    assert len(xs) > 5000 and set(np.unique(maps.person)) == {-1, 0}
    assert xs.min() >= uv[:, 0].min() - 1 and xs.max() <= uv[:, 0].max() + 1
    assert ys.min() >= uv[:, 1].min() - 1 and ys.max() <= uv[:, 1].max() + 1
    d = maps.depth[maps.person == 0]
    assert d.min() >= v[:, 2].min() - 1e-4 and d.max() <= v[:, 2].max() + 1e-4
    # the input keypoints of the torso fall on the mask
    torso = messi.keypoints[0, [5, 6, 11, 12]]
    assert (maps.person[np.round(torso[:, 1]).astype(int), np.round(torso[:, 0]).astype(int)] == 0).all()


def test_bad_people_input(open_model):
    with pytest.raises(ValueError, match="vertices must be"):
        rasterize_people(np.zeros((10, 3)), open_model.faces, K, SIZE)
    with pytest.raises(ValueError, match="faces must be"):
        rasterize_people(np.zeros((1, 10, 3)), np.zeros((4, 2), np.int64), K, SIZE)
