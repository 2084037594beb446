"""The ResNet-50 backbone: torchvision's names and shapes, the forward against a functional reference, weight
files (ImageNet, SPIN, fitlib) loaded by name, and clear refusals of damaged or hostile files."""
import os
import pickle
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from fitlib.regression import resnet
from fitlib.regression.resnet import (IMAGENET_MEAN, IMAGENET_STD, ResNet50, load_backbone_weights,
                                      load_weights_file, normalise, resnet50)


def functional_resnet50(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode ResNet-50 (torchvision v1.5: stride on the 3x3 conv) computed with torch.nn.functional
    straight from a state dict: [B, 3, H, W] -> [B, 2048] pooled features."""
    def bn(t, name):
        return F.batch_norm(t, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                            sd[f"{name}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for li, blocks in enumerate([3, 4, 6, 3], 1):
        for b in range(blocks):
            p = f"layer{li}.{b}"
            stride = 2 if (b == 0 and li > 1) else 1
            y = F.relu(bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
            y = F.relu(bn(F.conv2d(y, sd[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            y = bn(F.conv2d(y, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
            short = bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1") \
                if b == 0 else x
            x = F.relu(y + short)
    return x.mean((-2, -1))


def randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BatchNorm non-trivial affine parameters and running statistics (as trained weights have)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.num_batches_tracked.fill_(7)
    return net


@pytest.fixture(scope="module")
def imagenet_like():
    """A ResNet-50 with a 1000-class classifier and random 'trained' statistics, as an ImageNet file holds."""
    torch.manual_seed(0)
    return randomise(ResNet50(num_classes=1000)).eval()


def _images(B=2, S=64, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return normalise(torch.rand(B, 3, S, S, generator=g, dtype=dtype))


# ------------------------------------------------------------------------------------------- network
def test_feature_shapes_at_224_and_64():
    net = resnet50().eval()
    with torch.no_grad():
        for S in (224, 64):
            f = net(_images(B=2, S=S))
            assert f.shape == (2, 2048) and f.dtype == torch.float32
            assert torch.isfinite(f).all() and (f >= 0).all()  # pooled after the last ReLU
    rect = net(_images(B=1, S=64)[..., :48])  # any H, W >= 32
    assert rect.shape == (1, 2048)


def test_parameter_counts_are_resnet50s():
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        assert sum(p.numel() for p in ResNet50(num_classes=1000).parameters()) == 25_557_032
        assert sum(p.numel() for p in ResNet50().parameters()) == 23_508_032
        assert sum(p.numel() for p in resnet50().parameters()) == 23_508_032


def test_state_dict_names_and_shapes_are_torchvisions(torchvision_resnet50_layout):
    with torch.device("meta"):
        nets = {None: ResNet50(), 1000: ResNet50(num_classes=1000)}
        assert set(resnet50().state_dict()) == set(torchvision_resnet50_layout())
    for num_classes, net in nets.items():
        sd = net.state_dict()
        expected = torchvision_resnet50_layout(num_classes)
        assert set(sd) == set(expected)
        assert {k: tuple(v.shape) for k, v in sd.items()} == expected
        assert all(sd[k].dtype == torch.int64 for k in sd if k.endswith("num_batches_tracked"))
    net = nets[None]
    for li in (2, 3, 4):  # v1.5: the stride sits on the 3x3 conv and the shortcut, not the first 1x1
        block = getattr(net, f"layer{li}")[0]
        assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2) and block.downsample[0].stride == (2, 2)


def test_forward_equals_a_functional_reference(imagenet_like, dtype, device):
    net = ResNet50().to(device=device, dtype=dtype).eval()
    load_backbone_weights(net, imagenet_like.state_dict())
    x = _images(B=2, S=64, seed=1, dtype=dtype).to(device)
    sd = {k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    with torch.no_grad():
        got, ref = net(x), functional_resnet50(sd, x)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert got.dtype == dtype and torch.allclose(got, ref, rtol=tol, atol=tol)
    with torch.no_grad():
        logits = imagenet_like.logits(x.float().cpu())
    assert logits.shape == (2, 1000)
    assert torch.allclose(logits, imagenet_like.fc(imagenet_like(x.float().cpu())))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = ResNet50().train()
    x = _images(B=2, S=32).requires_grad_()
    net(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_inputs_and_no_classifier():
    with torch.device("meta"):
        net = ResNet50()  # the inputs are refused before any computation
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*\(2, 4, 64, 64\)"):
        net(torch.zeros(2, 4, 64, 64))
    with pytest.raises(ValueError, match="at least 32"):
        net(torch.zeros(1, 3, 16, 64))
    with pytest.raises(ValueError, match="no classifier"):
        net.logits(torch.zeros(1, 3, 64, 64))


def test_normalise_values_and_gradient():
    img = torch.rand(2, 3, 5, 4, dtype=torch.float64)
    out = normalise(img)
    mean, std = torch.tensor(IMAGENET_MEAN, dtype=torch.float64), torch.tensor(IMAGENET_STD, dtype=torch.float64)
    assert torch.allclose(out[1, :, 2, 3], (img[1, :, 2, 3] - mean) / std)
    assert out.dtype == torch.float64 and normalise(img[0]).shape == (3, 5, 4)
    assert torch.autograd.gradcheck(normalise, (img[:1, :, :2, :2].clone().requires_grad_(),))
    with pytest.raises(ValueError, match="divide by 255"):
        normalise(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[..., 3, H, W\]"):
        normalise(torch.zeros(1, 1, 4, 4))


def test_resnet50_uses_torchvision_when_it_imports():
    """With torchvision: the same names and shapes as torchvision's resnet50, and the same features."""
    tv = pytest.importorskip("torchvision")
    ref = tv.models.resnet50(weights=None)
    ours = resnet50(num_classes=1000)
    assert isinstance(ours, tv.models.ResNet)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert set(resnet50().state_dict()) == set(ref.state_dict()) - {"fc.weight", "fc.bias"}
    plain = ResNet50(1000).eval()
    load_backbone_weights(plain, ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    x = _images()
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), plain(x), atol=1e-5)
        assert torch.allclose(ref.eval()(x), plain.logits(x), atol=1e-4)


