"""Fitting configs: the shipped ones load, and every kind of mistake is a ValueError naming source and field."""
from importlib import resources

import pytest
import yaml

from fitlib.fitting.config import Convergence, FitConfig, Stage, load_config

SHIPPED = ("default", "fast", "precise", "spin")


def shipped_dict(name: str = "default") -> dict:
    return yaml.safe_load((resources.files("fitlib.configs") / f"{name}.yaml").read_text())


def stage(i: int, key: str, value):
    def change(d):
        d["stages"][i][key] = value
    return change


def setting(key: str, value):
    def change(d):
        d[key] = value
    return change


# (case id, change to configs/default.yaml, pattern the ValueError must match)
BAD = [
    ("iterations str", stage(0, "iterations", "ten"), r"stage 'camera': iterations: .*integer \(got 'ten'\)"),
    ("iterations negative", stage(1, "iterations", -5), r"stage 'body_screen': iterations: .*\(got -5\)"),
    ("iterations zero", stage(1, "iterations", 0), r"stage 'body_screen': iterations"),
    ("iterations bool", stage(0, "iterations", True), r"iterations: .*\(got True\)"),
    ("iterations float", stage(0, "iterations", 80.0), r"iterations: .*\(got 80.0\)"),
    ("lr not a number", stage(0, "lr", "fast"), r"stage 'camera': lr: .*number"),
    ("lr negative", stage(0, "lr", -0.05), r"stage 'camera': lr: .*greater than 0"),
    ("stage weight str", lambda d: d["stages"][0]["weights"].update(data="one"), r"weights.data"),
    ("stage unknown weight", lambda d: d["stages"][0]["weights"].update(dept=1.0), r"weights.dept.*'depth'"),
    ("stage params str", stage(0, "params", "transl"), r"stage 'camera': params"),
    ("stage unknown param", stage(0, "params", ["transl", "betaz"]), r"params.1: .*\(got 'betaz'\)"),
    ("stage optimizer", stage(0, "optimizer", "Adam"), r"stage 'camera': optimizer"),
    ("stage unknown key", lambda d: d["stages"][0].update(iteratons=d["stages"][0].pop("iterations")),
     r"stage 'camera': iteratons: is not a setting \(did you mean 'iterations'"),
    ("stage missing key", lambda d: d["stages"][2].pop("lr"), r"stage 'body': lr: Field required"),
    ("stage not a mapping", setting("stages", [[1, 2]]), r"stage 1: settings: "),
    ("stages not a list", setting("stages", {"a": 1}), r"stages given by name need a 'base'"),
    ("stages by name not a mapping", lambda d: d.update(base="default", stages={"a": 1}), r"stage 'a' must be a mapping"),
    ("no stages", setting("stages", []), r"stages: .*at least 1"),
    ("stage keypoint typo", stage(0, "keypoints", ["left_sholder", "right_shoulder", "left_hip", "right_hip"]),
     r"stage 'camera': keypoints: unknown point names \['left_sholder'\].*'left_shoulder'"),
    ("stage keypoints all wrong", stage(0, "keypoints", ["foo", "bar"]), r"unknown point names \['foo', 'bar'\]"),
    ("stage keypoints empty", stage(0, "keypoints", []), r"keypoints: .*at least 1"),
    ("keypoint_weights typo", setting("keypoint_weights", {"left_hipp": 0.5}),
     r"keypoint_weights: unknown point names \['left_hipp'\].*'left_hip'"),
    ("keypoint_weights str", setting("keypoint_weights", {"left_hip": "half"}), r"keypoint_weights.left_hip"),
    ("pose_starts str", setting("pose_starts", "12"), r"pose_starts: .*integer \(got '12'\)"),
    ("pose_starts negative", setting("pose_starts", -1), r"pose_starts"),
    ("threshold not a number", setting("keypoint_confidence_threshold", "high"), r"keypoint_confidence_threshold"),
    ("min_torso too many", setting("min_torso_keypoints", 5), r"min_torso_keypoints"),
    ("robust_sigma zero", setting("robust_sigma", 0), r"robust_sigma"),
    ("square_confidence str", setting("square_confidence", "no"), r"square_confidence"),
    ("square_confidence int", setting("square_confidence", 1), r"square_confidence"),
    ("camera_headings null", setting("camera_headings", None), r"camera_headings"),
    ("camera_headings str", setting("camera_headings", "0, 90"), r"camera_headings"),
    ("camera_headings item", setting("camera_headings", [0, "ninety"]), r"camera_headings.1"),
    ("convergence null", setting("convergence", None), r"convergence"),
    ("convergence unknown key", setting("convergence", {"ftoll": 1e-4}),
     r"convergence: ftoll: is not a setting \(did you mean 'ftol'"),
    ("convergence window str", setting("convergence", {"window": "ten"}), r"convergence: window"),
    ("optimizer", setting("optimizer", "sgd"), r"optimizer: Input should be 'adam' or 'lbfgs'"),
    ("pose_prior", setting("pose_prior", "gmmm"), r"pose_prior: .*'gmm'"),
    ("unknown setting", setting("pose_start", 3), r"pose_start: is not a setting \(did you mean 'pose_starts'"),
]


@pytest.mark.parametrize("change, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_dict(change, match):
    d = shipped_dict()
    change(d)
    with pytest.raises(ValueError, match=match) as err:
        load_config(d)
    assert str(err.value).startswith("config dict: ")


def test_bad_config_file_names_the_file_and_every_problem(tmp_path):
    d = shipped_dict()
    d["stages"][0]["iterations"] = "ten"
    d["pose_prior"] = "gmmm"
    path = tmp_path / "cfg_ten.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=r"stage 'camera': iterations: .*; pose_prior: ") as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ")


