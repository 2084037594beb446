"""SPIN compatibility: a state dict in SPIN's published layout (names and shapes written out here, random values)
loads into fitlib's image regressor and computes what SPIN's network computes; mean parameters; refusals."""
import pickle

import numpy as np
import pytest
import roma
import torch
import torch.nn.functional as F

from fitlib.regression.resnet import ResNet50, normalise
from fitlib.regression.spin import (SPIN_KEY_MAP, load_spin_checkpoint, read_spin_mean_params, spin_config,
                                    spin_to_fitlib_state_dict)


# ---------------------------------------------------------------------- SPIN's layout: torchvision's ResNet-50 + the IEF head
def spin_hmr_layout(resnet50_layout: dict) -> dict:
    """{name: shape} of SPIN's ``HMR`` state dict (models/hmr.py of nkolot/SPIN): torchvision's ResNet-50 names
    at the top level without ``fc`` (``resnet50_layout``), then the IEF head ``fc1`` [1024, 2048 + 144 + 13],
    ``fc2`` [1024, 1024], ``decpose`` [144, 1024], ``decshape`` [10, 1024], ``deccam`` [3, 1024] and the buffers
    ``init_pose`` [1, 144], ``init_shape`` [1, 10], ``init_cam`` [1, 3]."""
    out = dict(resnet50_layout)
    for name, (o, i) in {"fc1": (1024, 2205), "fc2": (1024, 1024), "decpose": (144, 1024), "decshape": (10, 1024),
                         "deccam": (3, 1024)}.items():
        out[f"{name}.weight"], out[f"{name}.bias"] = (o, i), (o,)
    out.update({"init_pose": (1, 144), "init_shape": (1, 10), "init_cam": (1, 3)})
    return out


HEAD = ("fc1.", "fc2.", "decpose.", "decshape.", "deccam.", "init_")


def make_spin_state_dict(resnet50_layout: dict, seed: int = 0) -> dict:
    """Random weights of SPIN's layout, scaled as trained weights are (activations of order 1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in spin_hmr_layout(resnet50_layout).items():
        bn = (".bn" in "." + name) or ".downsample.1." in name
        if name.endswith("num_batches_tracked"):
            value = torch.tensor(1000)
        elif name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean") or (bn and name.endswith("bias")):
            value = 0.1 * torch.randn(shape, generator=g)
        elif bn:
            value = 0.5 + 0.5 * torch.rand(shape, generator=g)
        elif len(shape) == 4:
            value = torch.randn(shape, generator=g) * (1.0 / np.prod(shape[1:])) ** 0.5
        else:
            value = 0.01 * torch.randn(shape, generator=g)
        sd[name] = value
    sd["init_pose"] = roma.random_rotmat(24)[..., :2].reshape(1, 144)  # joint j: rows of R_j's first 2 columns
    sd["init_shape"] = 0.5 * torch.randn(1, 10, generator=g)
    sd["init_cam"] = torch.tensor([[0.9, 0.05, -0.02]])
    return sd


def spin_rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """SPIN's convention: x.view(-1, 3, 2), columns a1, a2; b1 = a1/|a1|, b2 = normalised a2 minus its b1
    part, b3 = b1 x b2; the matrix's columns are (b1, b2, b3). [N, 6] -> [N, 3, 3]."""
    x = x.reshape(-1, 3, 2)
    a1, a2 = x[:, :, 0], x[:, :, 1]
    b1 = F.normalize(a1, dim=1)
    b2 = F.normalize(a2 - (b1 * a2).sum(1, keepdim=True) * b1, dim=1)
    b3 = torch.cross(b1, b2, dim=1)
    return torch.stack((b1, b2, b3), dim=-1)


def spin_reference(sd: dict, images: torch.Tensor, iterations: int = 3):
    """SPIN's HMR forward in eval mode from its state dict: ResNet-50 features (fitlib's ResNet50 given the
    backbone tensors by torch's strict loader), then IEF with torch.nn.functional; dropout is the identity.
    Returns pose6d [I, B, 144], betas [I, B, 10], cam [I, B, 3] per iteration."""
    backbone = ResNet50().eval()
    backbone.load_state_dict({k: v for k, v in sd.items() if not k.startswith(HEAD)}, strict=True)
    with torch.no_grad():
        xf = backbone(normalise(images))
        B = len(images)
        pose, shape, cam = sd["init_pose"].expand(B, -1), sd["init_shape"].expand(B, -1), sd["init_cam"].expand(B, -1)
        out = []
        for _ in range(iterations):
            xc = F.linear(torch.cat([xf, pose, shape, cam], 1), sd["fc1.weight"], sd["fc1.bias"])
            xc = F.linear(xc, sd["fc2.weight"], sd["fc2.bias"])
            pose = F.linear(xc, sd["decpose.weight"], sd["decpose.bias"]) + pose
            shape = F.linear(xc, sd["decshape.weight"], sd["decshape.bias"]) + shape
            cam = F.linear(xc, sd["deccam.weight"], sd["deccam.bias"]) + cam
            out.append((pose, shape, cam))
    return tuple(torch.stack(t) for t in zip(*out))


