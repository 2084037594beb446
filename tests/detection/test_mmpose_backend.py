"""The mmpose backend end to end: mmpose's real model code (configs shipped inside the mmpose
package, randomly initialised weights saved as an mmengine checkpoint by the test) run through
``fitlib.detect(..., backend="mmpose")`` and ``fitlib.fit``.

No pretrained mmpose weights are reachable offline, so the keypoints are meaningless: the tests
check structure, box pass-through, the layout taken from the model's metadata, agreement with
mmpose's own ``inference_topdown``, and that loading survives torch >= 2.6's ``weights_only``.
Install the stack with ``scripts/install_mmpose.sh``.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmpose", reason="mmpose not installed (scripts/install_mmpose.sh installs the extra)")

from fitlib import detect, fit  # noqa: E402
from fitlib.io.images import load_image  # noqa: E402
from fitlib.detection.mmpose_backend import import_mmpose, init_model, run_mmpose  # noqa: E402

DATA = Path(__file__).parents[1] / "data"
CONFIGS = {  # small top-down models whose configs ship in mmpose's wheel (.mim/configs)
    "coco17": "body_2d_keypoint/rtmpose/coco/rtmpose-t_8xb256-420e_coco-256x192.py",
    "halpe26": "body_2d_keypoint/rtmpose/body8/rtmpose-t_8xb1024-700e_body8-halpe26-256x192.py",
}
BOXES = np.array([[10.0, 20.0, 200.0, 400.0], [300.0, 40.0, 500.0, 470.0], [250.0, 100.0, 330.0, 300.0]])


def _inside_crops(keypoints: np.ndarray, boxes: np.ndarray, aspect: float = 192 / 256,
                  padding: float = 1.25) -> bool:
    """Whether each person's keypoints lie in the crop a top-down model sees: the box padded by the
    configs' 1.25 and widened or heightened to the input's aspect ratio (192 x 256)."""
    centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    size = np.stack([np.maximum(size[:, 0], size[:, 1] * aspect), np.maximum(size[:, 1], size[:, 0] / aspect)], 1)
    half = padding * size / 2 + 1.0
    return bool(np.all(np.abs(keypoints[..., :2] - centre[:, None]) <= half[:, None]))


def _config(name: str) -> Path:
    import mmpose

    path = Path(mmpose.__file__).parent / ".mim" / "configs" / CONFIGS[name]
    assert path.is_file(), f"mmpose no longer ships {path}"
    return path


def _save_random_checkpoint(config: Path, path: Path, seed: int) -> dict:
    """Build the model with mmpose's initial weights and save it as mmengine does, with numpy
    objects in ``meta`` (what torch >= 2.6's weights_only loader refuses)."""
    from mmengine.runner.checkpoint import get_state_dict, save_checkpoint, weights_to_cpu

    torch.manual_seed(seed)
    model = init_model(config, None)
    state = weights_to_cpu(get_state_dict(model))
    meta = {"dataset_meta": model.dataset_meta, "seed": np.int64(seed), "epoch": 0}
    assert any(isinstance(v, np.ndarray) for v in model.dataset_meta.values())
    save_checkpoint({"meta": meta, "state_dict": state}, str(path))
    return state


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{name: (config, checkpoint, saved state_dict)} for the COCO-17 and Halpe-26 models."""
    out = {}
    for seed, name in enumerate(CONFIGS):
        ckpt = tmp_path_factory.mktemp("mmpose") / f"{name}_random.pth"
        state = _save_random_checkpoint(_config(name), ckpt, seed)
        out[name] = (_config(name), ckpt, state)
    return out


@pytest.fixture(scope="module")
def photo():
    return load_image(DATA / "basketball1.png")  # 2 people, 640 x 480


def test_import_leaves_no_stand_ins_behind():
    import importlib.util
    import sys

    apis = import_mmpose()
    assert hasattr(apis, "inference_topdown") and hasattr(apis, "init_model")
    for name in ("torchvision", "pkg_resources"):  # shims exist only during the import
        if importlib.util.find_spec(name) is None:
            assert name not in sys.modules


def test_checkpoint_with_numpy_meta_loads(models):
    config, ckpt, state = models["coco17"]
    if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6):
        with pytest.raises(Exception, match="weights_only"):  # the case the runner must handle
            torch.load(ckpt)
    original = torch.load
    model = init_model(config, ckpt)
    assert torch.load is original  # the fallback loader is gone again
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)  # the saved random weights, not fresh ones
    assert model.dataset_meta["num_keypoints"] == 17


def test_detect_with_given_boxes(models, photo):
    config, ckpt, _ = models["coco17"]
    k = detect(photo, backend="mmpose", config=config, checkpoint=ckpt, bboxes=BOXES)
    assert k.layout == "coco17" and k.keypoints.shape == (3, 17, 3)
    assert np.array_equal(k.boxes, BOXES) and np.array_equal(k.scores, np.ones(3))  # passed through, in order
    assert k.image_size == (480, 640)
    conf = k.keypoints[..., 2]
    assert np.all((conf >= 0) & (conf <= 1)) and np.all(np.isfinite(k.keypoints))
    # a top-down model places each person's keypoints in (an enlargement of) its box
    assert _inside_crops(k.keypoints, BOXES)


def test_matches_mmpose_inference_topdown(models):
    """Same numbers as mmpose's own API fed as its docs say (BGR image as OpenCV reads it, xyxy
    boxes): fitlib keeps the colour order, the boxes' order and the keypoint order."""
    import cv2

    config, ckpt, _ = models["coco17"]
    apis = import_mmpose()
    model = init_model(config, ckpt)
    boxes = np.array([[150.0, 20.0, 420.0, 340.0], [20.0, 100.0, 200.0, 330.0]])
    bgr = cv2.imread(str(DATA / "messi5.jpg"))  # a colour photo (basketball1 is grey)

    def theirs(image):
        samples = apis.inference_topdown(model, image, boxes, bbox_format="xyxy")
        return (np.concatenate([s.pred_instances.keypoints for s in samples]),
                np.concatenate([s.pred_instances.keypoint_scores for s in samples]))

    points, scores = theirs(bgr)
    ours = run_mmpose(load_image(DATA / "messi5.jpg"), config, ckpt, bboxes=boxes)
    assert np.allclose(ours.keypoints[..., :2], points, atol=1e-4)
    assert np.allclose(ours.keypoints[..., 2], np.clip(scores, 0, 1), atol=1e-6)
    swapped, _ = theirs(np.ascontiguousarray(bgr[:, :, ::-1]))
    assert not np.allclose(swapped, points)  # the colour order matters to the model: the check above has teeth


