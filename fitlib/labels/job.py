"""Label jobs: fit the people of many items (regress, then refine: the fitting config's path), score the fits,
and keep each person's best fit in a :class:`~fitlib.labels.store.LabelStore`.

The work splits in two:

* :class:`LabelWorker` (holds one :class:`~fitlib.fitting.Fitter`): a shard of items in, per item its people's
  candidate fits out (:class:`ItemOutcome`, numpy only, so that it travels between processes). Reading
  images, detecting, fitting, scoring and judging happen here. When the fitting config's regressor is an
  image network (e.g. a SPIN checkpoint, or an image regressor trained in the loop), the worker runs it on
  each person's crop and the fitter refines its estimate (the fitter alone sees keypoints only).
* :func:`update_store` (the driver, alone writing the store): compare-and-replace of a shard's candidates in
  one transaction, with the stored fits re-scored on the new keypoints (camera re-estimated) first.

:func:`run_label_job` drives both, in this process or on a Ray cluster
(:mod:`fitlib.labels.ray_backend`); either way the store is written only here, so its guarantees are the
same. Items that the same job (fitting config + regressor) has finished are skipped: a killed job started
again refits nothing that was committed.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.body.model import BodyModel, model_identity
from fitlib.body.priors import load_pose_prior
from fitlib.camera import default_intrinsics
from fitlib.detection.keypoints import stack_world
from fitlib.labels.config import LabelConfig, load_label_config
from fitlib.labels.score import confident_points, score_params
from fitlib.labels.sources import Item
from fitlib.labels.store import Label, LabelStore, job_key, label_key
from fitlib.labels.validity import check_labels
from fitlib.params import SMPLParams

log = logging.getLogger(__name__)

OUTCOMES = ("new", "replaced", "kept", "invalid")
"""What can happen to a person's candidate fit in the store (``invalid``: the fit is not a valid label; it is
still stored when the store has nothing better for that person)."""


@dataclass
class Candidate:
    """One person's fit from a worker (numpy; camera frame, metres, radians, pixels)."""

    person: str
    keypoints: np.ndarray  # [J, 3]
    pose: np.ndarray  # [72]
    betas: np.ndarray  # [10]
    transl: np.ndarray  # [3]
    score: float  # canonical px (:mod:`fitlib.labels.score`), NaN if not fitted
    valid: bool
    has_smpl: bool
    reason: str


@dataclass
class ItemOutcome:
    """A worker's result for one item: its people's candidates, or the error that stopped it."""

    dataset: str
    item: str
    layout: str = "coco17"
    K: np.ndarray | None = None  # [3, 3]
    image_size: tuple[int, int] | None = None
    people: list[Candidate] = field(default_factory=list)
    error: str | None = None


