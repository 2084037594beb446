"""Keypoint layouts: names, flip pairs, edges and conversions between layouts."""
import numpy as np
import pytest

from fitlib.body.layouts import LAYOUTS, KeypointLayout, conversion_matrix, convert_keypoints, get_layout


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def _mirror_name(name: str) -> str:
    if "left" in name:
        return name.replace("left", "right")
    return name.replace("right", "left")


def _keypoints(layout: str, rng, batch=(), dtype=np.float64) -> np.ndarray:
    n = len(get_layout(layout))
    xy = rng.uniform(0, 500, size=batch + (n, 2))
    conf = rng.uniform(0.1, 1.0, size=batch + (n, 1))
    return np.concatenate([xy, conf], -1).astype(dtype)


def test_known_layouts():
    assert set(LAYOUTS) == {"coco17", "coco17_feet", "body25", "openpose18", "mediapipe33", "smpl24", "spin24",
                            "world19"}
    sizes = {"coco17": 17, "coco17_feet": 23, "body25": 25, "openpose18": 18, "mediapipe33": 33, "smpl24": 24,
             "spin24": 24, "world19": 19}
    for name, layout in LAYOUTS.items():
        assert len(layout) == sizes[name] and len(set(layout.names)) == len(layout)
    # mmpose's COCO order and OpenPose BODY_25's order, spot-checked
    assert LAYOUTS["coco17"].names[:3] == ("nose", "left_eye", "right_eye")
    assert LAYOUTS["coco17"].index("right_ankle") == 16
    assert LAYOUTS["body25"].names[1] == "neck" and LAYOUTS["body25"].names[8] == "mid_hip"
    assert LAYOUTS["body25"].index("left_heel") == 21 and LAYOUTS["body25"].index("right_heel") == 24
    assert LAYOUTS["mediapipe33"].index("left_wrist") == 15 and LAYOUTS["mediapipe33"].index("right_foot_index") == 32


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_flip_pairs_are_mirrors(name):
    layout = LAYOUTS[name]
    flip = np.array(layout.flip_index)
    assert np.array_equal(flip[flip], np.arange(len(layout)))  # an involution
    sided = 0
    for i, j in enumerate(flip):
        a, b = layout.names[i], layout.names[j]
        if "left" in a or "right" in a:
            assert i != j and b == _mirror_name(a), (a, b)
            sided += 1
        else:
            assert i == j, (a, b)  # central points map to themselves
    assert len(layout.flip_pairs) * 2 == sided > 0
    for i, j in layout.flip_pairs:
        assert i < j and ("left" in layout.names[i]) != ("left" in layout.names[j])


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_edges_are_valid_and_flip_symmetric(name):
    layout = LAYOUTS[name]
    assert len(layout.edges) >= len(layout) - 1  # every point drawn (a tree at least)
    edges = {frozenset(e) for e in layout.edges}
    for a, b in layout.edges:
        assert 0 <= a < len(layout) and 0 <= b < len(layout) and a != b
        assert frozenset((layout.flip_index[a], layout.flip_index[b])) in edges
    drawn = {i for e in layout.edges for i in e}
    assert drawn == set(range(len(layout)))


def test_spin24_is_spins_part_order_and_flip():
    """spin24 is SPIN's ``part`` order (constants.JOINT_NAMES[25:]) with SPIN's J24_FLIP_PERM as flip_index,
    one definition shared with the SPIN npz writer, and COCO-17 converts onto its 12 limb and 5 face points."""
    from fitlib.body.layouts import SPIN_PART_NAMES
    from fitlib.interop import spin_npz

    layout = get_layout("spin24")
    assert layout.names is SPIN_PART_NAMES and spin_npz.SPIN_PART_NAMES is SPIN_PART_NAMES
    assert layout.names[0] == "right_ankle" and layout.names[11] == "left_wrist" and layout.names[19] == "nose"
    assert list(layout.flip_index) == [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20,
                                       23, 22]
    kp = _keypoints("coco17", np.random.default_rng(6))
    out = convert_keypoints(kp, "coco17", "spin24")
    coco = get_layout("coco17")
    shared = [i for i, n in enumerate(layout.names) if n in coco.names]
    assert len(shared) == 17
    for i in shared:
        np.testing.assert_array_equal(out[i], kp[coco.index(layout.names[i])])
    others = [i for i in range(24) if i not in shared]  # LSP / MPII / H36M points: not COCO points
    assert np.isnan(out[others, :2]).all() and (out[others, 2] == 0).all()
    back = convert_keypoints(out, "spin24", "coco17")
    np.testing.assert_array_equal(back, kp)


def test_get_layout():
    layout = get_layout("coco17")
    assert get_layout(layout) is layout and isinstance(layout, KeypointLayout)
    with pytest.raises(ValueError, match="unknown keypoint layout 'coco18'"):
        get_layout("coco18")
    with pytest.raises(ValueError, match="no point 'neck'"):
        layout.index("neck")


