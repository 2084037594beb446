"""The rasteriser: exact coverage and depth of simple shapes, occlusion, perspective-correct interpolation,
budgeted chunks, and clear errors for bad input."""
import importlib

import numpy as np
import pytest
import torch

from fitlib.render import rasterize

rasterize_module = importlib.import_module("fitlib.render.rasterize")  # the module, not the function

K = torch.tensor([[200.0, 0.0, 40.0], [0.0, 200.0, 30.0], [0.0, 0.0, 1.0]])
SIZE = (60, 80)


def _lift(uv: np.ndarray, z: np.ndarray, K: torch.Tensor = K) -> torch.Tensor:
    """Camera-frame points [N, 3] that project to pixels ``uv`` [N, 2] at depths ``z`` [N]."""
    k = K.double().numpy()
    x = (uv[:, 0] - k[0, 2]) / k[0, 0] * z
    y = (uv[:, 1] - k[1, 2]) / k[1, 1] * z
    return torch.tensor(np.stack([x, y, z], 1), dtype=torch.float32)


def _inside(uv: np.ndarray, size) -> np.ndarray:
    """Pixel centres strictly inside the triangle ``uv`` [3, 2] (an independent same-side test)."""
    ys, xs = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    signs = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        signs.append((uv[b, 0] - uv[a, 0]) * (ys - uv[a, 1]) - (uv[b, 1] - uv[a, 1]) * (xs - uv[a, 0]))
    s = np.stack(signs)
    return (s > 0).all(0) | (s < 0).all(0)


@pytest.mark.parametrize("winding", [(0, 1, 2), (0, 2, 1)])
def test_triangle_covers_exactly_the_pixel_centres_inside(winding):
    uv = np.array([[5.3, 4.7], [70.2, 12.4], [22.6, 55.1]])
    verts = _lift(uv, np.array([2.0, 2.0, 2.0]))
    r = rasterize(verts, torch.tensor([winding]), K, SIZE, cull_backfaces=False)
    np.testing.assert_array_equal(r.mask.numpy(), _inside(uv, SIZE))
    assert torch.allclose(r.depth[r.mask], torch.tensor(2.0))
    assert (r.depth[~r.mask] == 0).all() and (r.face[~r.mask] == -1).all()


def test_back_faces_are_culled_only_when_asked():
    uv = np.array([[5.3, 4.7], [70.2, 12.4], [22.6, 55.1]])
    verts = _lift(uv, np.array([2.0, 2.0, 2.0]))
    # screen y points down: (0, 1, 2) here runs clockwise on screen, i.e. its normal points towards +z (away)
    away, towards = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1]])
    normal = torch.linalg.cross(verts[1] - verts[0], verts[2] - verts[0])
    assert normal[2] > 0  # (0, 1, 2) faces away from the camera
    assert not rasterize(verts, away, K, SIZE).mask.any()
    assert rasterize(verts, towards, K, SIZE).mask.sum() == _inside(uv, SIZE).sum()


def test_tilted_plane_depth_is_the_ray_intersection():
    """A quad on the plane z = 2 + 0.5 x (metres): each pixel's depth is where its ray meets the plane."""
    X = np.array([-1.0, 1.0, 1.0, -1.0])
    Y = np.array([-1.0, -1.0, 1.0, 1.0])
    verts = torch.tensor(np.stack([X, Y, 2 + 0.5 * X], 1), dtype=torch.float32)
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    r = rasterize(verts, faces, K, SIZE, cull_backfaces=False)
    ys, xs = np.nonzero(r.mask.numpy())
    rx = (xs - 40.0) / 200.0  # ray (rx, ry, 1): z = 2 + 0.5 * rx * z
    expected = 2.0 / (1 - 0.5 * rx)
    np.testing.assert_allclose(r.depth.numpy()[ys, xs], expected, rtol=1e-5)
    assert r.mask.sum() > 1000


def test_interpolation_is_perspective_correct():
    """Interpolating the vertices' own positions gives the surface point on each pixel's ray."""
    X = np.array([-1.0, 1.0, 1.0, -1.0])
    Y = np.array([-1.0, -1.0, 1.0, 1.0])
    verts = torch.tensor(np.stack([X, Y, 3 + 1.0 * Y], 1), dtype=torch.float32)
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    r = rasterize(verts, faces, K, SIZE, cull_backfaces=False)
    p = r.interpolate(verts, faces)[r.mask]
    ys, xs = np.nonzero(r.mask.numpy())
    np.testing.assert_allclose((p[:, 0] / p[:, 2] * 200 + 40).numpy(), xs, atol=2e-3)
    np.testing.assert_allclose((p[:, 1] / p[:, 2] * 200 + 30).numpy(), ys, atol=2e-3)
    np.testing.assert_allclose(p[:, 2].numpy(), r.depth[r.mask].numpy(), rtol=1e-5)