def test_layout_from_model_metadata(models, photo):
    config, ckpt, _ = models["halpe26"]
    native = run_mmpose(photo, config, ckpt, bboxes=BOXES[:2])
    assert native.layout == "coco17_feet" and native.keypoints.shape == (2, 23, 3)
    body = detect(photo, backend="mmpose", config=config, checkpoint=ckpt, bboxes=BOXES[:2])
    assert body.layout == "coco17" and np.allclose(body.keypoints, native.keypoints[:, :17])
    coco_config, coco_ckpt, _ = models["coco17"]
    with pytest.raises(ValueError, match="no foot"):
        detect(photo, backend="mmpose", layout="coco17_feet", config=coco_config, checkpoint=coco_ckpt,
               bboxes=BOXES)


def test_boxes_from_default_detector_and_nobody(models, photo):
    config, ckpt, _ = models["coco17"]
    found = detect(photo)
    k = detect(photo, backend="mmpose", config=config, checkpoint=ckpt)
    assert len(k) == len(found) == 2
    assert np.allclose(k.boxes, found.boxes) and np.allclose(k.scores, found.scores)
    empty = detect(photo, backend="mmpose", config=config, checkpoint=ckpt, bboxes=np.zeros((0, 4)))
    assert len(empty) == 0 and empty.keypoints.shape == (0, 17, 3) and empty.image_size == (480, 640)
    blank = detect(np.zeros((240, 320, 3), np.uint8), backend="mmpose", config=config, checkpoint=ckpt)
    assert len(blank) == 0


def test_large_image_boxes_in_original_pixels(models, photo):
    config, ckpt, _ = models["coco17"]
    k = detect(photo, backend="mmpose", config=config, checkpoint=ckpt, bboxes=BOXES, max_side=320)
    assert np.allclose(k.boxes, BOXES) and k.image_size == (480, 640)
    assert _inside_crops(k.keypoints, BOXES)


def test_bad_inputs(models, photo, tmp_path):
    config, ckpt, _ = models["coco17"]
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        run_mmpose(photo, config, tmp_path / "missing.pth", bboxes=BOXES)
    with pytest.raises(ValueError, match="boxes"):
        run_mmpose(photo, config, ckpt, bboxes=[[10, 10, 5, 50]])
    with pytest.raises(ValueError, match="boxes"):
        run_mmpose(photo, config, ckpt, bboxes=np.ones((2, 3)))
    with pytest.raises(ValueError, match="uint8"):
        run_mmpose(photo[..., 0], config, ckpt, bboxes=BOXES)


def test_fit_runs_on_mmpose_keypoints(models, photo):
    config, ckpt, _ = models["coco17"]
    k = detect(photo, backend="mmpose", config=config, checkpoint=ckpt, bboxes=BOXES[:2])
    result = fit(photo, k)
    assert len(result) == 2 and result.fitted.shape == (2,) and result.fitted.dtype == bool
    assert result.pose.shape == (2, 72)
    # the random-weight model's keypoints may be unfittable: fitted people have finite parameters, the others
    # none (NaN, the result schema's null)
    assert np.all(np.isfinite(result.pose[result.fitted])) and np.all(np.isnan(result.pose[~result.fitted]))
