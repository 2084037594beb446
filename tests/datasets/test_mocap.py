"""Tests of fitlib.datasets.mocap: shipped clips, DeepMimic and holosoma conversions, kinematics helpers."""
import numpy as np
import pytest
import roma
import torch

from fitlib.datasets import mocap
from fitlib.body.skeleton import SMPL_JOINT_NAMES, global_rotations

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def clips():
    return mocap.load_mocap("all")


# ---------------------------------------------------------------------------------------------- shipped data

def test_splits_are_disjoint_and_cover_all():
    assert not set(mocap.TRAIN_CLIPS) & set(mocap.EVAL_CLIPS)
    assert set(mocap.TRAIN_CLIPS) | set(mocap.EVAL_CLIPS) == set(mocap.DEEPMIMIC_CLIPS + mocap.HOLOSOMA_CLIPS)
    assert {"dance_a", "dance_b", "kick", "spinkick"} <= set(mocap.EVAL_CLIPS)
    assert any(c in mocap.EVAL_CLIPS for c in mocap.HOLOSOMA_CLIPS)
    assert list(mocap.load_mocap("eval")) == list(mocap.EVAL_CLIPS)
    assert list(mocap.load_mocap("train")) == list(mocap.TRAIN_CLIPS)


def test_shipped_clips(clips):
    assert sum(len(c.poses) for n, c in clips.items() if c.source == "deepmimic") == 1620
    for name, c in clips.items():
        assert c.poses.shape == (len(c.poses), 72) and c.transl.shape == (len(c.poses), 3)
        assert c.poses.dtype == np.float32 and np.isfinite(c.poses).all() and np.isfinite(c.transl).all()
        assert c.fps > 0 and c.licence == mocap.LICENCES[c.source]
        assert np.linalg.norm(c.poses.reshape(-1, 24, 3), axis=-1).max() <= np.pi + 1e-4
        # joints the sources do not measure are at rest
        for j in ("left_collar", "right_collar", "head", "left_hand", "right_hand", "left_foot", "right_foot"):
            assert np.all(c.poses[:, 3 * J[j]:3 * J[j] + 3] == 0), (name, j)
        assert c.body_pose.shape == (len(c.poses), 69)


def test_load_mocap_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        mocap.load_mocap("test")
    with pytest.raises(FileNotFoundError, match="fitlib extract-mocap"):
        mocap.load_mocap("train", path=tmp_path / "missing.npz")


# ---------------------------------------------------------------------------------------------- DeepMimic

def _dm_rest_frames(n=1):
    f = np.zeros((n, 44))
    f[:, [4, 8, 12, 16, 21, 25, 30, 35, 39]] = 1.0  # identity quaternions, w first
    f[:, 2] = 0.9
    return f


def test_deepmimic_rest_has_arms_down():
    poses, transl = mocap.deepmimic_to_smpl(_dm_rest_frames())
    joints = mocap.forward_kinematics(torch.tensor(poses, dtype=torch.float64))[0]
    for side in ("left", "right"):
        arm = joints[J[f"{side}_wrist"]] - joints[J[f"{side}_shoulder"]]
        assert arm[1] < -0.45 and abs(arm[0]) < 0.05 and abs(arm[2]) < 0.05  # hanging along the body
        leg = joints[J[f"{side}_ankle"]] - joints[J[f"{side}_hip"]]
        assert leg[1] < -0.7 and abs(leg[2]) < 0.1
    np.testing.assert_allclose(transl[0], [0.0, 0.9, 0.0])


def test_deepmimic_axes_semantics():
    """A DeepMimic rotation keeps its anatomical meaning in SMPL frames."""
    f = _dm_rest_frames(3)
    f[0, 16:20] = [np.cos(0.25), 0, 0, np.sin(0.25)]  # right hip +0.5 rad about DeepMimic's +z: thigh forward
    f[1, 29] = 1.2  # right elbow flexion
    f[2, 34] = -1.0  # left knee flexion (negative in DeepMimic)
    poses, _ = mocap.deepmimic_to_smpl(f)
    joints = mocap.forward_kinematics(torch.tensor(poses, dtype=torch.float64))
    assert joints[0, J["right_knee"], 2] > joints[0, J["right_hip"], 2] + 0.15  # knee moved forward (+z)
    assert joints[1, J["right_wrist"], 2] > joints[1, J["right_elbow"], 2] + 0.2  # forearm forward
    assert joints[2, J["left_ankle"], 2] < joints[2, J["left_knee"], 2] - 0.2  # shank backward
    assert poses[2, 3 * J["left_knee"]] == pytest.approx(1.0, abs=1e-6)  # SMPL knee flexion is +x
    assert poses[1, 3 * J["right_elbow"] + 1] > 0  # right elbow flexion is +y in SMPL's T-pose frame


def test_deepmimic_bad_shape():
    with pytest.raises(ValueError, match=r"\[T, 44\]"):
        mocap.deepmimic_to_smpl(np.zeros((5, 43)))