def _write_means(path, pose, shape, cam):
    np.savez(path, pose=np.asarray(pose, np.float64), shape=np.asarray(shape, np.float64),
             cam=np.asarray(cam, np.float32))
    return path


@pytest.fixture(scope="module")
def spin(tmp_path_factory, torchvision_resnet50_layout):
    """SPIN's state dict and files: ``main`` as SPIN's trainer saves it (DataParallel names under "model",
    optimizer and counters beside), ``bare`` the state dict itself without the mean buffers in torch's legacy
    format (SPIN's torch 1.1), ``means`` those buffers as smpl_mean_params.npz, ``other`` different means."""
    root = tmp_path_factory.mktemp("spin")
    sd = make_spin_state_dict(torchvision_resnet50_layout())
    main = root / "model_checkpoint.pt"
    torch.save({"model": {"module." + k: v for k, v in sd.items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "betas": (0.9, 0.999), "params": [0, 1]}]},
                "epoch": 3, "batch_idx": 10, "batch_size": 64, "dataset_perm": torch.randperm(8),
                "total_step_count": 1234}, main)
    bare = root / "bare.pt"
    torch.save({k: v for k, v in sd.items() if not k.startswith("init_")}, bare, _use_new_zipfile_serialization=False)
    means = _write_means(root / "smpl_mean_params.npz", sd["init_pose"][0], sd["init_shape"][0], sd["init_cam"][0])
    other_pose = roma.random_rotmat(24)[..., :2].reshape(144)
    other = _write_means(root / "other_mean_params.npz", other_pose, torch.ones(10), [0.8, 0.1, 0.1])
    return {"sd": sd, "main": main, "bare": bare, "means": means, "other": other, "root": root}


@pytest.fixture(scope="module")
def spin_net(spin):
    return load_spin_checkpoint(spin["main"])


# ------------------------------------------------------------------------------------------------ tests
def test_spin_config_is_a_valid_regressor_config():
    from fitlib.regression.model import RegressorConfig

    cfg = RegressorConfig(**spin_config())
    assert (cfg.encoder, cfg.camera, cfg.hypotheses, cfg.head_hidden, cfg.iterations, cfg.dropout, cfg.activation,
            cfg.image_size) == ("image", "spin", 1, 1024, 3, 0.5, "none", 224)
    spin_config()["iterations"] = 9
    assert spin_config()["iterations"] == 3  # a new dict per call


def test_key_map_renames_every_spin_key(spin):
    sd = spin["sd"]
    mapped = spin_to_fitlib_state_dict(sd)
    backbone = {k for k in sd if not k.startswith(HEAD)}
    expected = {"encoder.backbone." + k for k in backbone} | {"head." + k for k in sd if k.startswith(HEAD[:5])} \
        | {"head.init_pose", "head.init_betas", "head.init_cam"}
    assert set(mapped) == expected and len(mapped) == len(sd)
    assert mapped["head.init_pose"].shape == (144,) and mapped["head.init_betas"].shape == (10,)
    assert torch.equal(mapped["head.init_cam"], sd["init_cam"][0])
    assert mapped["encoder.backbone.layer4.2.bn3.running_var"] is sd["layer4.2.bn3.running_var"]
    prefixed = spin_to_fitlib_state_dict({"module." + k: v for k, v in sd.items()})
    assert set(prefixed) == expected
    with_fc = spin_to_fitlib_state_dict({**sd, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})
    assert set(with_fc) == expected  # ResNet's ImageNet classifier is dropped
    assert set(SPIN_KEY_MAP.values()) >= {"head.init_betas", "encoder.backbone.layer1."}
    with pytest.raises(ValueError, match=r"my\.pt: keys that SPIN's HMR does not have: \['smpl\.betas'\]"):
        spin_to_fitlib_state_dict({**sd, "smpl.betas": torch.zeros(10)}, source="my.pt")