@dataclass
class JobSummary:
    """Counts of a label job: items ``done`` (finished now), ``skipped`` (finished before), ``failed``; person
    samples ``fitted`` and what happened to them (:data:`OUTCOMES`); ``failures``: (dataset, item, why)."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    fitted: int = 0
    new: int = 0
    replaced: int = 0
    kept: int = 0
    invalid: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.fitted} people fitted: {self.new} new, {self.replaced} replaced, {self.kept} kept, "
                f"{self.invalid} invalid; {self.done} items done, {self.skipped} already done, {self.failed} failed")


def regressor_hash(fit_config) -> str | None:
    """SHA-256 of the regressor checkpoint a fitting config starts from (None for configs without one)."""
    if fit_config.start != "regressor":
        return None
    from fitlib.io.safe_load import file_sha256
    from fitlib.regression.checkpoint import shipped_path

    return file_sha256(fit_config.regressor or shipped_path())


class LabelWorker:
    """Fits shards of items (see the module doc).

    Args:
        model: ``"open"``, an SMPL file path, or a :class:`BodyModel`.
        fit_config: the fitting config (name, path, dict or FitConfig).
        label_config: the label config (rules).
        device: torch device of a model loaded here.
        threads: torch threads (0: leave as is).
    """

    def __init__(self, model: str | Path | BodyModel = "open", fit_config=None, label_config=None,
                 device: str | None = None, threads: int = 0) -> None:
        from fitlib.fitting import Fitter

        if threads:
            torch.set_num_threads(threads)
        from fitlib.fitting import load_config

        fit_config = load_config(fit_config)
        self.image_regressor = None
        if fit_config.start == "regressor":
            from fitlib.regression.checkpoint import NotFitlibCheckpoint, load_regressor, read_header, shipped_path

            path = fit_config.regressor or shipped_path()
            try:
                image_net = read_header(path)[0].get("config", {}).get("encoder") == "image"
            except NotFitlibCheckpoint:  # SPIN's checkpoint (load_regressor says if it is not)
                image_net = True
            if image_net:  # this worker crops for it; the fitter's people it cannot read use multistart
                from fitlib.regression.predict import KeypointRegressor

                net, header = load_regressor(path, device or "cpu")
                fit_config = fit_config.replace(start="multistart")
                self.fitter = Fitter(model, fit_config, device)
                self.image_regressor = KeypointRegressor(net, self.fitter.model, header)
        if self.image_regressor is None:
            self.fitter = Fitter(model, fit_config, device)
        self.config: LabelConfig = load_label_config(label_config)
        self.prior = load_pose_prior(self.fitter.config.pose_prior_file)

    def _prepare(self, it: Item) -> tuple[np.ndarray, str, np.ndarray, tuple[int, int], np.ndarray | None,
                                          np.ndarray | None]:
        from fitlib.detection import detect
        from fitlib.io.images import load_image

        image = None
        if it.image is not None:
            image = load_image(it.image)
        elif it.image_path is not None and (it.keypoints is None or it.image_size is None
                                            or self.image_regressor is not None):
            image = load_image(it.image_path)
        if self.image_regressor is not None and image is None:
            raise ValueError("the image regressor needs the item's image (keypoints alone were given)")
        size = it.image_size or (None if image is None else tuple(image.shape[:2]))
        if size is None:
            raise ValueError("no image and no image size")
        if it.keypoints is None:
            found = detect(image)
            kps, layout, world = np.asarray(found.keypoints, dtype=np.float64), found.layout, found.world
        else:
            kps, layout, world = np.asarray(it.keypoints, dtype=np.float64), it.layout, None
            J = len(get_layout(layout))
            if kps.ndim != 3 or kps.shape[1:] != (J, 3):
                raise ValueError(f"keypoints for layout {layout!r} must have shape [P, {J}, 3], got {kps.shape}")
        K = (default_intrinsics(int(size[0]), int(size[1]), dtype=torch.float64).numpy() if it.K is None
             else np.asarray(it.K, dtype=np.float64))
        return kps, layout, K, (int(size[0]), int(size[1])), image, world

    def process(self, shard: list[Item]) -> list[ItemOutcome]:
        """Fit every person of a shard's items (one optimiser batch per layout); per item an outcome."""
        outcomes, ready = [], []
        for it in shard:
            out = ItemOutcome(it.dataset, it.item)
            outcomes.append(out)
            if it.error:
                out.error = it.error
                continue
            try:
                kps, layout, K, size, image, world = self._prepare(it)
            except (OSError, ValueError) as exc:
                out.error = str(exc)
                continue
            ids = it.person_ids or [str(i) for i in range(len(kps))]
            if len(ids) != len(kps):
                out.error = f"{len(ids)} person ids for {len(kps)} people"
                continue
            out.layout, out.K, out.image_size = layout, K, size
            ready.append((out, kps, ids, image, world))
        for layout in dict.fromkeys(r[0].layout for r in ready if len(r[1])):
            group = [r for r in ready if r[0].layout == layout and len(r[1])]
            self._fit_group(group, layout)
        return outcomes

    def _image_inits(self, kp: torch.Tensor, Ks: torch.Tensor, layout: str, images: list) -> list | None:
        """Per-person inits from the image regressor (None for people it cannot read)."""
        from fitlib.regression.predict import check_layout

        try:
            check_layout(layout, self.image_regressor.layout)
        except ValueError:
            return None
        pred = self.image_regressor.predict(kp, Ks, layout, images=images)
        est = pred.params.to(self.fitter.device, self.fitter.dtype)
        return [est.index(slice(i, i + 1)) if bool(pred.fitted[i]) and bool(est.transl[i, 2] > 0) else None
                for i in range(len(kp))]

    def _fit_group(self, group: list, layout: str) -> None:
        fitter = self.fitter
        dt, dev = fitter.dtype, fitter.device
        kp = torch.as_tensor(np.concatenate([k for _, k, _, _, _ in group]), dtype=dt, device=dev)
        Ks = torch.as_tensor(np.concatenate([np.broadcast_to(o.K, (len(k), 3, 3)) for o, k, _, _, _ in group]), dtype=dt,
                             device=dev)
        sizes = torch.tensor([o.image_size for o, k, _, _, _ in group for _ in range(len(k))], dtype=dt, device=dev)
        world = stack_world([(len(k), w) for _, k, _, _, w in group])  # detected people's world landmarks
        try:
            init = None
            if self.image_regressor is not None:
                init = self._image_inits(kp, Ks, layout, [img for _, k, _, img, _ in group for _ in range(len(k))])
            fit = fitter.fit(kp, Ks, layout, init=init, image_size=sizes, world=world)
        except ValueError as exc:  # e.g. NaN-free checks of the whole batch: report per item
            for o, *_ in group:
                o.error = str(exc)
            return
        params = fit.params.detach()
        score, transl = score_params(fitter.model, params, kp, Ks, layout, reestimate=True)
        params = params.replace(transl=transl)
        mask = fitter.model.keypoint_map(get_layout(layout)).mask.to(dev)
        n_conf = (confident_points(kp, mask) > 0).sum(-1)
        fitted = fit.fitted.cpu()
        score = torch.where(fitted.to(score.device), score, torch.full_like(score, float("nan")))
        verdict = check_labels(params, score, n_conf, self.config.rules, self.prior)
        verdict.valid &= fitted
        verdict.has_smpl &= fitted
        pose = params.pose.reshape(-1, 72).cpu().double().numpy()
        betas = params.betas.cpu().double().numpy()
        tr = params.transl.cpu().double().numpy()
        kpn = kp.cpu().double().numpy()
        row = 0
        for o, k, ids, *_ in group:
            for pid in ids:
                why = verdict.reasons[row] if bool(fitted[row]) else "not fitted"
                o.people.append(Candidate(pid, kpn[row], pose[row], betas[row], tr[row], float(score[row]),
                                          bool(verdict.valid[row]), bool(verdict.has_smpl[row]), why))
                row += 1


