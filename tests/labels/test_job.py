"""Label jobs end to end on real motion with the open model: counts, resuming, compare-and-replace, bad input."""
import os
import signal
import subprocess
import sys
import time

import numpy as np

from fitlib.labels import LabelStore, items, run_label_job
from fitlib.labels.job import update_store
from fitlib.labels.store import label_key


def _labels(path):
    with LabelStore(path) as st:
        return {lab.key: lab for lab in st.labels()}


def test_job_fits_every_person_and_a_rerun_refits_nothing(label_set, tmp_path):
    store = tmp_path / "s.sqlite"
    src = list(items([label_set]))
    people = sum(len(it.keypoints) for it in src)
    s = run_label_job(src, store, progress=False)
    assert s.done == len(src) and s.failed == 0 and s.fitted == people == len(_labels(store))
    assert s.new + s.invalid == people and s.new >= 0.8 * people
    labs = _labels(store)
    assert all(np.isfinite(lab.score) and lab.score < 12 for lab in labs.values() if lab.valid)
    again = run_label_job(src, store, progress=False)
    assert again.skipped == len(src) and again.done == again.fitted == 0
    assert {k: v.updated for k, v in _labels(store).items()} == {k: v.updated for k, v in labs.items()}


def test_a_fit_replaces_only_a_worse_label_and_never_ground_truth(label_set, tmp_path):
    store = tmp_path / "s.sqlite"
    src = list(items([label_set]))
    run_label_job(src, store, config="fast", progress=False)  # a weaker fitter first
    first = _labels(store)
    # one label becomes ground truth with deliberately wrong parameters: it must survive
    gt_key = next(iter(first))
    with LabelStore(store) as st, st.transaction():
        lab = first[gt_key]
        lab.is_gt, lab.pose = True, np.zeros(72)
        st.put(lab)
    s = run_label_job(src, store, progress=False)  # the default (regress -> refine): another job, refits all
    assert s.done == len(src) and s.replaced + s.kept + s.new == s.fitted - s.invalid
    after = _labels(store)
    assert after[gt_key].is_gt and np.all(after[gt_key].pose == 0)
    for key, lab in after.items():
        if key == gt_key or not first[key].valid:
            continue
        if lab.replaced:  # the new fit was better by the margin than the old one re-scored on these keypoints
            assert lab.score < first[key].score + 1e-6
        else:
            np.testing.assert_array_equal(lab.pose, first[key].pose)


def test_kept_label_takes_new_keypoints_and_is_rescored(label_set, tmp_path, open_model):
    from fitlib.body.priors import load_pose_prior
    from fitlib.labels.config import load_label_config
    from fitlib.labels.job import LabelWorker

    store = tmp_path / "s.sqlite"
    it = next(iter(items([label_set])))
    worker = LabelWorker(open_model)
    out = worker.process([it])
    cfg, prior = load_label_config(), load_pose_prior()
    update_store(LabelStore(store, {"model": "open", "build_key": "x"}), open_model, out, "j1", cfg, prior, {})
    before = _labels(store)
    moved = worker.process([it])
    for c in moved[0].people:  # the same people detected 40 px to the right
        c.keypoints = c.keypoints + np.array([40.0, 0.0, 0.0])
        c.score = float("inf")  # and the new fit is no good: the stored one is kept
    counts = update_store(LabelStore(store), open_model, moved, "j2", cfg, prior, {})
    after = _labels(store)
    assert counts["kept"] == len(moved[0].people)
    for k, lab in after.items():
        np.testing.assert_array_equal(lab.pose, before[k].pose)
        np.testing.assert_allclose(lab.keypoints[:, 0], before[k].keypoints[:, 0] + 40)
        assert lab.transl[0] > before[k].transl[0]  # the camera re-estimated for the moved keypoints
        assert lab.score < 3.0


def test_bad_items_are_reported_and_the_job_goes_on(tmp_path, data_dir):
    import shutil

    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(data_dir / "messi5.jpg", folder / "messi5.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (folder / "empty.png").write_bytes(b"")
    s = run_label_job(items([folder]), tmp_path / "s.sqlite", progress=False)
    assert s.done == 1 and s.failed == 2 and s.fitted >= 1
    assert {f[1] for f in s.failures} == {"broken.jpg", "empty.png"}
    again = run_label_job(items([folder]), tmp_path / "s.sqlite", progress=False)
    assert again.skipped == 1 and again.failed == 2  # failures are retried, done items are not


def test_too_few_keypoints_make_an_invalid_label(tmp_path):
    from fitlib.labels.sources import Item

    kp = np.zeros((1, 17, 3))
    kp[0, :4] = [[100, 100, 0.9], [110, 100, 0.9], [100, 150, 0.9], [110, 150, 0.2]]
    s = run_label_job([Item("ds", "a", keypoints=kp, image_size=(480, 640))], tmp_path / "s.sqlite", progress=False)
    assert s.invalid == 1 and s.new == 0
    lab = _labels(tmp_path / "s.sqlite")[label_key("ds", "a", "0")]
    assert not lab.valid and not lab.has_smpl and lab.reason


def test_a_killed_job_resumes_without_losing_or_redoing(label_set, tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("batch_images: 2\n")
    store = tmp_path / "s.sqlite"
    cmd = [sys.executable, "-m", "fitlib.cli", "label", str(label_set), "--store", str(store), "--label-config",
           str(cfg), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill -9 once a few shards are committed
        if store.exists():
            try:
                with LabelStore(store) as st:
                    if len(st.done_items(next(iter(st.jobs())))) >= 3:
                        break
            except (StopIteration, ValueError, OSError):
                pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with LabelStore(store) as st:
        partial = len(st.done_items(next(iter(st.jobs()))))
    total = len(list(items([label_set])))
    assert 3 <= partial < total
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    resumed = _labels(store)
    clean = tmp_path / "clean.sqlite"  # an uninterrupted job, run the same way (same threads: same float32 sums)
    assert subprocess.run(cmd[:cmd.index("--store") + 1] + [str(clean)] + cmd[cmd.index("--store") + 2:],
                          env=env, capture_output=True).returncode == 0
    ref = _labels(clean)
    assert resumed.keys() == ref.keys()
    for k in ref:
        np.testing.assert_allclose(resumed[k].pose, ref[k].pose, atol=1e-6)
    with LabelStore(store) as st:
        assert len(st.done_items(next(iter(st.jobs())))) == total

