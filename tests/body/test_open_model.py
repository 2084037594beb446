"""The open body model: SMPL layout and semantics, agreement with anny, keypoint layouts, deterministic build."""
import math

import numpy as np
import pytest
import smplx
import torch
from scipy.spatial import cKDTree

from fitlib.body.model import load_body_model
from fitlib.camera import default_intrinsics, project
from fitlib.body.layouts import LAYOUTS, get_layout
from fitlib.body.skeleton import global_rotations
from fitlib.body.open_model import (BuildConfig, _AnnyPoser, _anny_model, _sample_phenotypes,
                               bone_to_joint, build_open_model, ensure_open_model, open_model_path,
                               sample_plausible_poses, save_model_file)
from fitlib.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def model_path():
    return ensure_open_model(progress=False)


@pytest.fixture(scope="module")
def body():
    return load_body_model("open", dtype=torch.float64)


def test_loads_through_plain_smplx(model_path, dtype):
    smpl = smplx.SMPL(model_path=str(model_path), dtype=dtype)
    assert smpl.v_template.shape == (13718, 3) and smpl.faces.shape == (27420, 3)
    assert smpl.parents.tolist()[1:] == list(SMPL_PARENTS[1:])
    with torch.no_grad():
        out = smpl()  # zero pose, zero betas: the mean body in the T-pose
    assert out.vertices.dtype == dtype and torch.isfinite(out.vertices).all()
    torch.testing.assert_close(out.vertices[0], smpl.v_template)
    betas = torch.zeros(1, 10, dtype=dtype)
    betas[0, 0] = 2.0
    with torch.no_grad():
        tall = smpl(betas=betas)
    height = lambda v: v[0, :, 1].max() - v[0, :, 1].min()  # noqa: E731
    assert 1.55 < float(height(out.vertices)) < 1.85  # an adult in metres, y up
    assert abs(float(height(tall.vertices) - height(out.vertices))) > 0.05  # the first beta changes the stature


def test_identity_pose_is_the_t_pose(body):
    out = body(torch.zeros(1, 24, 3, dtype=torch.float64), torch.zeros(10, dtype=torch.float64), vertices=True)
    joints, verts = out.joints[0].numpy(), out.vertices[0].numpy()
    np.testing.assert_allclose(verts, body.smpl.v_template.numpy(), atol=1e-12)
    for side, sign in (("left", 1), ("right", -1)):
        arm = joints[[J[f"{side}_{p}"] for p in ("shoulder", "elbow", "wrist", "hand")]]
        assert np.ptp(arm[:, 1]) < 0.003 and np.ptp(arm[:, 2]) < 0.003  # horizontal and straight, in mm
        assert np.all(np.diff(sign * arm[:, 0]) > 0.05)  # pointing out along +-x
        # palms down: the hand is flat in the horizontal plane and the thumb points forward
        hand = verts[body.smpl.lbs_weights[:, J[f"{side}_hand"]].numpy() > 0.5] - joints[J[f"{side}_wrist"]]
        assert np.ptp(hand[:, 1]) < 0.6 * np.ptp(hand[:, 2])
        wrist_skinned = verts[body.smpl.lbs_weights[:, J[f"{side}_wrist"]].numpy() > 0.5] - joints[J[f"{side}_wrist"]]
        thumb_tip = wrist_skinned[np.hypot(wrist_skinned[:, 1], wrist_skinned[:, 2]).argmax()]
        assert thumb_tip[2] > 0.04 and sign * thumb_tip[0] > 0.03
    # legs straight down, the body faces +z (the toes are in front of the ankles)
    for side in ("left", "right"):
        leg = joints[[J[f"{side}_{p}"] for p in ("hip", "knee", "ankle")]]
        assert np.all(np.diff(leg[:, 1]) < -0.3) and np.ptp(leg[:, 0]) < 0.1  # feet slightly apart
        assert joints[J[f"{side}_foot"], 2] > joints[J[f"{side}_ankle"], 2] + 0.05
    assert joints[J["head"], 1] > joints[J["neck"], 1] > joints[J["spine3"], 1] > joints[J["pelvis"], 1]


def test_template_is_left_right_symmetric(body):
    v = body.smpl.v_template.numpy()
    dist, _ = cKDTree(v).query(v * [-1, 1, 1])
    assert dist.max() < 0.003 and dist.mean() < 0.001
    joints = body.joint_template.numpy()
    mirror = [SMPL_JOINT_NAMES.index(n.replace("left", "X").replace("right", "left").replace("X", "right"))
              for n in SMPL_JOINT_NAMES]
    np.testing.assert_allclose(joints[mirror] * [-1, 1, 1], joints, atol=0.002)