def test_resnet50_without_torchvision_is_fitlibs(monkeypatch):
    """A torchvision that does not import (absent, or a stand-in module without ``models``) gives ResNet50."""
    monkeypatch.setattr(resnet, "_TORCHVISION_CLASS", None)
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    with torch.device("meta"):
        assert type(resnet50()) is ResNet50


# ------------------------------------------------------------------------------------------- weights
def test_imagenet_file_round_trip(imagenet_like, tmp_path):
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(imagenet_like.state_dict(), path)
    net = resnet50().eval()  # no classifier: fc.* in the file is skipped
    load_backbone_weights(net, path)
    x = _images(seed=2)
    with torch.no_grad():
        assert torch.equal(net(x), imagenet_like(x))
    assert net.layer1[0].bn1.num_batches_tracked == 7
    with_fc = ResNet50(num_classes=1000).eval()
    load_backbone_weights(with_fc, path)
    assert torch.equal(with_fc.fc.weight, imagenet_like.fc.weight)


def test_old_files_spin_and_fitlib_layouts_load(imagenet_like, tmp_path):
    """The 2017 ImageNet file (no num_batches_tracked, legacy serialisation), a SPIN checkpoint (DataParallel
    names, the head beside the backbone, under "model"), a float16 copy, a fitlib state dict with a prefix."""
    sd = imagenet_like.state_dict()
    x = _images(seed=3)
    with torch.no_grad():
        want = imagenet_like(x)
    old = tmp_path / "old.pth"
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, old,
               _use_new_zipfile_serialization=False)
    net = ResNet50().eval()  # reused: every load overwrites all its weights
    load_backbone_weights(net, old)
    with torch.no_grad():
        assert torch.equal(net(x), want)
    head = {"fc1.weight": torch.zeros(1024, 2205), "fc1.bias": torch.zeros(1024), "deccam.weight": torch.zeros(3, 1024),
            "init_pose": torch.zeros(1, 144), "init_shape": torch.zeros(1, 10), "init_cam": torch.zeros(1, 3)}
    spin = {"module." + k: v for k, v in {**{k: v for k, v in sd.items() if not k.startswith("fc.")}, **head}.items()}
    load_backbone_weights(net, {"model": spin, "optimizer": {}, "epoch": 3})
    with torch.no_grad():
        assert torch.equal(net(x), want)
    load_backbone_weights(net, {k: v.half() if v.is_floating_point() else v for k, v in sd.items()})
    assert net.conv1.weight.dtype == torch.float32
    with torch.no_grad():
        assert (net(x) - want).abs().max() < 1e-2 * want.abs().max()  # float16 rounding only
    fitlib_sd = {"encoder.backbone." + k: v for k, v in sd.items() if not k.startswith("fc.")}
    fitlib_sd["head.fc1.weight"] = torch.zeros(3)
    load_backbone_weights(net, fitlib_sd, prefix="encoder.backbone.")
    with torch.no_grad():
        assert torch.equal(net(x), want)
    with pytest.raises(ValueError, match="pass prefix='encoder.backbone.'"):
        load_backbone_weights(net, fitlib_sd)
    with pytest.raises(ValueError, match="no weights under prefix 'backbone.'"):
        load_backbone_weights(net, fitlib_sd, prefix="backbone.")