def test_coco17_to_body25(dtype):
    rng = np.random.default_rng(0)
    kp = _keypoints("coco17", rng, dtype=dtype)
    out = convert_keypoints(kp, "coco17", "body25")
    coco, body = get_layout("coco17"), get_layout("body25")
    assert out.shape == (25, 3)
    for name in coco.names:  # shared points copied with their confidence
        np.testing.assert_allclose(out[body.index(name)], kp[coco.index(name)], rtol=1e-6)
    ls, rs = kp[coco.index("left_shoulder")], kp[coco.index("right_shoulder")]
    neck = out[body.index("neck")]
    np.testing.assert_allclose(neck[:2], (ls[:2] + rs[:2]) / 2, rtol=1e-6)
    assert neck[2] == pytest.approx(min(ls[2], rs[2]))
    lh, rh = kp[coco.index("left_hip")], kp[coco.index("right_hip")]
    np.testing.assert_allclose(out[body.index("mid_hip"), :2], (lh[:2] + rh[:2]) / 2, rtol=1e-6)
    for name in ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"):
        row = out[body.index(name)]
        assert np.isnan(row[:2]).all() and row[2] == 0.0


def test_feet_and_batch_dims():
    rng = np.random.default_rng(1)
    kp = _keypoints("coco17_feet", rng, batch=(2, 3))
    out = convert_keypoints(kp, "coco17_feet", "body25")
    assert out.shape == (2, 3, 25, 3) and np.isfinite(out).all()  # coco17 + feet gives every BODY_25 point
    for b in range(2):
        for t in range(3):
            np.testing.assert_array_equal(out[b, t], convert_keypoints(kp[b, t], "coco17_feet", "body25"))
    back = convert_keypoints(out, "body25", "coco17_feet")
    np.testing.assert_allclose(back, kp)


def test_mediapipe_to_coco():
    rng = np.random.default_rng(2)
    kp = _keypoints("mediapipe33", rng)
    out = convert_keypoints(kp, "mediapipe33", "coco17")
    mp, coco = get_layout("mediapipe33"), get_layout("coco17")
    assert np.isfinite(out).all()
    for i, name in enumerate(coco.names):
        np.testing.assert_array_equal(out[i], kp[mp.index(name)])


def test_smpl24_joints_are_not_coco_points():
    # SMPL joints are joint centres, not surface keypoints: nothing is shared
    out = convert_keypoints(_keypoints("smpl24", np.random.default_rng(3)), "smpl24", "coco17")
    assert np.isnan(out[:, :2]).all() and (out[:, 2] == 0).all()


def test_low_confidence_source_propagates():
    kp = _keypoints("coco17", np.random.default_rng(4))
    kp[get_layout("coco17").index("right_hip"), 2] = 0.0
    out = convert_keypoints(kp, "coco17", "body25")
    assert out[get_layout("body25").index("mid_hip"), 2] == 0.0


@pytest.mark.parametrize("src,dst", [("coco17", "body25"), ("body25", "coco17"), ("mediapipe33", "coco17_feet"),
                                     ("coco17_feet", "mediapipe33"), ("smpl24", "smpl24")])
def test_conversion_matrix_rows(src, dst):
    M = conversion_matrix(src, dst)
    assert M.shape == (len(get_layout(dst)), len(get_layout(src)))
    sums = M.sum(1)
    assert np.all((np.abs(sums - 1) < 1e-12) | (sums == 0)) and (M >= 0).all()


@pytest.mark.parametrize("shape", [(17, 2), (16, 3), (17,), (3, 17), (2, 18, 3)])
def test_wrong_shapes_raise(shape):
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 17, 3\]"):
        convert_keypoints(np.zeros(shape), "coco17", "body25")


def test_unknown_layout_raises():
    with pytest.raises(ValueError, match="unknown keypoint layout"):
        convert_keypoints(np.zeros((17, 3)), "coco17", "openpose")


def test_missing_points_stay_missing_through_conversions():
    kp = np.random.default_rng(0).uniform(10, 100, (2, 17, 3))
    kp[..., 2] = 0.9
    kp[0, 5, :2] = np.nan  # left shoulder lost, with a confident score
    b25 = convert_keypoints(kp, "coco17", "body25")
    ls, neck = LAYOUTS["body25"].index("left_shoulder"), LAYOUTS["body25"].index("neck")
    assert np.isnan(b25[0, ls, :2]).all() and b25[0, ls, 2] == 0
    assert np.isnan(b25[0, neck, :2]).all() and b25[0, neck, 2] == 0  # derived from a missing point
    assert np.isfinite(b25[1, neck]).all()
    back = convert_keypoints(b25, "body25", "coco17_feet")
    feet = [LAYOUTS["coco17_feet"].index(n) for n in ("left_heel", "right_big_toe")]
    assert np.isnan(back[:, feet, :2]).all() and (back[:, feet, 2] == 0).all()


def test_missing_point_with_negative_confidence_has_zero_confidence():
    kp = np.random.default_rng(5).uniform(10, 100, (17, 3))
    kp[get_layout("coco17").index("left_shoulder"), 2] = -0.5
    out = convert_keypoints(kp, "coco17", "body25")
    for point in ("left_shoulder", "neck"):
        i = get_layout("body25").index(point)
        assert np.isnan(out[i, :2]).all() and out[i, 2] == 0, point