def test_skinning_weights_and_regressor(body):
    w = body.smpl.lbs_weights
    torch.testing.assert_close(w.sum(1), torch.ones_like(w[:, 0]))
    assert (w >= 0).all()
    torch.testing.assert_close(body.smpl.J_regressor.sum(1), torch.ones(24, dtype=torch.float64))


def test_bone_to_joint():
    assert SMPL_JOINT_NAMES[bone_to_joint("lowerarm02.L")] == "left_elbow"
    assert SMPL_JOINT_NAMES[bone_to_joint("finger1-2.R")] == "right_wrist"  # the thumb moves with the wrist
    assert SMPL_JOINT_NAMES[bone_to_joint("finger3-3.L")] == "left_hand"
    assert SMPL_JOINT_NAMES[bone_to_joint("toe2-1.R")] == "right_foot"
    assert SMPL_JOINT_NAMES[bone_to_joint("spine05")] == "pelvis"
    with pytest.raises(ValueError, match="no SMPL joint"):
        bone_to_joint("tail.L")


def test_agrees_with_anny_on_held_out_bodies(body):
    """Issue targets: mean vertex error < 2 mm, mean joint error < 1.5 mm (see benchmarks/open_model_quality.py)."""
    n = 8
    model = _anny_model(torch.float64)
    poser = _AnnyPoser(model)
    phen = _sample_phenotypes(model, n, BuildConfig(), 4242)  # the build samples with seeds 0, 1, 2
    pose = sample_plausible_poses(n, 2424)
    rest = poser.rest(phen)
    delta = poser.tpose_rotations(rest["rest_bone_heads"])
    t_ref = poser.pose(phen, rest["rest_bone_poses"], delta)
    ref = poser.pose(phen, rest["rest_bone_poses"], delta, global_rotations(pose))
    D = body.smpl.shapedirs.reshape(-1, 10)
    betas = torch.linalg.lstsq(D, (t_ref["vertices"] - body.smpl.v_template).reshape(n, -1).T).solution.T
    out = body(pose, betas, vertices=True)
    v_err = (out.vertices - ref["vertices"]).norm(dim=-1) * 1000
    j_err = (out.joints - ref["joints"]).norm(dim=-1) * 1000
    assert v_err.mean() < 2.0 and j_err.mean() < 1.5
    assert v_err.max() < 40 and j_err.max() < 15
    # the poses are not trivial: anny's mesh moved by decimetres from its T-pose
    assert (ref["vertices"] - t_ref["vertices"]).norm(dim=-1).max() > 0.2


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layouts_map_onto_the_body(body, name):
    layout = get_layout(name)
    out = body(torch.zeros(1, 24, 3, dtype=torch.float64), torch.zeros(10, dtype=torch.float64), layout=layout)
    kp, mask = out.keypoints[0].numpy(), out.keypoint_mask.numpy()
    # the open model produces every point except MediaPipe's mouth corners and SPIN's dataset-specific points
    # (LSP, MPII, H36M: no definition for them)
    missing = {"mediapipe33": ["mouth_left", "mouth_right"],
               "spin24": [n for n in layout.names if n.startswith(("lsp_", "mpii_", "h36m_"))]}
    assert [n for n, m in zip(layout.names, mask) if not m] == missing.get(name, [])
    assert (kp[~mask] == 0).all()
    # mirror images: the flipped point is the point mirrored across the body's mid-plane
    np.testing.assert_allclose((kp[list(layout.flip_index)] * [-1, 1, 1])[mask], kp[mask], atol=0.005)
    for i, j in layout.flip_pairs:
        left, right = (i, j) if "left" in layout.names[i] else (j, i)
        if not (mask[i] and mask[j]):
            continue
        assert kp[left, 0] > kp[right, 0] + 0.02, (layout.names[left], layout.names[right])  # left is at +x
    pos = {n: kp[i] for i, n in enumerate(layout.names)}
    head = [p for p in ("nose", "smpl_head") if p in pos][0]
    for side in ("left", "right"):
        shoulder = pos.get(f"{side}_shoulder", pos.get(f"smpl_{side}_shoulder"))
        ankle = pos.get(f"{side}_ankle", pos.get(f"smpl_{side}_ankle"))
        assert pos[head][1] > shoulder[1] + 0.1 > ankle[1] + 1.0
        if f"{side}_heel" in pos:
            toe = pos.get(f"{side}_big_toe", pos.get(f"{side}_foot_index"))
            assert toe[2] > pos[f"{side}_heel"][2] + 0.1  # the feet point forward (+z)
    if "nose" in pos:
        assert pos["nose"][2] > pos["left_ear"][2] + 0.05  # the face looks forward (+z)