def test_spin_checkpoint_computes_spins_network(spin, spin_net):
    sd = spin["sd"]
    assert not spin_net.training
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 224, 224, generator=g)
    K = torch.tensor([[1000.0, 0, 320], [0, 1000, 240], [0, 0, 1]]).expand(2, 3, 3)
    centre, size = torch.tensor([[300.0, 250], [120, 400]]), torch.tensor([220.0, 150])
    with torch.no_grad():
        out = spin_net(None, K, images=images, centre=centre, size=size, all_iterations=True)
    pose6d, betas, cam = spin_reference(sd, images)
    assert out.rotmat.shape == (3, 2, 1, 24, 3, 3)
    assert out.betas.shape == (3, 2, 1, 10) and out.cam.shape == (3, 2, 1, 3)
    assert torch.allclose(out.betas[:, :, 0], betas, atol=2e-5)
    assert torch.allclose(out.cam[:, :, 0], cam, atol=2e-5)
    assert torch.allclose(out.rotmat[:, :, 0], spin_rot6d_to_rotmat(pose6d).view(3, 2, 24, 3, 3), atol=2e-5)
    # the estimate moved from the mean (the comparison is not of the start alone) and differs per image
    assert (cam[-1] - sd["init_cam"]).abs().max() > 1e-3 and (betas[-1, 0] - betas[-1, 1]).abs().max() > 1e-4
    with torch.no_grad():  # eval mode returns the last iteration only; one person's result is its own
        last = spin_net(None, K[:1], images=images[:1], centre=centre[:1], size=size[:1])
    assert last.rotmat.shape[0] == 1 and torch.allclose(last.cam[0], out.cam[-1, :1], atol=1e-5)


def test_rot6d_convention_is_spins():
    x = torch.randn(50, 24 * 6, dtype=torch.float64)
    ours = roma.special_gramschmidt(x.view(50, 24, 3, 2))  # what the regressor applies to its pose6d
    assert torch.allclose(ours.reshape(-1, 3, 3), spin_rot6d_to_rotmat(x), atol=1e-12)
    R = roma.random_rotmat(24, dtype=torch.float64)
    assert torch.allclose(spin_rot6d_to_rotmat(R[..., :2].reshape(24, 6)), R, atol=1e-12)  # 6D = first 2 columns


def test_files_without_prefix_legacy_format_and_mean_params(spin, spin_net):
    ref = spin_net.state_dict()
    net = load_spin_checkpoint(spin["bare"], mean_params=spin["means"])
    assert all(torch.equal(v, ref[k]) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked"))
    with pytest.raises(ValueError,
                       match=r"bare\.pt.*missing \['head\.init_pose', 'head\.init_betas', 'head\.init_cam'\]"):
        load_spin_checkpoint(spin["bare"])
    net = load_spin_checkpoint(spin["main"], mean_params=spin["other"])
    pose, betas, cam = read_spin_mean_params(spin["other"])
    assert torch.equal(net.head.init_pose, pose) and torch.equal(net.head.init_betas, torch.ones(10))
    assert torch.allclose(net.head.init_cam, torch.tensor([0.8, 0.1, 0.1]))
    assert torch.equal(net.head.fc1.weight, spin_net.head.fc1.weight)


def test_read_spin_mean_params(spin):
    root = spin["root"]
    pose, betas, cam = read_spin_mean_params(spin["means"])
    assert pose.shape == (144,) and betas.shape == (10,) and cam.shape == (3,) and pose.dtype == torch.float32
    assert torch.allclose(pose, spin["sd"]["init_pose"][0])
    p = root / "row.npz"
    np.savez(p, pose=np.zeros((1, 144)) + np.tile([1.0, 0, 0, 1, 0, 0], 24), shape=np.zeros((1, 10)), cam=np.ones(3),
             extra=np.zeros(4))
    assert read_spin_mean_params(p)[0].shape == (144,)  # [1, n] accepted, other entries ignored
    good = {"pose": np.tile([1.0, 0, 0, 1, 0, 0], 24), "shape": np.zeros(10), "cam": np.array([0.9, 0, 0])}
    cases = [({"shape": good["shape"], "cam": good["cam"]}, r"no 'pose' entry"),
             ({**good, "shape": np.zeros(11)}, r"'shape' has shape \(11,\), expected \(10,\)"),
             ({**good, "cam": np.array([0.9, np.nan, 0])}, r"'cam' has non-finite"),
             ({**good, "pose": np.tile([1.0, 0, 0, 0, 0, 0], 24)}, r"zero or parallel columns for joints \[0, 1"),
             ({**good, "cam": np.array(["a", "b", "c"])}, r"'cam' is of type <U1"),
             ]
    for i, (arrays, match) in enumerate(cases):
        p = root / f"bad{i}.npz"
        np.savez(p, **arrays)
        with pytest.raises(ValueError, match=rf"bad{i}\.npz.*{match}"):
            read_spin_mean_params(p)
    p = root / "objects.npz"
    np.savez(p, **{**good, "shape": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match=r"objects\.npz.*Python objects"):
        read_spin_mean_params(p)
    with pytest.raises(ValueError, match="folder"):
        read_spin_mean_params(root)
    with pytest.raises(FileNotFoundError):
        read_spin_mean_params(root / "missing.npz")


def test_bad_spin_checkpoints_are_refused(spin, tmp_path):
    sd = spin["sd"]
    small = tmp_path / "extra.pt"
    torch.save({"model": {"conv1.weight": sd["conv1.weight"], "extra.weight": torch.zeros(2)}}, small)
    with pytest.raises(ValueError, match=r"extra\.pt: keys that SPIN's HMR does not have: \['extra\.weight'\]"):
        load_spin_checkpoint(small)
    cliff = tmp_path / "cliff.pt"  # a head reading CLIFF's 3 box numbers too: fc1 [1024, 2208]
    torch.save({"model": {**sd, "fc1.weight": torch.zeros(1024, 2208)}}, cliff)
    with pytest.raises(ValueError, match=r"cliff\.pt.*shape mismatch.*head\.fc1\.weight: \(1024, 2208\) in the file, "
                                         r"\(1024, 2205\)"):
        load_spin_checkpoint(cliff)
    nan = tmp_path / "nan.pt"
    torch.save({"model": {**sd, "decshape.bias": torch.full((10,), float("nan"))}}, nan)
    with pytest.raises(ValueError, match=r"nan\.pt.*non-finite values in \['head\.decshape\.bias'\]"):
        load_spin_checkpoint(nan)
    counters = tmp_path / "counters.pt"
    torch.save({"epoch": 3, "optimizer": {}}, counters)
    with pytest.raises(ValueError, match=r"counters\.pt holds no state dict"):
        load_spin_checkpoint(counters)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pt is not a readable torch weights file"):
        load_spin_checkpoint(text)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('code ran')",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": {"conv1.weight": Payload()}}, protocol=2))
    with pytest.raises(ValueError, match=r"evil\.pt is not a readable torch weights file"):
        load_spin_checkpoint(evil)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        load_spin_checkpoint(tmp_path / "missing.pt")


