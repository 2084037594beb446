"""Loading mmpose checkpoints (without mmpose installed): torch's safe loader with the numpy types mmengine
stores, never a silent fall back to full unpickling; ``trust_checkpoint=True`` is the explicit opt-in."""
import os

import numpy as np
import pytest
import torch

from fitlib.detection.mmpose_backend import _load_checkpoint_compat


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Harmless:
    """A class of the user's own, which only full unpickling can rebuild."""

    def __init__(self, value):
        self.value = value


def _mmengine_like(path):
    """What mmengine's save_checkpoint writes for an mmpose model: weights plus numpy objects in ``meta``."""
    meta = {"dataset_meta": {"sigmas": np.array([0.026, 0.025], np.float32), "num_keypoints": 17,
                             "keypoint_colors": np.array([[51, 153, 255]], np.uint8), "flip_indices": [0, 2, 1],
                             "dataset_name": "coco", "weights": np.ones(17)},
            "seed": np.int64(3), "epoch": 0, "lr": np.float64(0.004)}
    torch.save({"meta": meta, "state_dict": {"head.weight": torch.arange(6.0).reshape(2, 3)}}, path)


def test_numpy_metadata_loads_with_the_safe_loader(tmp_path):
    path = tmp_path / "rtmpose.pth"
    _mmengine_like(path)
    with pytest.raises(Exception, match="weights_only"):
        torch.load(path)  # torch's default refuses the numpy objects: what mmengine meets
    original = torch.load
    with _load_checkpoint_compat():
        ckpt = torch.load(path, map_location="cpu")  # as mmengine calls it: no weights_only
    assert torch.load is original
    assert torch.equal(ckpt["state_dict"]["head.weight"], torch.arange(6.0).reshape(2, 3))
    assert ckpt["meta"]["seed"] == 3 and ckpt["meta"]["dataset_meta"]["sigmas"].dtype == np.float32


def test_code_in_a_checkpoint_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": {"x": _Payload(marker)}}, path)
    with _load_checkpoint_compat():
        with pytest.raises(ValueError, match=r"refused .*evil\.pth.*system.*trust_checkpoint=True"):
            torch.load(path)
    assert not marker.exists()  # the previous compat fell back to weights_only=False and ran it


def test_trusting_a_checkpoint_is_explicit(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"state_dict": {}, "meta": {"obj": Harmless(5)}}, path)
    with _load_checkpoint_compat():
        with pytest.raises(ValueError, match="trust_checkpoint"):
            torch.load(path)
    with _load_checkpoint_compat(trust=True):
        assert torch.load(path)["meta"]["obj"].value == 5
        with open(path, "rb") as fh:  # an open file: read again from its start after the refusal
            assert torch.load(fh)["meta"]["obj"].value == 5
    with _load_checkpoint_compat():  # a caller that chose weights_only itself is left alone
        with pytest.raises(Exception, match="weights_only"):
            torch.load(path, weights_only=True)