def test_numbers_yaml_reads_as_text_are_numbers():
    d = shipped_dict()
    d["convergence"]["ftol"] = "1e-4"  # YAML 1.1 reads 1e-4 (no dot) as a string
    assert load_config(d).convergence.ftol == 1e-4


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(name)
    d = shipped_dict(name)
    if "base" not in d:
        assert [s.name for s in cfg.stages] == [s["name"] for s in d["stages"]]
        assert [s.iterations for s in cfg.stages] == [s["iterations"] for s in d["stages"]]
        assert cfg.camera_headings == d.get("camera_headings", [0.0])
    assert load_config(cfg) == cfg and cfg.replace() == cfg


def test_derived_configs_state_only_what_differs():
    """fast and precise start from the default (``base: default``) and change or add stages by name."""
    default, fast, precise = load_config("default"), load_config("fast"), load_config("precise")
    assert shipped_dict("fast")["base"] == shipped_dict("precise")["base"] == "default"
    assert [s.name for s in fast.stages] == [s.name for s in default.stages]
    assert [s.iterations for s in fast.stages] == [15, 8, 40] and fast.convergence.ftol == 1e-3
    assert fast.stages[2].weights == default.stages[2].weights  # merged key by key, weights inherited
    assert (fast.camera_headings, fast.pose_starts) == (default.camera_headings, default.pose_starts)
    assert [s.name for s in precise.stages] == [s.name for s in default.stages] + ["follow"]
    assert precise.stages[:3] == default.stages and precise.stages[3].iterations == 300


def test_base_chain_from_a_file(tmp_path):
    """A user's config file may name a shipped base or another file (relative to itself)."""
    (tmp_path / "mine.yaml").write_text("base: fast\npose_starts: 3\nstages:\n  body: {iterations: 5}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "more.yaml").write_text("base: ../mine.yaml\nflip_threshold: 0.5\n")
    cfg = load_config(tmp_path / "sub" / "more.yaml")
    assert (cfg.pose_starts, cfg.flip_threshold, cfg.stages[2].iterations, cfg.stages[2].lr) == (3, 0.5, 5, 0.05)
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ValueError, match="loops"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ValueError, match=r"unknown fitting config 'fastt'.*'fast'"):
        load_config({"base": "fastt"})
    with pytest.raises(ValueError, match="need a 'base'"):
        load_config({"stages": {"body": {"iterations": 3}}})
    with pytest.raises(ValueError, match=r"stage 'extra': params: Field required"):
        load_config({"base": "default", "stages": {"extra": {"iterations": 3}}})


def test_shipped_name_is_never_a_folder(tmp_path, monkeypatch):
    """A folder (or file) named like a shipped config in the current directory does not shadow it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()
    (tmp_path / "default").write_text("not yaml: [")
    assert load_config("fast") == load_config(str(resources.files("fitlib.configs") / "fast.yaml"))
    assert load_config("default").stages[0].name == "camera"


def test_smpl_joint_names_in_stage_keypoints():
    """A stage's keypoints may name SMPL joints without their smpl_ prefix, as the fitter resolves them."""
    d = shipped_dict()
    d["stages"][0]["keypoints"] = ["pelvis", "smpl_spine1", "neck", "left_big_toe"]
    assert load_config(d).stages[0].keypoints == ["pelvis", "smpl_spine1", "neck", "left_big_toe"]


def test_replace_validates():
    cfg = load_config("fast")
    with pytest.raises(ValueError, match=r"FitConfig.replace\(\): pose_prior: .*; optimizer: "):
        cfg.replace(optimizer="sgd", pose_prior="gmmm")
    with pytest.raises(ValueError, match=r"foo: is not a setting"):
        cfg.replace(foo=1)
    with pytest.raises(ValueError, match=r"pose_starts"):
        cfg.replace(pose_starts=-1)
    with pytest.raises(ValueError, match=r"convergence: window"):
        cfg.replace(convergence={"window": 0})
    with pytest.raises(ValueError, match=r"stage 'x': iterations"):
        cfg.replace(stages=[{"name": "x", "params": ["transl"], "iterations": 0, "lr": 0.1, "weights": {"data": 1.0}}])


def test_assignment_is_validated():
    cfg = load_config("fast")
    with pytest.raises(ValueError, match="iterations"):
        cfg.stages[0].iterations = "ten"
    with pytest.raises(ValueError, match="unknown point names"):
        cfg.stages[0].keypoints = ["left_sholder"]
    cfg.stages[0].iterations = 7
    assert cfg.stages[0].iterations == 7


def test_replace_changes_a_copy():
    cfg = load_config("fast")
    new = cfg.replace(optimizer="lbfgs", pose_starts=3, convergence=Convergence(window=3), stages=cfg.stages[:1])
    assert (new.optimizer, new.pose_starts, new.convergence.window, len(new.stages)) == ("lbfgs", 3, 3, 1)
    assert isinstance(new.convergence, Convergence) and isinstance(new.stages[0], Stage)
    new.stages[0].weights["data"] = 2.0
    assert cfg == load_config("fast")


def test_config_dict_round_trips():
    cfg = load_config(shipped_dict("precise"))
    d = cfg.model_dump()
    again = load_config(d)
    assert isinstance(again, FitConfig) and again == cfg and again.model_dump() == d
    assert yaml.safe_load(yaml.safe_dump(d)) == d  # plain data, writable as YAML
