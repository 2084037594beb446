"""Training an image regressor (ResNet-50 on person crops, SPIN's design) on CPU: real photos with the bundled
detector's people as 2D-only SPIN samples; a few steps lower the loss on a handful of crops (overfit), SPIN's and
CLIFF's cameras both train, and a killed run resumes to the weights of an uninterrupted one."""
import numpy as np
import pytest
import torch

from fitlib.regression.checkpoint import load_regressor
from fitlib.regression.model import Regressor
from fitlib.training.config import load_train_config
from fitlib.training.image_samples import ImageSamples
from fitlib.training.trainer import regressor_loss, train


def _config(photo_set, npz, camera="spin", **kw):
    sets = [{"npz": str(npz), "image_root": str(photo_set.root)}]
    return {"seed": 1, "batch_size": 4, "epochs": 2, "steps_per_epoch": 2, "warmup_steps": 1, "checkpoint_every": 1,
            "log_every": 1, "val_samples": 8, "threads": 2, "lr": 1e-4,
            "model": {"encoder": "image", "image_size": 64, "camera": camera, "head_hidden": 64, "dropout": 0.0},
            "images": {"train": sets, "augment": {"colour_noise": 0.0}}, **kw}


@pytest.mark.parametrize("camera", ["spin", "cliff"])
def test_a_few_steps_overfit_a_handful_of_crops(photo_set, detections_npz, open_model, camera):
    cfg = load_train_config(_config(photo_set, detections_npz, camera))
    batch = ImageSamples(cfg.images.train, open_model, "coco17", 64, {"enabled": False}, 0, "train").batch(0, 5)
    assert not batch.has_smpl.any() and batch.has_detections.all()  # 2D only: the detector's people
    torch.manual_seed(0)
    net = Regressor(cfg.model).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    losses = []
    for _ in range(16):
        out = net(batch.keypoints, batch.K, batch.images, batch.centre, batch.size)
        loss, terms = regressor_loss(open_model, out, batch, cfg.loss, "coco17", camera)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[1] < losses[0] and losses[-1] < 0.6 * losses[0], losses
    # the gradient reaches the backbone (the image is read)
    assert net.encoder.backbone.conv1.weight.grad.abs().sum() > 0


def test_train_resumes_and_writes_an_image_regressor(photo_set, detections_npz, open_model, tmp_path):
    cfg = _config(photo_set, detections_npz)
    full = train(cfg, tmp_path / "full", open_model, progress=False)
    assert full["step"] == 4 and np.isfinite(full["best_val"])  # 2D-only validation: the 2D error in px
    cut = train(cfg, tmp_path / "cut", open_model, progress=False, stop_after=3)
    assert cut["step"] == 3
    resumed = train(cfg, tmp_path / "cut", open_model, progress=False)
    assert resumed["step"] == 4
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) < 1e-5
    net, header = load_regressor(tmp_path / "full" / "regressor.pt")
    assert net.config.encoder == "image" and header["config"]["camera"] == "spin"
    assert (tmp_path / "full" / "loss_curve.png").stat().st_size > 1000


def test_image_configs_need_images_and_keypoint_configs_none(photo_set, detections_npz):
    with pytest.raises(ValueError, match="images section"):
        load_train_config({"model": {"encoder": "image"}})
    cfg = _config(photo_set, detections_npz)
    cfg["model"] = {"encoder": "keypoints"}
    with pytest.raises(ValueError, match="takes none"):
        load_train_config(cfg)
    with pytest.raises(ValueError, match="at least 1"):
        load_train_config({**_config(photo_set, detections_npz), "images": {"train": []}})


def test_encoder_weights_start_the_backbone(photo_set, detections_npz, open_model, tmp_path):
    """``encoder_weights`` (``--encoder-weights``): a torchvision-style ResNet-50 file (ImageNet's layout, with its
    classifier) starts the new regressor's backbone; nearly nothing moves at a learning rate of 1e-9."""
    from fitlib.regression.resnet import ResNet50

    torch.manual_seed(5)
    imagenet = ResNet50(num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "resnet50-imagenet.pth")
    cfg = {**_config(photo_set, detections_npz), "epochs": 1, "steps_per_epoch": 1, "lr": 1e-9}
    train(cfg, tmp_path / "run", open_model, progress=False, encoder_weights=tmp_path / "resnet50-imagenet.pth")
    sd = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    for name in ("conv1.weight", "layer1.0.conv2.weight", "layer4.2.conv3.weight"):
        assert torch.allclose(sd[f"encoder.backbone.{name}"], imagenet.state_dict()[name], atol=1e-6), name
    with pytest.raises(ValueError, match="image regressor"):
        train({"epochs": 1, "steps_per_epoch": 1}, tmp_path / "kp", open_model, progress=False,
              encoder_weights=tmp_path / "resnet50-imagenet.pth")