def update_store(store: LabelStore, model: BodyModel, outcomes: list[ItemOutcome], job: str, config: LabelConfig,
                 prior, provenance: dict, round: int = 0) -> dict[str, int]:
    """Compare-and-replace a shard's candidates in one transaction; mark its good items done.

    A stored label is re-scored on the candidate's keypoints (its translation re-estimated,
    :func:`fitlib.labels.score.score_params`) and re-judged; the candidate replaces it when the candidate is
    valid and the stored one is not, or when both are equally valid and the candidate's score is lower by more
    than ``config.margin``. Ground-truth labels are never replaced. A kept label takes the new keypoints and its
    re-scored translation, score and validity (its pose and betas stay). Returns counts per :data:`OUTCOMES`.
    """
    counts = dict.fromkeys(OUTCOMES, 0)
    good = [o for o in outcomes if o.error is None]
    keys = [label_key(o.dataset, o.item, c.person) for o in good for c in o.people]
    now = time.time()
    with store.transaction():
        stored = store.get(keys)
        rescored = _rescore(model, stored, good, config, prior)
        for o in good:
            item_counts = dict.fromkeys(OUTCOMES, 0)
            for c in o.people:
                key = label_key(o.dataset, o.item, c.person)
                old = stored.get(key)
                new = Label(o.dataset, o.item, c.person, o.layout, c.keypoints, o.K, o.image_size, c.pose, c.betas,
                            c.transl, c.score, c.valid, c.has_smpl, c.reason, False, 0, round,
                            {**provenance, "time": now}, now)
                if not c.valid:
                    item_counts["invalid"] += 1
                if old is None:
                    store.put(new)
                    if c.valid:
                        item_counts["new"] += 1
                    continue
                if old.is_gt:
                    if c.valid:
                        item_counts["kept"] += 1
                    continue
                old = rescored.get(key, old)
                if _better(c.valid, c.score, old.valid, old.score, config.margin):
                    new.replaced = old.replaced + 1
                    store.put(new)
                    if c.valid:
                        item_counts["replaced"] += 1
                else:
                    store.put(old)
                    if c.valid:
                        item_counts["kept"] += 1
            store.mark_done(job, o.dataset, o.item, len(o.people), item_counts, round)
            for k, v in item_counts.items():
                counts[k] += v
    return counts


def _better(new_valid: bool, new_score: float, old_valid: bool, old_score: float, margin: float) -> bool:
    if new_valid != old_valid:
        return new_valid
    if not np.isfinite(new_score):
        return False
    return not np.isfinite(old_score) or new_score < old_score - margin


