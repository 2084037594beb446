"""The body-model interface: fast joints-and-keypoints path vs the full smplx path, batching, errors, gradients.

Two models are exercised: the open model (13,718 vertices, keypoints from anny's regressor) and
an SMPL-layout file with SMPL's 6,890 vertices.  No licensed SMPL file exists on this machine, so
the latter is a *synthetic stand-in for the file-format path only* (``smpl_sized_file``): 6,890
vertices subsampled from the open model with their skinning weights, shape and pose blend shapes,
a joint regressor averaging nearby vertices and arbitrary faces.  It is not a body with SMPL's
topology; it exists to drive the code path that takes keypoints from SMPL vertex ids.
"""
import numpy as np
import pytest
import torch

from fitlib.body.model import SMPL_VERTEX_POINTS, load_body_model
from fitlib.body.layouts import LAYOUTS, get_layout
from fitlib.body.model_file import REQUIRED_KEYS, read_model_file
from fitlib.body.open_model import ensure_open_model, sample_plausible_poses


@pytest.fixture(scope="module")
def smpl_sized_file(tmp_path_factory):
    """A synthetic SMPL-layout .npz with 6,890 vertices: a stand-in for the file-format path, not a body."""
    data = read_model_file(ensure_open_model(progress=False))
    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(len(data["v_template"]), 6890, replace=False))
    v = data["v_template"][ids]
    joints = data["J_regressor"] @ data["v_template"]
    J_regressor = np.zeros((24, 6890))
    for j in range(24):
        near = np.argsort(np.linalg.norm(v - joints[j], axis=1))[:16]
        J_regressor[j, near] = 1 / 16
    arrays = {
        "v_template": v,
        "shapedirs": data["shapedirs"][ids],
        "posedirs": data["posedirs"][ids].reshape(-1, 207),  # SMPL files store posedirs as [V*3, 207] or [V, 3, 207]
        "J_regressor": J_regressor,
        "weights": data["weights"][ids],
        "kintree_table": data["kintree_table"],
        "f": rng.integers(0, 6890, size=(13776, 3)),
    }
    assert set(arrays) == set(REQUIRED_KEYS)
    path = tmp_path_factory.mktemp("smpl_stand_in") / "SMPL_MALE.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(params=["open", "smpl_sized"])
def model_source(request, smpl_sized_file):
    return "open" if request.param == "open" else smpl_sized_file