def test_mismatched_weights_are_refused_naming_file_and_keys(imagenet_like, tmp_path):
    net = ResNet50().eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sd = dict(imagenet_like.state_dict())
    part = tmp_path / "partial.pth"
    torch.save({"conv1.weight": sd["conv1.weight"], "extra.weight": torch.zeros(2)}, part)
    with pytest.raises(ValueError,
                       match=r"partial\.pth.*missing \['bn1\.weight'.*more\).*unexpected \['extra\.weight'\]"):
        load_backbone_weights(net, part)
    wrong = {**sd, "layer2.0.conv2.weight": torch.zeros(128, 128, 1, 1)}
    with pytest.raises(ValueError,
                       match=r"layer2\.0\.conv2\.weight: \(128, 128, 1, 1\) in the file, \(128, 128, 3, 3\)"):
        load_backbone_weights(net, wrong)
    nan = {k: v.clone() for k, v in sd.items()}
    nan["layer3.1.bn2.running_var"][4] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(nan, path)
    with pytest.raises(ValueError, match=r"nan\.pth.*non-finite.*layer3\.1\.bn2\.running_var"):
        load_backbone_weights(net, path)
    with pytest.raises(ValueError, match=r"odd\.pth holds no state dict.*\['a', 'b'\]"):
        torch.save({"a": 1, "b": [2]}, tmp_path / "odd.pth")
        load_backbone_weights(net, tmp_path / "odd.pth")
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing loaded


def test_unreadable_and_hostile_files_are_refused(tmp_path):
    with torch.device("meta"):
        net = ResNet50()  # every file here is refused before the network is looked at
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes\.pth is not a readable torch weights file"):
        load_backbone_weights(net, text)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('code ran')",))

    for proto in (2, 4):
        evil = tmp_path / f"evil{proto}.pth"
        evil.write_bytes(pickle.dumps({"conv1.weight": Payload()}, protocol=proto))
        with pytest.raises(ValueError, match=rf"evil{proto}\.pth is not a readable torch weights file"):
            load_backbone_weights(net, evil)
    evil = tmp_path / "evil_zip.pth"
    torch.save({"conv1.weight": Payload()}, evil)  # torch's own format, with the payload inside
    with pytest.raises(ValueError, match=r"evil_zip\.pth.*names .*exec.*runs no code"):
        load_backbone_weights(net, evil)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(net, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="folder"):
        load_backbone_weights(net, tmp_path)
    with pytest.raises(ValueError, match="MiB"):
        load_weights_file(text, max_bytes=8)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.pth"
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match="FIFO"):
            load_backbone_weights(net, fifo)