def _rescore(model: BodyModel, stored: dict[str, Label], outcomes: list[ItemOutcome], config: LabelConfig,
             prior) -> dict[str, Label]:
    """The stored (non ground-truth) labels re-scored on the outcomes' keypoints and intrinsics."""
    rows = [(o, c, stored[label_key(o.dataset, o.item, c.person)]) for o in outcomes for c in o.people
            if label_key(o.dataset, o.item, c.person) in stored and not stored[label_key(o.dataset, o.item, c.person)].is_gt]
    out: dict[str, Label] = {}
    for layout in dict.fromkeys(o.layout for o, _, _ in rows):
        group = [(o, c, s) for o, c, s in rows if o.layout == layout]
        dt = model.joint_template.dtype
        t = lambda a: torch.as_tensor(np.stack(a), dtype=dt)  # noqa: E731
        params = SMPLParams.from_pose(t([s.pose for _, _, s in group]), t([s.betas for _, _, s in group]),
                                      t([s.transl for _, _, s in group]))
        kp = t([c.keypoints for _, c, _ in group])
        K = t([o.K for o, _, _ in group])
        score, transl = score_params(model, params, kp, K, layout, reestimate=True)
        mask = model.keypoint_map(get_layout(layout)).mask
        n_conf = (confident_points(kp, mask.to(kp.device)) > 0).sum(-1)
        params = params.replace(transl=transl)
        verdict = check_labels(params, score, n_conf, config.rules, prior)
        for i, (o, c, s) in enumerate(group):
            out[s.key] = Label(s.dataset, s.item, s.person, layout, c.keypoints, o.K, o.image_size, s.pose, s.betas,
                               transl[i].cpu().double().numpy(), float(score[i]), bool(verdict.valid[i]),
                               bool(verdict.has_smpl[i]), verdict.reasons[i], False, s.replaced, s.round,
                               s.provenance, s.updated)
    return out


def _shards(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while True:
        shard = list(itertools.islice(it, size))
        if not shard:
            return
        yield shard


def run_label_job(sources: Iterable[Item], store: str | Path, *, model: str | Path = "open", config=None,
                  label_config=None, device: str | None = None, round: int = 0, ray: str | bool | None = None,
                  workers: int | None = None, progress: bool = True,
                  on_shard: Callable[[JobSummary], None] | None = None) -> JobSummary:
    """Run a label job over ``sources`` (items from :func:`fitlib.labels.sources.items`) into ``store``.

    Args:
        sources: the items, in a stable order.
        store: the store file (created if missing).
        model: the body model (``"open"`` or an SMPL file/folder).
        config: the fitting config (default: ``default``, regress then refine).
        label_config: the label config (margin, rules, batch size; default ``configs/labels.yaml``).
        device: torch device.
        round: recorded with the labels and ``done`` rows (training in the loop counts rounds).
        ray: None or False: in this process. True: on a Ray cluster (``ray.init()``: the one this machine
            belongs to, else a local one); an address: that cluster. See :mod:`fitlib.labels.ray_backend`.
        workers: Ray workers (default: one per CPU of the cluster).
        progress: show a progress bar with the counts.
        on_shard: called with the running summary after each committed shard.
    Returns:
        :class:`JobSummary`.
    """
    from tqdm import tqdm

    from fitlib.fitting import load_config
    from fitlib.body.model import shared_body_model
    from fitlib.result import config_hash, fitlib_version

    fit_cfg = load_config(config)
    lab_cfg = load_label_config(label_config)
    identity = model_identity(model)
    scorer = shared_body_model(model)  # the driver's model, to re-score stored labels (CPU)
    prior = load_pose_prior(fit_cfg.pose_prior_file)
    reg_hash = regressor_hash(fit_cfg)
    cfg_hash = config_hash(fit_cfg)
    job = job_key(cfg_hash, reg_hash)
    provenance = {"fitlib_version": fitlib_version(), "config_hash": cfg_hash, "regressor_hash": reg_hash,
                  "body_model": identity}
    summary = JobSummary()
    t0 = time.perf_counter()
    with LabelStore(store, identity) as st:
        done = st.done_items(job)

        def todo() -> Iterator[Item]:
            for it in sources:
                if (it.dataset, it.item) in done and it.error is None:
                    summary.skipped += 1
                    continue
                yield it

        shards = _shards(todo(), lab_cfg.batch_images)
        if ray:
            from fitlib.labels.ray_backend import run_shards_on_ray

            results = run_shards_on_ray(shards, None if ray is True else str(ray), workers,
                                        dict(model=str(model), fit_config=fit_cfg.model_dump(),
                                             label_config=lab_cfg.model_dump(), device=device))
        else:
            worker = LabelWorker(model, fit_cfg, lab_cfg, device)
            results = (worker.process(s) for s in shards)
        bar = tqdm(desc="label", unit="item", disable=not progress, dynamic_ncols=True)
        try:
            for outcomes in results:
                counts = update_store(st, scorer, outcomes, job, lab_cfg, prior, provenance, round)
                for o in outcomes:
                    if o.error is None:
                        summary.done += 1
                        summary.fitted += len(o.people)
                    else:
                        summary.failed += 1
                        summary.failures.append((o.dataset, o.item, o.error))
                        log.info("%s %s: %s", o.dataset, o.item, o.error)
                for k, v in counts.items():
                    setattr(summary, k, getattr(summary, k) + v)
                bar.update(len(outcomes))
                bar.set_postfix(fitted=summary.fitted, new=summary.new, replaced=summary.replaced, kept=summary.kept,
                                invalid=summary.invalid, failed=summary.failed, refresh=False)
                if on_shard is not None:
                    on_shard(summary)
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