def test_walk_feet_alternate_and_face_forward(clips):
    walk = clips["walk"]
    pose = torch.tensor(walk.poses, dtype=torch.float64)
    joints = mocap.forward_kinematics(pose)
    root = roma.rotvec_to_rotmat(pose[:, :3])
    forward = root[:, :, 2]  # the body's +z in the world
    velocity = torch.tensor(walk.transl[-1] - walk.transl[0], dtype=torch.float64)
    assert (forward @ velocity / velocity.norm()).min() > 0.9  # walks the way it faces
    gap = ((joints[:, J["left_ankle"]] - joints[:, J["right_ankle"]]) * forward).sum(-1)
    assert gap.max() > 0.3 and gap.min() < -0.3  # left foot ahead, then right foot ahead
    assert (torch.diff(torch.sign(gap)) != 0).sum() >= 2
    up = root[:, :, 1]
    assert up[:, 1].min() > 0.9  # upright


def test_real_elbows_and_knees_flex_the_right_way(clips):
    body = np.concatenate([c.poses for c in clips.values()]).reshape(-1, 24, 3)
    for side, sign in (("left", -1), ("right", 1)):
        assert np.mean(body[:, J[f"{side}_knee"], 0] > -0.05) > 0.99
        assert np.mean(sign * body[:, J[f"{side}_elbow"], 1] > -0.05) > 0.99


# ---------------------------------------------------------------------------------------------- holosoma IK

def _mixamo_positions(pose: torch.Tensor) -> np.ndarray:
    """Joint positions [T, 53, 3] (z up) of a neutral Mixamo-like skeleton posed with SMPL poses."""
    lat, y, z = torch.eye(3, dtype=torch.float64)
    foot = torch.tensor([0.0, -np.sin(np.radians(20)), np.cos(np.radians(20))], dtype=torch.float64)
    off = {"left_hip": 0.1 * lat, "right_hip": -0.1 * lat, "spine1": 0.1 * y, "spine2": 0.12 * y, "spine3": 0.12 * y,
           "neck": 0.25 * y, "head": 0.14 * y, "left_collar": 0.05 * lat + 0.2 * y, "right_collar": -0.05 * lat + 0.2 * y,
           "left_knee": -0.4 * y, "right_knee": -0.4 * y, "left_ankle": -0.42 * y, "right_ankle": -0.42 * y,
           "left_foot": 0.15 * foot, "right_foot": 0.15 * foot, "left_shoulder": 0.12 * lat, "right_shoulder": -0.12 * lat,
           "left_elbow": 0.28 * lat, "right_elbow": -0.28 * lat, "left_wrist": 0.25 * lat, "right_wrist": -0.25 * lat,
           "left_hand": 0.09 * lat, "right_hand": -0.09 * lat}
    rest = torch.zeros(24, 3, dtype=torch.float64)
    for j in range(1, 24):
        rest[j] = rest[mocap.SMPL_PARENTS[j]] + off[SMPL_JOINT_NAMES[j]]
    p = mocap.forward_kinematics(pose, rest)
    glob = global_rotations(pose)
    names = {"Hips": "pelvis", "Spine": "spine1", "Spine1": "spine3", "Neck": "neck", "Head": "head"}
    for s, side in (("Left", "left"), ("Right", "right")):
        names.update({f"{s}UpLeg": f"{side}_hip", f"{s}Leg": f"{side}_knee", f"{s}Foot": f"{side}_ankle",
                      f"{s}ToeBase": f"{side}_foot", f"{s}Shoulder": f"{side}_collar", f"{s}Arm": f"{side}_shoulder",
                      f"{s}ForeArm": f"{side}_elbow", f"{s}Hand": f"{side}_wrist", f"{s}HandMiddle1": f"{side}_hand"})
    out = torch.zeros(len(pose), 53, 3, dtype=torch.float64)
    for m, s in names.items():
        out[:, mocap.MIXAMO_JOINT_NAMES.index(m)] = p[:, J[s]]
    for s, side in (("Left", "left"), ("Right", "right")):
        knuckle = (glob[:, J[f"{side}_wrist"]] @ (0.02 * z))
        mid = p[:, J[f"{side}_hand"]]
        out[:, mocap.MIXAMO_JOINT_NAMES.index(f"{s}HandIndex1")] = mid + knuckle
        out[:, mocap.MIXAMO_JOINT_NAMES.index(f"{s}HandPinky1")] = mid - knuckle
    zup = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)  # z-up -> y-up
    return (out @ zup).numpy()  # y-up -> z-up: v_zup = zup^T v_yup