def _cube(centre, half):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
    verts = corners * half + np.asarray(centre)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = []
    for a, b, c, d in quads:
        faces += [(a, b, c), (a, c, d)]
    faces = np.array(faces)
    # orient every face outwards (the test does not rely on the table's winding)
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = (normal * (tri.mean(1) - centre)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces)


@pytest.mark.parametrize("cull", [True, False])
def test_cube_shows_its_front_face(cull):
    """An axis-aligned cube in front of the camera: what is seen at the image centre is the face at
    z = centre - half, and the covered area is the projection of the cube's outline."""
    verts, faces = _cube((0.0, 0.0, 4.0), 0.5)
    r = rasterize(verts, faces, K, SIZE, cull_backfaces=cull)
    near = 200 * 0.5 / 3.5  # half-size in pixels of the front face
    ys, xs = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    front = (np.abs(xs - 40) < near - 1e-6) & (np.abs(ys - 30) < near - 1e-6)
    m = r.mask.numpy()
    assert m[front].all() and m.sum() == front.sum()  # the back face projects inside the front one
    np.testing.assert_allclose(r.depth.numpy()[front], 3.5, rtol=1e-6)


def test_nearer_surface_wins_whatever_the_face_order():
    uv = np.array([[10.0, 10.0], [70.0, 10.0], [40.0, 50.0]])
    near = _lift(uv, np.full(3, 2.0))
    far = _lift(uv + 3.0, np.full(3, 5.0))
    verts = torch.cat([far, near])
    for faces in (torch.tensor([[0, 2, 1], [3, 5, 4]]), torch.tensor([[3, 5, 4], [0, 2, 1]])):
        r = rasterize(verts, faces, K, SIZE)
        both = torch.tensor(_inside(uv, SIZE) & _inside(uv + 3.0, SIZE))
        assert both.sum() > 100
        assert (r.depth[both] == 2.0).all()
        assert (verts[faces[r.face[both]]][..., 2] == 2.0).all()


def test_small_budget_gives_the_same_picture(monkeypatch):
    """Faces larger than the candidate budget are split into bands of rows: same result."""
    verts, faces = _cube((0.2, -0.1, 1.5), 0.5)  # near the camera: faces cover thousands of pixels
    ref = rasterize(verts, faces, K, SIZE)
    monkeypatch.setattr(rasterize_module, "CANDIDATE_BUDGET", 97)
    small = rasterize(verts, faces, K, SIZE)
    assert torch.equal(ref.face, small.face) and torch.equal(ref.depth, small.depth)


def test_faces_behind_the_camera_and_nan_vertices_are_not_drawn():
    uv = np.array([[10.0, 10.0], [70.0, 10.0], [40.0, 50.0]])
    verts = _lift(uv, np.full(3, 2.0))
    faces = torch.tensor([[0, 2, 1]])
    behind = verts.clone()
    behind[0, 2] = -1.0
    assert not rasterize(behind, faces, K, SIZE).mask.any()
    nan = verts.clone()
    nan[1, 0] = float("nan")
    assert not rasterize(nan, faces, K, SIZE).mask.any()
    assert not rasterize(verts[:0], faces[:0], K, SIZE).mask.any()  # nothing at all


def test_bad_input_is_refused_by_name():
    verts = torch.zeros(3, 3)
    faces = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="vertices must be"):
        rasterize(torch.zeros(3, 2), faces, K, SIZE)
    with pytest.raises(ValueError, match="faces must be"):
        rasterize(verts, faces.float(), K, SIZE)
    with pytest.raises(ValueError, match="faces index vertices outside"):
        rasterize(verts, torch.tensor([[0, 1, 3]]), K, SIZE)
    with pytest.raises(ValueError, match="K must be"):
        rasterize(verts, faces, K * float("nan"), SIZE)
    with pytest.raises(ValueError, match="image_size"):
        rasterize(verts, faces, K, (0, 10))