def test_left_wrist_on_the_left_seen_from_behind(body):
    """A camera behind the body looking along +z (OpenCV frame: x right, y down) sees the left wrist on the left."""
    # camera frame = world rotated by pi about z (x -> -x, y -> -y), 3 m in front of the camera
    pose = torch.zeros(1, 24, 3, dtype=torch.float64)
    pose[0, 0] = torch.tensor([0.0, 0.0, math.pi])
    out = body(pose, torch.zeros(10, dtype=torch.float64), torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64),
               layout="coco17")
    px = project(out.keypoints, default_intrinsics(480, 640, dtype=torch.float64))[0]
    coco = get_layout("coco17")
    assert px[coco.index("left_wrist"), 0] < 320 < px[coco.index("right_wrist"), 0]
    assert px[coco.index("nose"), 1] < px[coco.index("left_hip"), 1] < px[coco.index("left_ankle"), 1]  # head up
    # and from the front (camera looking along -z) the left wrist is on the right of the image
    pose[0, 0] = torch.tensor([math.pi, 0.0, 0.0])  # x -> x, y -> -y, z -> -z
    out = body(pose, torch.zeros(10, dtype=torch.float64), torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64),
               layout="coco17")
    px = project(out.keypoints, default_intrinsics(480, 640, dtype=torch.float64))[0]
    assert px[coco.index("left_wrist"), 0] > 320 > px[coco.index("right_wrist"), 0]


def test_small_build_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FITLIB_CACHE_DIR", str(tmp_path / "cache"))
    config = BuildConfig(num_shapes=60, num_pose_samples=60)
    path = open_model_path(config)
    assert path.parent == tmp_path / "cache" and not path.exists()
    assert ensure_open_model(config, progress=False) == path and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert ensure_open_model(config, progress=False) == path and path.stat().st_mtime_ns == stamp  # cached
    data, report = build_open_model(config, progress=False)
    again = tmp_path / "again.pkl"
    save_model_file(data, again)
    assert again.read_bytes() == path.read_bytes()
    assert report.variance_explained > 0.995 and report.regressor_error_mean < 0.001
    # a different config is a different cache entry
    assert open_model_path(BuildConfig(num_shapes=61, num_pose_samples=60)) != path
    small = load_body_model(path, dtype=torch.float64)
    assert small.num_vertices == 13718


def test_cache_writes_are_atomic_under_concurrency(model_path, tmp_path):
    """Builders writing the cache at once (threads here, processes in real use) each write a temporary file
    of their own and rename it: every write succeeds, the result loads, and no temporary file is left."""
    from concurrent.futures import ThreadPoolExecutor

    from fitlib.body.model_file import read_model_file

    data = read_model_file(model_path)
    target = tmp_path / "open_smpl_test.pkl"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: save_model_file(data, target), range(4)))
    back = read_model_file(target)
    assert np.array_equal(back["v_template"], data["v_template"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name, target.name + ".sha256"]


# ------------------------------------------------------------------------------ the checksummed cache
@pytest.fixture
def fake_build(tmp_path, monkeypatch, make_model):
    """A temporary FITLIB_CACHE_DIR and a build that returns a synthetic 6890-vertex model at once (no anny);
    ``fake_build.calls`` counts builds."""
    from fitlib.body import open_model

    monkeypatch.setenv("FITLIB_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def build(config=None, progress=True):
        calls.append(config)
        return make_model(6890, seed=len(calls), posedirs_dtype=np.float32), open_model.BuildReport()

    monkeypatch.setattr(open_model, "build_open_model", build)
    build.calls = calls
    return build


def test_cache_records_a_checksum(fake_build):
    import hashlib
    import json

    from fitlib.body.open_model import checksum_path

    path = ensure_open_model(progress=False)
    record = json.loads(checksum_path(path).read_text())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["size"] == path.stat().st_size and record["build_key"] == BuildConfig().key()
    assert ensure_open_model(progress=False) == path and len(fake_build.calls) == 1  # verified, not rebuilt


def _flip_middle(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit inside the pose blend shapes: it would load and change fits
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage,reason", [
    (_flip_middle, "does not match its recorded SHA-256"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]), "bytes, but"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\x00" * 4096), "bytes, but"),
    (lambda p: p.with_name(p.name + ".sha256").write_text("{not json"), "unreadable checksum record"),
], ids=["bit-flip", "truncated", "appended", "bad-record"])
def test_damaged_cache_is_rebuilt_saying_why(fake_build, monkeypatch, caplog, damage, reason):
    """Damage found by the checksum is rebuilt without the damaged bytes being unpickled, and the log says why."""
    from fitlib.body import model_file

    path = ensure_open_model(progress=False)
    damage(path)
    reads = []
    monkeypatch.setattr(model_file, "read_model_file", lambda p: reads.append(p))
    with caplog.at_level("WARNING", logger="fitlib.body.open_model"):
        assert ensure_open_model(progress=False) == path
    assert len(fake_build.calls) == 2 and reads == []
    assert reason in caplog.text and "building it again" in caplog.text
    monkeypatch.undo()