def _inputs(batch: int, dtype, seed: int = 0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    pose = sample_plausible_poses(batch, seed + 100, dtype=torch.float64)
    pose[:, 0] = torch.randn(batch, 3, generator=g, dtype=torch.float64)
    betas = torch.randn(batch, 10, generator=g, dtype=torch.float64) * 1.5
    transl = torch.randn(batch, 3, generator=g, dtype=torch.float64)
    return tuple(x.to(device=device, dtype=dtype) for x in (pose, betas, transl))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_fast_path_equals_full_path(model_source, layout, dtype, device):
    body = load_body_model(model_source, dtype=dtype, device=device)
    pose, betas, transl = _inputs(16, dtype, seed=1, device=device)
    full = body(pose, betas, transl, layout=layout, vertices=True)
    fast = body(pose, betas, transl, layout=layout, vertices=False)
    assert fast.vertices is None and full.vertices.shape == (16, body.num_vertices, 3)
    assert fast.joints.dtype == dtype and fast.joints.device.type == device.type
    assert fast.keypoints.shape == full.keypoints.shape == (16, len(get_layout(layout)), 3)
    torch.testing.assert_close(fast.joints, full.joints, rtol=0, atol=1e-5)
    torch.testing.assert_close(fast.keypoints, full.keypoints, rtol=0, atol=1e-5)
    assert torch.equal(fast.keypoint_mask, full.keypoint_mask)
    # the bodies really move: keypoints spread over the body, not collapsed
    valid = fast.keypoints[:, fast.keypoint_mask]
    assert (valid.amax(1) - valid.amin(1)).norm(dim=-1).min() > 0.5


def test_smpl_vertex_keypoints(smpl_sized_file):
    body = load_body_model(smpl_sized_file, dtype=torch.float64)
    assert body.num_vertices == 6890 and body.name == "SMPL_MALE"
    pose, betas, transl = _inputs(4, torch.float64, seed=2)
    out = body(pose, betas, transl, layout="coco17_feet", vertices=True)
    layout = get_layout("coco17_feet")
    for name in ("nose", "left_eye", "right_ear", "left_big_toe", "right_heel"):
        torch.testing.assert_close(out.keypoints[:, layout.index(name)], out.vertices[:, SMPL_VERTEX_POINTS[name]])
    torch.testing.assert_close(out.keypoints[:, layout.index("left_wrist")], out.joints[:, 20])
    body25 = body(pose, betas, transl, layout="body25")
    b25 = get_layout("body25")
    torch.testing.assert_close(body25.keypoints[:, b25.index("neck")],
                               (out.joints[:, 16] + out.joints[:, 17]) / 2)
    mp = body(pose, betas, layout="mediapipe33")
    missing = [n for n, m in zip(get_layout("mediapipe33").names, mp.keypoint_mask) if not m]
    assert missing == ["mouth_left", "mouth_right"]


@pytest.mark.parametrize("vertices", [False, True])
def test_unproducible_points_are_zero(smpl_sized_file, vertices):
    body = load_body_model(smpl_sized_file, dtype=torch.float64)
    pose, betas, transl = _inputs(3, torch.float64, seed=10)
    out = body(pose, betas, layout="mediapipe33", vertices=vertices)
    assert (~out.keypoint_mask).sum() == 2 and (out.keypoints[:, ~out.keypoint_mask] == 0).all()
    out = body(pose, betas, transl, layout="mediapipe33", vertices=vertices)
    assert (out.keypoints[:, ~out.keypoint_mask] == 0).all()


def test_arbitrary_batch_dims(dtype):
    body = load_body_model("open", dtype=dtype)
    pose, betas, transl = _inputs(6, dtype, seed=3)
    flat = body(pose, betas, transl, layout="coco17")
    for vertices in (False, True):
        out = body(pose.reshape(2, 3, 24, 3), betas.reshape(2, 3, 10), transl.reshape(2, 3, 3), layout="coco17",
                   vertices=vertices)
        assert out.joints.shape == (2, 3, 24, 3) and out.keypoints.shape == (2, 3, 17, 3)
        torch.testing.assert_close(out.keypoints.reshape(6, 17, 3), flat.keypoints, rtol=0, atol=1e-5)
    # [..., 72] is the same as [..., 24, 3]
    out72 = body(pose.reshape(3, 2, 72), betas.reshape(3, 2, 10), layout="coco17")
    torch.testing.assert_close(out72.joints.reshape(6, 24, 3), body(pose, betas).joints)


def test_broadcasting(dtype):
    body = load_body_model("open", dtype=dtype)
    pose, betas, transl = _inputs(5, dtype, seed=4)
    one = betas[0]
    a = body(pose, one, transl[0], layout="coco17_feet")  # one body shape and translation for all poses
    b = body(pose, one.expand(5, 10), transl[:1].expand(5, 3), layout="coco17_feet")
    assert a.joints.shape == (5, 24, 3)
    torch.testing.assert_close(a.keypoints, b.keypoints)
    # betas [4, 1, 10] against poses [5, 24, 3]: a 4 x 5 grid of bodies
    grid = body(pose, betas[:4, None], layout="coco17")
    assert grid.keypoints.shape == (4, 5, 17, 3)
    torch.testing.assert_close(grid.keypoints[2, 3], body(pose[3:4], betas[2:3], layout="coco17").keypoints[0])
    # no transl is zero transl
    torch.testing.assert_close(body(pose, betas).joints, body(pose, betas, torch.zeros(3, dtype=dtype)).joints)


@pytest.mark.parametrize("vertices", [False, True])
def test_empty_batch(vertices):
    model = load_body_model("open")
    out = model(torch.zeros(0, 24, 3), torch.zeros(0, 10), torch.zeros(0, 3), layout="coco17", vertices=vertices)
    assert out.joints.shape == (0, 24, 3) and out.keypoints.shape == (0, 17, 3)
    assert (out.vertices is None) != vertices and (not vertices or out.vertices.shape == (0, model.num_vertices, 3))


def test_translation_and_rest_joints():
    body = load_body_model("open", dtype=torch.float64)
    _, betas, transl = _inputs(3, torch.float64, seed=5)
    zero = torch.zeros(3, 24, 3, dtype=torch.float64)
    out = body(zero, betas, transl, layout="smpl24", vertices=True)
    torch.testing.assert_close(out.joints, body.rest_joints(betas) + transl[:, None])
    torch.testing.assert_close(out.keypoints, out.joints)


@pytest.mark.parametrize("kwargs,match", [
    (dict(pose=torch.zeros(2, 23, 3)), "pose must have shape"),
    (dict(pose=torch.zeros(2, 71)), "pose must have shape"),
    (dict(betas=torch.zeros(2, 9)), "betas must have shape"),
    (dict(betas=torch.zeros(())), "betas must have shape"),
    (dict(transl=torch.zeros(2, 2)), "transl must have shape"),
    (dict(pose=torch.zeros(2, 24, 3).index_fill(1, torch.tensor([5]), float("nan"))), "pose contains NaN"),
    (dict(betas=torch.full((2, 10), float("inf"))), "betas contains NaN or infinite"),
    (dict(transl=torch.tensor([[0.0, float("nan"), 0.0]] * 2)), "transl contains NaN"),
    (dict(layout="coco18"), "unknown keypoint layout 'coco18'"),
])
@pytest.mark.parametrize("vertices", [False, True])
def test_bad_inputs(kwargs, match, vertices):
    body = load_body_model("open")
    args = dict(pose=torch.zeros(2, 24, 3), betas=torch.zeros(2, 10), transl=None, layout="coco17")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        body(args["pose"], args["betas"], args["transl"], layout=args["layout"], vertices=vertices)


def test_non_tensor_inputs():
    body = load_body_model("open")
    with pytest.raises(TypeError, match="torch tensors"):
        body(np.zeros((1, 24, 3)), torch.zeros(10))


def test_incompatible_batch_dims_raise_value_error():
    body = load_body_model("open")
    with pytest.raises(ValueError, match="batch"):
        body(torch.zeros(4, 24, 3), torch.zeros(3, 10))


def test_unbatched_pose():
    body = load_body_model("open", dtype=torch.float64)
    pose, betas, _ = _inputs(1, torch.float64, seed=6)
    out = body(pose[0], betas[0], layout="coco17")
    assert out.joints.shape == (24, 3)
    torch.testing.assert_close(out.keypoints, body(pose, betas, layout="coco17").keypoints[0])


def test_load_errors(tmp_path, smpl_sized_file):
    with pytest.raises(ValueError, match="gender must be"):
        load_body_model("open", gender="other")
    with pytest.raises(FileNotFoundError, match="neither 'open' nor an existing file"):
        load_body_model(tmp_path / "SMPL_NEUTRAL.pkl")
    with pytest.raises(FileNotFoundError, match="neither 'open'"):
        load_body_model("smpl")
    with pytest.raises(FileNotFoundError, match="no SMPL female model"):
        load_body_model(smpl_sized_file.parent, gender="female")
    corrupt = tmp_path / "corrupt.pkl"
    corrupt.write_bytes(b"\x80\x04 not a model")
    with pytest.raises(ValueError, match="not a readable SMPL model file"):
        load_body_model(corrupt)


def test_folder_picks_gender(smpl_sized_file):
    body = load_body_model(smpl_sized_file.parent, gender="male", dtype=torch.float64)
    assert body.num_vertices == 6890 and body.name == "smpl_male"


def test_dtype_and_device(dtype, device):
    body = load_body_model("open", dtype=dtype, device=device)
    pose, betas, transl = _inputs(2, torch.float64, seed=7, device=device)  # float64 inputs are cast to the model's
    out = body(pose, betas, transl, layout="coco17")
    assert out.joints.dtype == out.keypoints.dtype == dtype
    assert out.joints.device.type == out.keypoints.device.type == device.type


def test_gradients_match_full_path():
    body = load_body_model("open", dtype=torch.float64)
    grads = []
    for vertices in (True, False):
        inputs = [x.clone().requires_grad_(True) for x in _inputs(3, torch.float64, seed=8)]
        body(*inputs, layout="coco17_feet", vertices=vertices).keypoints.square().sum().backward()
        grads.append([x.grad for x in inputs])
    for a, b in zip(*grads):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("layout", ["coco17_feet", "body25"])
def test_gradcheck_fast_path(model_source, layout):
    body = load_body_model(model_source, dtype=torch.float64)
    pose, betas, transl = (x.requires_grad_(True) for x in _inputs(2, torch.float64, seed=9))
    # mostly a smaller pose, and one joint at 0.9 pi: the axis-angle map is checked away from zero too
    pose = (pose.detach() * 0.5).index_fill(1, torch.tensor([16]), 0.0).requires_grad_(True)
    with torch.no_grad():
        pose[0, 16] = torch.tensor([0.3, -0.5, 0.8]) / torch.tensor([0.3, -0.5, 0.8]).norm() * 0.9 * torch.pi

    def f(pose, betas, transl):
        return body(pose, betas, transl, layout=layout, vertices=False).keypoints

    assert torch.autograd.gradcheck(f, (pose, betas, transl), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_unknown_device_is_a_clear_error():
    from fitlib.body.model import resolve_device, shared_body_model

    for bad in ("tpu", "cuda:x", 3.5):
        with pytest.raises(ValueError, match="unknown torch device"):
            load_body_model("open", device=bad)
    with pytest.raises(ValueError, match="unknown torch device 'tpu'"):
        shared_body_model("open", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device(None) == torch.device("cpu")


def test_model_identity(smpl_sized_file):
    import hashlib

    from fitlib.body.model import model_identity
    from fitlib.body.open_model import BuildConfig

    ident = model_identity("open")
    assert ident["model"] == "open" and ident["build_key"] == BuildConfig().key() and len(ident["sha256"]) == 64
    ident = model_identity(smpl_sized_file)
    assert ident == {"model": "SMPL_MALE", "file": "SMPL_MALE.npz",
                     "sha256": hashlib.sha256(smpl_sized_file.read_bytes()).hexdigest()}
    with pytest.raises(FileNotFoundError):
        model_identity(smpl_sized_file.parent / "missing.pkl")