def test_spin_checkpoint_regresses_and_inits_fits_of_a_real_photo(spin, spin_net, data_dir):
    """fitlib.regress reads a SPIN checkpoint as it is (converted on loading): each person's 224 px crop of their
    keypoint box, SPIN's camera converted to the image's intrinsics; fitlib.fit refines that estimate."""
    import fitlib
    from fitlib.camera import default_intrinsics
    from fitlib.datasets.crops import crop_image, crop_matrix
    from fitlib.regression import camera
    from fitlib.regression.checkpoint import load_regressor

    net, header = load_regressor(spin["main"])
    assert header["body_model"] == "smpl" and net.config.encoder == "image" and net.config.camera == "spin"
    image = fitlib.load_image(data_dir / "messi5.jpg")
    det = fitlib.detect(image)
    res = fitlib.regress(image, det, checkpoint=spin["main"], encoder="image")
    assert len(res) == 1 and res.fitted.all() and np.isfinite(res.pose).all()
    # the same as cropping by hand and running the converted network
    kp = torch.as_tensor(det.keypoints, dtype=torch.float32)
    vis = spin_net.visible(kp)
    centre, size = camera.keypoint_box(kp[..., :2], vis)
    crop = crop_image(image, crop_matrix(centre[0].double().numpy(), float(size[0]), 224), 224)
    K = default_intrinsics(*image.shape[:2], dtype=torch.float32)[None]
    with torch.no_grad():
        out = spin_net(None, K, torch.as_tensor(crop)[None], centre, size)
    np.testing.assert_allclose(res.betas, out.betas[0, :, 0].double().numpy(), atol=1e-4)
    # SPIN's camera sits on SMPL's origin: transl is the converted crop camera
    np.testing.assert_allclose(res.transl, out.pelvis[0, :, 0].double().numpy(), rtol=1e-4)
    fit = fitlib.fit(image, det, regressor=spin["main"])
    assert fit.fitted.all() and fit.reprojection_error[0] < res.reprojection_error[0]
    with pytest.raises(ValueError, match="not a keypoint one"):
        fitlib.regress(image, det, checkpoint=spin["main"], encoder="keypoints")
