"""fitlib.fit from several threads at once: the same results as serial fits, and process state untouched
(``sys.stdout`` is never swapped: smplx is silenced without redirecting it)."""
import sys
import threading

import numpy as np

import fitlib
from fitlib import api
from fitlib.body import model as model_module


def test_four_threads_fit_at_once(data_dir):
    image = data_dir / "messi5.jpg"
    keypoints = fitlib.detect(image).keypoints  # the detector runs once, before the threads
    serial = fitlib.fit(image, keypoints)
    # start cold, so that the threads also build the body model and the fitter at the same time
    api._fitter.cache_clear()
    model_module._shared.cache_clear()
    stdout, seen, results, errors = sys.stdout, set(), [None] * 4, []

    def work(i: int) -> None:
        try:
            results[i] = fitlib.fit(image, keypoints)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        seen.add(id(sys.stdout))  # sampled while the fits run
        threads[0].join(0.001)
    for t in threads:
        t.join()
    assert not errors, errors
    assert sys.stdout is stdout and seen == {id(stdout)}
    for r in results:
        for name in ("pose", "betas", "transl", "joints", "reprojection_error"):
            np.testing.assert_array_equal(getattr(r, name), getattr(serial, name), err_msg=name)
        assert r.fitted.tolist() == serial.fitted.tolist()