def test_damaged_cache_is_rebuilt_by_load_body_model(fake_build, caplog):
    from fitlib.body.model_file import read_model_file

    path = ensure_open_model(progress=False)
    _flip_middle(path)
    with caplog.at_level("WARNING", logger="fitlib.body.open_model"):
        body = load_body_model("open", dtype=torch.float64)
    assert body.num_vertices == 6890 and len(fake_build.calls) == 2 and "SHA-256" in caplog.text
    np.testing.assert_array_equal(body.faces, read_model_file(path)["f"])


def test_any_load_error_rebuilds_the_open_model(fake_build, monkeypatch, caplog):
    """Not only ValueError: an OverflowError (what one damaged byte gave before) also rebuilds."""
    from fitlib.body import model as model_module

    ensure_open_model(progress=False)
    real, failures = model_module.read_model_file, []

    def flaky(path):
        if not failures:
            failures.append(path)
            raise OverflowError("Python int too large to convert to C long")
        return real(path)

    monkeypatch.setattr(model_module, "read_model_file", flaky)
    with caplog.at_level("WARNING", logger="fitlib.body.open_model"):
        body = load_body_model("open", dtype=torch.float64)
    assert body.num_vertices == 6890 and len(fake_build.calls) == 2
    assert "OverflowError" in caplog.text and "building it again" in caplog.text


def test_cache_from_before_checksums_is_adopted(fake_build, caplog):
    from fitlib.body.open_model import checksum_path

    path = ensure_open_model(progress=False)
    checksum_path(path).unlink()  # as an older fitlib left it
    with caplog.at_level("WARNING", logger="fitlib.body.open_model"):
        assert ensure_open_model(progress=False) == path
    assert len(fake_build.calls) == 1 and checksum_path(path).is_file() and "checksum is now recorded" in caplog.text
    checksum_path(path).unlink()
    path.write_bytes(path.read_bytes()[:1000])  # an old cache that does not load: rebuilt
    ensure_open_model(progress=False)
    assert len(fake_build.calls) == 2


def _read_only_folder(tmp_path):
    import os
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        tempfile.mkstemp(dir=folder)
    except OSError:
        return folder
    folder.chmod(0o755)  # root ignores permissions: use a folder the kernel refuses
    for candidate in ("/sys/kernel", "/sys"):
        try:
            os.close(tempfile.mkstemp(dir=candidate)[0])
        except OSError:
            return candidate
    pytest.skip("no read-only folder available")


def test_read_only_cache_folder_fails_before_building(fake_build, tmp_path, monkeypatch):
    monkeypatch.setenv("FITLIB_CACHE_DIR", str(_read_only_folder(tmp_path)))
    with pytest.raises(ValueError, match="is not writable.*set FITLIB_CACHE_DIR to a writable folder"):
        ensure_open_model(progress=False)
    with pytest.raises(ValueError, match="FITLIB_CACHE_DIR"):
        load_body_model("open")
    assert fake_build.calls == []  # said before the 3-minute build, not after it


def test_nearly_full_cache_disk_fails_before_building(fake_build, monkeypatch):
    import collections

    from fitlib.body import open_model

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(open_model.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10 * 2**20, 10 * 2**20))
    with pytest.raises(ValueError, match="has only 10 MiB free"):
        ensure_open_model(progress=False)
    assert fake_build.calls == []
