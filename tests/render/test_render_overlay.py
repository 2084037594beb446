"""Overlay pictures on a real fit of messi5.jpg: the mesh changes the pixels of the person's silhouette and
not those far from it, the side view is beside the photo, low-confidence keypoints are not drawn, ids are."""
import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import fitlib
from fitlib.render import compose_overlay, render_maps, side_view_vertices

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def messi():
    return fitlib.fit(DATA / "messi5.jpg")


@pytest.fixture(scope="module")
def image():
    return fitlib.load_image(DATA / "messi5.jpg")


def _changed(a, b):
    return np.abs(a.astype(int) - b.astype(int)).sum(-1) > 0


def test_mesh_changes_the_silhouette_and_nothing_far_from_it(messi, image, open_model):
    overlay = messi.render_overlay(image, open_model, keypoints=False, ids=False)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    silhouette = render_maps(messi, open_model).person == 0
    inner = cv2.erode(silhouette.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    near = cv2.dilate(silhouette.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    changed = _changed(overlay, image)
    assert changed[inner].mean() > 0.99
    assert not changed[~near].any()
    # the body is shaded, not flat: the mesh's own colour varies over it
    alone = compose_overlay(image, messi.vertices(open_model), open_model.faces, messi.K, alpha=1.0,
                            show_keypoints=False, show_ids=False)
    assert alone[inner].std(0).mean() > 8


def test_side_view_is_beside_the_photo(messi, image, open_model):
    front = messi.render_overlay(image, open_model)
    both = messi.render_overlay(image, open_model, side_view=True)
    H, W = image.shape[:2]
    assert both.shape == (H, 2 * W, 3)
    np.testing.assert_array_equal(both[:, :W], front)
    side = both[:, W:]
    body = (np.abs(side.astype(int) - 255).sum(-1) > 30)
    body[: 20 * max(1, round(max(H, W) / 450))] = False  # the caption
    assert body.sum() > 2000  # the body on a white background
    ys, xs = np.nonzero(body)
    assert 0 < xs.min() and xs.max() < W - 1 and 0 < ys.min() and ys.max() < H - 1  # all of it in frame


def test_side_view_turns_about_the_vertical_axis(messi, open_model):
    v = messi.vertices(open_model)
    turned = side_view_vertices(v, messi.K, messi.image_size)
    a, b = v[0, ::500], turned[0, ::500]
    np.testing.assert_allclose(np.linalg.norm(a[:, None] - a[None], axis=-1),
                               np.linalg.norm(b[:, None] - b[None], axis=-1), atol=1e-9)  # rigid
    np.testing.assert_allclose(b[:, 1] - b[:, 1].mean(), a[:, 1] - a[:, 1].mean(), atol=1e-9)  # heights kept
    # what was farther from the camera is now to the right
    assert np.corrcoef(a[:, 2], b[:, 0])[0, 1] > 0.99
    assert np.isnan(side_view_vertices(np.full((1, 4, 3), np.nan), messi.K, messi.image_size)).all()


def test_only_confident_input_keypoints_are_drawn(messi, image, open_model):
    """A keypoint moved to an empty corner is drawn there when confident, not when below the threshold."""
    kps = messi.keypoints.copy()
    kps[0, 0, :2] = (30.0, image.shape[0] - 30.0)  # the nose, moved far from the body
    corner = (slice(image.shape[0] - 45, image.shape[0] - 15), slice(15, 45))
    for conf, drawn in ((0.9, True), (0.1, False)):
        kps[0, 0, 2] = conf
        r = dataclasses.replace(messi, keypoints=kps)
        overlay = r.render_overlay(image, open_model, ids=False)
        assert _changed(overlay[corner], image[corner]).any() == drawn


def test_ids_are_drawn_above_the_person(messi, image, open_model):
    with_ids = messi.render_overlay(image, open_model)
    without = messi.render_overlay(image, open_model, ids=False)
    diff = _changed(with_ids, without)
    ys, xs = np.nonzero(diff)
    assert len(ys) > 50
    v = messi.vertices(open_model)[0]
    top = (v[:, 1] / v[:, 2] * messi.K[1, 1] + messi.K[1, 2]).min()
    assert ys.max() <= top + 1  # the label sits above the head


def test_unfitted_people_are_labelled_at_their_keypoints(messi, image, open_model):
    nobody = dataclasses.replace(messi, fitted=np.array([False]))
    overlay = nobody.render_overlay(image, open_model, side_view=True)
    assert overlay.shape == (image.shape[0], 2 * image.shape[1], 3)
    assert _changed(overlay[:, :image.shape[1]], image).any()  # keypoints and the label are drawn


def test_bad_overlay_input(messi, image, open_model):
    v, f = messi.vertices(open_model), open_model.faces
    with pytest.raises(ValueError, match="image must be"):
        compose_overlay(image.astype(np.float32), v, f, messi.K)
    with pytest.raises(ValueError, match="alpha"):
        compose_overlay(image, v, f, messi.K, alpha=math.inf)
    with pytest.raises(ValueError, match="keypoints must be"):
        compose_overlay(image, v, f, messi.K, keypoints=np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match="supersample"):
        messi.render_overlay(image, open_model, supersample=8)