def test_holosoma_ik_round_trip(clips):
    """Positions of a skeleton posed with converted climbing poses are inverted back to those poses."""
    pose = torch.tensor(clips["climb_seq_4"].poses, dtype=torch.float64)
    positions = _mixamo_positions(pose) + np.array([0.5, -1.0, 2.0])  # z up
    recovered, transl = mocap.holosoma_to_smpl(positions)
    rot_in = roma.rotvec_to_rotmat(pose.reshape(-1, 24, 3))
    rot_out = roma.rotvec_to_rotmat(torch.tensor(recovered, dtype=torch.float64).reshape(-1, 24, 3))
    err = roma.rotmat_geodesic_distance(rot_in, rot_out)
    assert err.max() < 2e-3, (err.max(0).values > 2e-3).nonzero()
    np.testing.assert_allclose(transl, np.broadcast_to([0.5, 2.0, 1.0], transl.shape), atol=1e-6)  # y up


def test_holosoma_bad_shape():
    with pytest.raises(ValueError, match=r"\[T, 53, 3\]"):
        mocap.holosoma_to_smpl(np.zeros((4, 52, 3)))


def _local_position(pose, joint, frame):
    joints, glob = mocap.forward_kinematics(pose), global_rotations(pose)
    return (glob[:, J[frame]].transpose(-1, -2) @ (joints[:, J[joint]] - joints[:, J[frame]])[..., None])[..., 0]


@pytest.mark.parametrize("name", ["climb_seq_0", "climb_seq_4", "walk", "crawl"])
def test_left_stays_left(clips, name):
    """Re-posed real frames keep the left limbs on the body's left (+x) of the right ones."""
    pose = torch.tensor(clips[name].poses, dtype=torch.float64)
    ankles = _local_position(pose, "left_ankle", "pelvis")[:, 0] - _local_position(pose, "right_ankle", "pelvis")[:, 0]
    wrists = _local_position(pose, "left_wrist", "spine3")[:, 0] - _local_position(pose, "right_wrist", "spine3")[:, 0]
    assert (ankles > 0).double().mean() > 0.95 and (wrists > 0).double().mean() > 0.95


def test_walk_feet_touch_a_flat_ground(clips):
    """With DeepMimic's leg proportions and the root translation, the lower ankle stays at one height."""
    offsets = torch.as_tensor(mocap.REST_JOINTS[1:] - mocap.REST_JOINTS[list(mocap.SMPL_PARENTS[1:])])
    offsets[0], offsets[1] = torch.tensor([0.085, 0.0, 0.0]), torch.tensor([-0.085, 0.0, 0.0])  # hips
    offsets[3] = offsets[4] = torch.tensor([0.0, -0.4215, 0.0])  # thighs
    offsets[6] = offsets[7] = torch.tensor([0.0, -0.41, 0.0])  # shanks
    rest = torch.zeros(24, 3, dtype=torch.float64)
    for j in range(1, 24):
        rest[j] = rest[mocap.SMPL_PARENTS[j]] + offsets[j - 1]
    walk = clips["walk"]
    joints = mocap.forward_kinematics(torch.tensor(walk.poses, dtype=torch.float64), rest)
    joints = joints + torch.tensor(walk.transl, dtype=torch.float64)[:, None]
    low = torch.minimum(joints[:, J["left_ankle"], 1], joints[:, J["right_ankle"], 1])
    assert low.max() - low.min() < 0.04 and 0.0 < low.min() < 0.15


# ---------------------------------------------------------------------------------------------- helpers

def test_forward_kinematics_batch_dims_and_dtype(dtype):
    pose = 0.3 * torch.randn(2, 3, 72, dtype=dtype, generator=torch.Generator().manual_seed(0))
    joints = mocap.forward_kinematics(pose)
    assert joints.shape == (2, 3, 24, 3) and joints.dtype == dtype
    torch.testing.assert_close(joints[1, 2], mocap.forward_kinematics(pose[1, 2]))
    rest = mocap.forward_kinematics(torch.zeros(72, dtype=dtype))
    torch.testing.assert_close(rest, torch.as_tensor(mocap.REST_JOINTS, dtype=dtype))
    # bone lengths are preserved
    parents = list(mocap.SMPL_PARENTS[1:])
    bones = (joints[..., 1:, :] - joints[..., parents, :]).norm(dim=-1)
    torch.testing.assert_close(bones, (rest[1:] - rest[parents]).norm(dim=-1).expand_as(bones))
    with pytest.raises(ValueError, match="72"):
        mocap.forward_kinematics(torch.zeros(69, dtype=dtype))


def test_mirror_pose_reflects_the_skeleton(dtype):
    pose = 0.4 * torch.randn(5, 72, dtype=dtype, generator=torch.Generator().manual_seed(1))
    mirrored = mocap.mirror_pose(pose)
    torch.testing.assert_close(mocap.mirror_pose(mirrored), pose)
    reflect = torch.tensor([-1.0, 1.0, 1.0], dtype=dtype)
    perm = [SMPL_JOINT_NAMES.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
            for n in SMPL_JOINT_NAMES]
    torch.testing.assert_close(mocap.forward_kinematics(mirrored), (mocap.forward_kinematics(pose) * reflect)[:, perm])
    np.testing.assert_allclose(mocap.mirror_pose(pose[:, 3:].numpy()), mirrored[:, 3:].numpy())
