"""Tracking: identities through crossings and gaps, new tracks born, dead tracks ended (synthetic keypoint tracks)."""
import numpy as np
import pytest

from fitlib.video.tracking import Tracker, box_iou, oks, track_people

# a standing person's COCO-17 points (x, y) in units of their height, feet at y = 1
_SKELETON = np.array([[0, 0.05], [-0.02, 0.03], [0.02, 0.03], [-0.05, 0.05], [0.05, 0.05], [-0.11, 0.2], [0.11, 0.2],
                      [-0.15, 0.36], [0.15, 0.36], [-0.16, 0.5], [0.16, 0.5], [-0.07, 0.53], [0.07, 0.53],
                      [-0.08, 0.76], [0.08, 0.76], [-0.08, 0.98], [0.08, 0.98]])


def person(x: float, y: float, height: float, rng, noise: float = 0.01) -> np.ndarray:
    """[17, 3] keypoints of a person whose feet are at (x, y) px, ``height`` px tall, with detector-like noise."""
    xy = _SKELETON * height + [x, y - height]
    xy = xy + rng.normal(0, noise * height, xy.shape)
    return np.concatenate([xy, rng.uniform(0.6, 1.0, (17, 1))], 1)


def test_crossing_people_keep_their_ids():
    """Two people walk towards each other and cross (one slightly in front, boxes overlapping for several
    frames); both keep their id; the order of detections is shuffled each frame."""
    rng = np.random.default_rng(0)
    frames, truth = [], []
    for t in range(40):
        a = person(100 + 12 * t, 400, 200, rng)     # left to right
        b = person(580 - 12 * t, 410, 190, rng)     # right to left, crossing at t = 20
        order = rng.permutation(2)
        frames.append(np.stack([a, b])[order])
        truth.append(order)
    ids = track_people(frames, max_gap=5)
    by_person = {0: set(), 1: set()}
    for t, (i, order) in enumerate(zip(ids, truth)):
        for d, p in enumerate(order):
            by_person[int(p)].add(int(i[d]))
    assert by_person[0] == {0} or by_person[0] == {1}
    assert len(by_person[0]) == 1 and len(by_person[1]) == 1 and by_person[0] != by_person[1]


def test_crossing_while_hidden_keeps_ids():
    """Two people of one size cross on one line while the second is hidden behind the first (frames 17-22):
    when it reappears on the other side, the last place it was seen is where the first now is; the
    constant-velocity prediction keeps both ids."""
    rng = np.random.default_rng(4)
    tracker = Tracker(max_gap=8)
    out = []
    for t in range(36):
        a = person(100 + 12 * t, 400, 200, rng)
        b = person(580 - 12 * t, 400, 200, rng)
        out.append(tracker.update(np.stack([a]) if 17 <= t <= 22 else np.stack([a, b])).tolist())
    assert all(o[0] == out[0][0] for o in out)
    assert all(o[1] == out[0][1] for o in out if len(o) == 2)


def test_gap_keeps_id_and_long_gap_ends_track():
    rng = np.random.default_rng(1)
    tracker = Tracker(max_gap=4)
    seen = []
    for t in range(30):
        people = []
        if not (10 <= t < 14):  # missed for 4 frames: within max_gap
            people.append(person(100 + 5 * t, 400, 200, rng))
        if t < 8 or t >= 20:  # the second person vanishes for 12 frames: beyond max_gap, a new track
            people.append(person(500, 420, 180, rng))
        ids = tracker.update(np.stack(people) if people else np.zeros((0, 17, 3)))
        seen.append(ids.tolist())
    assert seen[9][0] == seen[14][0] == seen[0][0]  # through the 4-frame gap
    second_before, second_after = seen[7][1], seen[20][-1]
    assert second_before != second_after  # ended after 12 missed frames, a new id later
    assert second_before in tracker.ended
    tracks = tracker.finish()
    assert len(tracks) == 3
    assert tracks[seen[0][0]].frames == [t for t in range(30) if not (10 <= t < 14)]


def test_new_people_get_new_ids_and_far_jumps_do_not_match():
    rng = np.random.default_rng(2)
    tracker = Tracker(max_gap=2)
    a = tracker.update(np.stack([person(100, 400, 200, rng)]))
    b = tracker.update(np.stack([person(102, 400, 200, rng), person(600, 300, 150, rng)]))
    assert b[0] == a[0] and b[1] != a[0]
    c = tracker.update(np.stack([person(900, 400, 200, rng)]))  # far from both: a new person
    assert c[0] not in (a[0], b[1])


def test_similarities_and_bad_input():
    rng = np.random.default_rng(3)
    p = person(100, 400, 200, rng)[None]
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)
    assert oks(p, p, np.array([200.0 * 60]))[0, 0] == pytest.approx(1.0)
    far = p.copy()
    far[..., 0] += 500
    assert oks(p, far, np.array([200.0 * 60]))[0, 0] < 1e-6
    with pytest.raises(ValueError, match="max_gap"):
        Tracker(max_gap=-1)
    with pytest.raises(ValueError, match=r"\[D, J, 3\]"):
        Tracker().update(np.zeros((2, 17)))
    with pytest.raises(ValueError, match="increasing"):
        t = Tracker()
        t.update(p, frame=5)
        t.update(p, frame=5)
