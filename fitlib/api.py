"""``fitlib.fit``: from an image and (optionally) its 2D keypoints to SMPL fits.

A thin layer over :class:`fitlib.fitting.Fitter`: the Fitter of a (model, device, config) is built
on first use and kept for the process (:func:`shared_fitter`), so repeated calls neither rebuild
the body model nor reload the priors.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fitlib.body.layouts import get_layout
from fitlib.body.model import model_identity, model_key, resolve_device, shared_body_model
from fitlib.camera import default_intrinsics
from fitlib.detection import Keypoints, detect, keypoints_from_mmpose
from fitlib.detection.keypoints import stack_world
from fitlib.fitting import FitConfig, Fitter, load_config
from fitlib.io.images import load_image
from fitlib.params import SMPLParams, as_params
from fitlib.result import FitResult, config_hash


def shared_fitter(model: str | Path = "open", config: str | Path | dict | FitConfig | None = None,
                  device: str | torch.device | None = None) -> Fitter:
    """The process's :class:`~fitlib.fitting.Fitter` for a body model, config and device, built on first use
    (on the shared body model, :func:`fitlib.body.model.shared_body_model`) and reused after."""
    cfg = load_config(config)
    return _fitter(model_key(model), cfg.model_dump_json(), str(resolve_device(device)))


@functools.lru_cache(maxsize=8)
def _fitter(model: tuple, config_json: str, device: str) -> Fitter:
    return Fitter(shared_body_model(model[0], device), FitConfig.model_validate_json(config_json))


def _as_people(keypoints: Any, layout: str) -> tuple[np.ndarray, str, np.ndarray | None, np.ndarray | None,
                                                   np.ndarray | None]:
    """Keypoints [P, J, 3] (float64), their layout name, the person boxes [P, 4] (x1, y1, x2, y2 px) and
    scores [P] of inputs that carry them, and BlazePose world landmarks [P, 33, 3] (m) where they come with
    the keypoints (:attr:`Keypoints.world`, else None), from: an array or tensor in ``layout`` (boxes and scores None), a
    :class:`Keypoints`, OpenPose / COCO annotation JSON (a path or the parsed dict,
    :func:`fitlib.interop.foreign_keypoints`), or mmpose output."""
    if isinstance(keypoints, (str, dict)) or hasattr(keypoints, "__fspath__"):
        from fitlib.interop.keypoint_files import foreign_keypoints

        found = foreign_keypoints(keypoints)
        keypoints = keypoints if found is None else found
    if not isinstance(keypoints, Keypoints):
        if isinstance(keypoints, torch.Tensor):
            keypoints = keypoints.detach().cpu().numpy()
        try:
            arr = np.asarray(keypoints, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.ndim not in (2, 3) and arr.size:  # a numeric array of the wrong rank
            raise ValueError(f"keypoints must be an array [P, J, 3] (or [J, 3] for one person), got shape {arr.shape}")
        if arr is not None and arr.ndim in (2, 3):
            arr = arr[None] if arr.ndim == 2 else arr
            n = len(get_layout(layout))
            if arr.shape[1:] != (n, 3):
                raise ValueError(f"keypoints for layout {layout!r} must have shape [P, {n}, 3] (x, y, confidence), "
                                 f"got {arr.shape}")
            return arr, layout, None, None, None
        keypoints = keypoints_from_mmpose(keypoints)
    return (np.asarray(keypoints.keypoints, dtype=np.float64), keypoints.layout,
            np.asarray(keypoints.boxes, dtype=np.float64), np.asarray(keypoints.scores, dtype=np.float64),
            keypoints.world)


def _as_init(init: Any, P: int) -> list[SMPLParams | None] | None:
    """Per-person starting values of an image's P people (None: none given). A result's people that were not
    fitted (NaN parameters) start from the fitter's own starts."""
    if init is None:
        return None
    if isinstance(init, (list, tuple)):
        if len(init) != P:
            raise ValueError(f"init is a list of {len(init)} per-person values for {P} people")
        return [None if v is None else as_params(v, 1, torch.float64) for v in init]
    if isinstance(getattr(init, "params", None), SMPLParams):  # a FitResult: its unfitted people have NaN rows
        init = init.params
    if isinstance(init, SMPLParams):
        finite = torch.stack([torch.isfinite(getattr(init, k)).all(-1) for k in init.given()]).all(0) \
            if init.given() else torch.ones(len(init), dtype=torch.bool)
        rows = [init.index(slice(i, i + 1)) if bool(finite[i]) else None for i in range(len(init))]
        if len(rows) != P:
            raise ValueError(f"init holds {len(rows)} people but the image has {P}")
        return [None if r is None else as_params(r, 1, torch.float64) for r in rows]
    params = as_params(init, P, torch.float64)
    return [params.index(slice(i, i + 1)) for i in range(P)]


def fit(image: str | Path | np.ndarray, keypoints: Any = None, *, layout: str = "coco17",
        K: np.ndarray | None = None, init: Any = None, config: str | Path | dict | FitConfig | None = None,
        device: str | torch.device | None = None, model: str | Path = "open",
        regressor: str | Path | None = None) -> FitResult:
    """Fit SMPL bodies to the people in one image.

    Args:
        image: a path or an HxW / HxWx3 / HxWx4 uint8 array (RGB); used for its
            size, the default intrinsics and overlays.
        keypoints: [P, J, 3] (x px, y px, confidence) in ``layout``, a
            :class:`fitlib.Keypoints`, or mmpose's output (result dicts,
            ``PoseDataSample``s, saved JSON); None runs the bundled detector. BlazePose's 3D world
            landmarks (``Keypoints.world``: the bundled detector's, or a caller's) are read by the
            regressor and the refine's 3D term; with the other forms the fit uses the 2D alone.
        layout: layout of a plain keypoint array (ignored for the other forms).
        K: [3, 3] intrinsics in pixels; default focal ``sqrt(w² + h²)``, centred.
        init: starting SMPL parameters of the P people, e.g. from a regressor or the previous
            video frame: a :class:`fitlib.SMPLParams`, a :class:`FitResult`, or a dict of
            ``pose`` [P, 72] (or ``global_orient`` [P, 3] + ``body_pose`` [P, 69]), ``betas``
            [P, 10], ``transl`` [P, 3] (any may be left out).
        config: fitting config name (``default``, ``fast``, ``spin``), YAML path, dict or :class:`FitConfig`.
        device: torch device (default CPU).
        model: body model (``"open"`` or an SMPL file/folder).
        regressor: a regressor checkpoint (fitlib's, keypoint or image network, or a SPIN checkpoint) whose
            estimate (:func:`regress`) starts the people ``init`` leaves open; the fitter refines it.
    Returns:
        :class:`FitResult`; nobody in the image gives an empty result.
    """
    return fit_batch([image], [keypoints], layout=layout, K=[K], init=[init], config=config, device=device,
                     model=model, regressor=regressor)[0]


def fit_batch(images: list, keypoints: list | None = None, *, layout: str = "coco17", K: list | None = None,
              init: list | None = None, config: str | Path | dict | FitConfig | None = None,
              device: str | torch.device | None = None, model: str | Path = "open",
              regressor: str | Path | None = None) -> list[FitResult]:
    """Fit the people of several images in one optimiser batch (one batch per keypoint layout).

    Arguments are as for :func:`fit`, given per image as lists (``keypoints``, ``K``
    and ``init`` may be None, or lists holding None for some images; images whose inits
    give different parameters are fitted in separate batches, with the same results).
    Returns one :class:`FitResult` per image, in order.
    """
    n = len(images)
    keypoints = [None] * n if keypoints is None else list(keypoints)
    K = [None] * n if K is None else list(K)
    init = [None] * n if init is None else list(init)
    if not (len(keypoints) == len(K) == len(init) == n):
        raise ValueError(f"fit_batch: {n} images but {len(keypoints)} keypoint sets, {len(K)} K and {len(init)} inits")
    fitter = shared_fitter(model, config, device)
    dev, dtype = fitter.device, fitter.dtype
    provenance = {"config_hash": config_hash(fitter.config), "body_model": model_identity(model),
                  "topology": {"vertices": int(fitter.model.num_vertices), "faces": int(len(fitter.model.faces))}}
    items = []
    for img_in, kp_in, K_in, init_in in zip(images, keypoints, K, init):
        img = load_image(img_in)
        h, w = img.shape[:2]
        kps, lay, boxes, scores, world = _as_people(detect(img) if kp_in is None else kp_in, layout)
        items.append({"kps": kps, "layout": lay, "K": _as_K(K_in, h, w), "size": (h, w),
                      "init": _as_init(init_in, len(kps)), "boxes": boxes, "scores": scores, "world": world,
                      "image": img if regressor is not None else None})
    if regressor is not None:
        _regressed_inits(items, regressor, model, device)
    results: list[FitResult | None] = [None] * n
    cfg = fitter.config  # whether given world landmarks are read: the refine's 3D term or the regressor's branch
    reads_world = bool((cfg.refine is not None and cfg.refine.weights.get("world", 0) > 0)
                       or (fitter.regressor is not None and fitter.regressor.reads_world))
    # one optimiser batch per layout; a person with an init pose is refined, one without is fitted from the
    # fitter's own starts (people are independent problems: the grouping changes no result)
    for lay in dict.fromkeys(it["layout"] for it in items):
        idx = [i for i, it in enumerate(items) if it["layout"] == lay]
        group = [items[i] for i in idx]
        counts = [len(it["kps"]) for it in group]
        P = sum(counts)
        J = len(get_layout(lay))
        if P == 0:
            for i, it in zip(idx, group):
                results[i] = _empty_result(it, lay, J, model, provenance)
            continue
        kp = torch.as_tensor(np.concatenate([it["kps"] for it in group]), dtype=dtype, device=dev)
        Ks = torch.cat([it["K"].expand(c, 3, 3) for it, c in zip(group, counts)]).to(dev, dtype)
        sizes = torch.tensor([it["size"] for it, c in zip(group, counts) for _ in range(c)], dtype=dtype, device=dev)
        inits = [person for it, c in zip(group, counts) for person in (it["init"] or [None] * c)]
        out = fitter.fit(kp, Ks, lay, None if all(v is None for v in inits) else inits, image_size=sizes,
                         world=_group_world(group))
        np_ = lambda t: t.detach().cpu().numpy()  # noqa: E731
        pose = np_(out.params.pose).reshape(P, 72).astype(np.float64)
        start = 0
        for i, it, c in zip(idx, group, counts):
            r = slice(start, start + c)
            start += c
            results[i] = FitResult(
                pose=pose[r], betas=np_(out.params.betas[r]).astype(np.float64),
                transl=np_(out.params.transl[r]).astype(np.float64), K=it["K"].numpy(), image_size=it["size"], layout=lay,
                keypoints=it["kps"], projected=np_(out.projected[r]).astype(np.float64),
                joints=np_(out.joints[r]).astype(np.float64),
                reprojection_error=np_(out.reprojection_error[r]).astype(np.float64),
                loss=np_(out.loss[r]).astype(np.float64), converged=np_(out.converged[r]), fitted=np_(out.fitted[r]),
                model=str(model), provenance={**provenance, "world_landmarks": it["world"] is not None and reads_world},
                boxes=it["boxes"], scores=it["scores"])
    return results


def _as_K(K_in: Any, h: int, w: int) -> torch.Tensor:
    """[3, 3] float64 intrinsics: the default for an h x w image, or the caller's (checked for shape, finite numbers
    and positive focal lengths; the fitter also refuses skew and another bottom row)."""
    if K_in is None:
        return default_intrinsics(h, w, dtype=torch.float64)
    try:
        Kt = torch.as_tensor(np.asarray(K_in, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"K must be a 3x3 matrix of numbers (pixels), got {K_in!r}") from None
    if Kt.shape != (3, 3) or not torch.isfinite(Kt).all() or Kt[0, 0] <= 0 or Kt[1, 1] <= 0:
        raise ValueError(f"K must be a finite 3x3 intrinsics matrix with positive focal lengths, got {Kt.tolist()}")
    return Kt


def regress(image: str | Path | np.ndarray, keypoints: Any = None, *, layout: str = "coco17",
            K: np.ndarray | None = None, model: str | Path = "open", device: str | torch.device | None = None,
            checkpoint: str | Path | None = None, encoder: str | None = None) -> FitResult:
    """SMPL parameters of the people in one image from the regressor alone (no fitting).

    Arguments as for :func:`fit` (keypoints in any layout that provides COCO-17's body points: converted by
    name; None runs the bundled detector); ``checkpoint``: a regressor file (default: the shipped keypoint
    weights, trained for the open model; with another ``model`` its parameters are posed with that model):
    fitlib's, or a SPIN checkpoint (``model_checkpoint.pt``, converted on loading:
    :mod:`fitlib.regression.spin`). An image network reads each person's crop (the box of their keypoints)
    and its camera is converted to ``K``. ``encoder``: ``"keypoints"`` or ``"image"``, what the checkpoint
    must be (None: either).
    Returns:
        :class:`FitResult` with the selected hypothesis per person (the one whose projection is closest to
        the keypoints), its ``reprojection_error`` (mean px over the usable points) and ``loss`` (the same),
        ``converged`` = ``fitted`` (False for people with fewer than 6 usable points or fewer than 2 of
        shoulders and hips: their parameters and errors are NaN, as in :func:`fit`), and
        ``result.hypotheses``: every hypothesis as :class:`SMPLParams` [P, H] (float64, NaN for people not
        fitted) for a refine step to choose from.
    """
    return regress_batch([image], [keypoints], layout=layout, K=[K], model=model, device=device,
                         checkpoint=checkpoint, encoder=encoder)[0]


def _regressor(checkpoint, model, device, encoder: str | None = None):
    from fitlib.regression.predict import shared_regressor

    if encoder not in (None, "keypoints", "image"):
        raise ValueError(f"encoder must be 'keypoints', 'image' or None, got {encoder!r}")
    reg = shared_regressor(checkpoint, model, device)
    if encoder is not None and reg.net.config.encoder != encoder:
        kind = {"image": "an image", "keypoints": "a keypoint"}
        raise ValueError(f"{checkpoint or 'the shipped regressor'} is {kind[reg.net.config.encoder]} regressor, "
                         f"not {kind[encoder]} one")
    return reg


def _predict_group(reg, group: list[dict], lay: str):
    """The regressor's :class:`~fitlib.regression.predict.Prediction` for the people of ``group`` (items of one
    layout, in order)."""
    counts = [len(it["kps"]) for it in group]
    kp = np.concatenate([it["kps"] for it in group])
    Ks = torch.cat([it["K"].expand(c, 3, 3) for it, c in zip(group, counts)])
    images = [it["image"] for it, c in zip(group, counts) for _ in range(c)] if reg.needs_images else None
    return reg.predict(kp, Ks, lay, images=images, world=_group_world(group))


def _group_world(group: list[dict]) -> np.ndarray | None:
    """[P, 33, 3] the world landmarks of the people of ``group`` (NaN rows for those without), or None."""
    return stack_world([(len(it["kps"]), it["world"]) for it in group])


def _regressed_inits(items: list[dict], checkpoint, model, device) -> None:
    """Fill the open per-person inits of ``items`` with the regressor's estimates (people it regresses)."""
    reg = _regressor(checkpoint, model, device)
    for lay in dict.fromkeys(it["layout"] for it in items):
        group = [it for it in items if it["layout"] == lay and len(it["kps"])]
        if not group:
            continue
        pred = _predict_group(reg, group, lay)
        est = pred.params.to("cpu", torch.float64)
        j = 0
        for it in group:
            c = len(it["kps"])
            inits = it["init"] or [None] * c
            for p in range(c):
                if inits[p] is None and bool(pred.fitted[j + p]) and bool(est.transl[j + p, 2] > 0):
                    inits[p] = est.index(slice(j + p, j + p + 1))
            it["init"] = inits
            j += c


def regress_batch(images: list, keypoints: list | None = None, *, layout: str = "coco17", K: list | None = None,
                  model: str | Path = "open", device: str | torch.device | None = None,
                  checkpoint: str | Path | None = None, encoder: str | None = None) -> list[FitResult]:
    """:func:`regress` for several images, their people in one network batch per layout."""
    n = len(images)
    keypoints = [None] * n if keypoints is None else list(keypoints)
    K = [None] * n if K is None else list(K)
    if not (len(keypoints) == len(K) == n):
        raise ValueError(f"regress_batch: {n} images but {len(keypoints)} keypoint sets and {len(K)} K")
    reg = _regressor(checkpoint, model, device, encoder)
    items = []
    for img_in, kp_in, K_in in zip(images, keypoints, K):
        img = load_image(img_in)
        h, w = img.shape[:2]
        kps, lay, boxes, scores, world = _as_people(detect(img) if kp_in is None else kp_in, layout)
        items.append({"kps": kps, "layout": lay, "K": _as_K(K_in, h, w), "size": (h, w), "boxes": boxes,
                      "scores": scores, "world": world, "image": img if reg.needs_images else None})
    results: list[FitResult | None] = [None] * n
    np_ = lambda t: t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
    for lay in dict.fromkeys(it["layout"] for it in items):
        idx = [i for i, it in enumerate(items) if it["layout"] == lay]
        group = [items[i] for i in idx]
        counts = [len(it["kps"]) for it in group]
        J = len(get_layout(lay))
        if sum(counts) == 0:
            for i, it in zip(idx, group):
                results[i] = _empty_result(it, lay, J, model)
                results[i].hypotheses = SMPLParams(*(torch.zeros(0, 1, k, dtype=torch.float64) for k in (3, 69, 10, 3)))
            continue
        pred = _predict_group(reg, group, lay)
        fitted = np_(pred.fitted).astype(bool)
        err = np.where(fitted, np_(pred.reprojection_error), np.nan)
        pose = np_(pred.params.pose).reshape(-1, 72)
        start = 0
        for i, it, c in zip(idx, group, counts):
            r = slice(start, start + c)
            start += c
            res = FitResult(pose=pose[r], betas=np_(pred.params.betas[r]), transl=np_(pred.params.transl[r]),
                            K=it["K"].numpy(), image_size=it["size"], layout=lay, keypoints=it["kps"],
                            projected=np_(pred.projected[r]), joints=np_(pred.joints[r]), reprojection_error=err[r],
                            loss=err[r].copy(), converged=fitted[r].copy(), fitted=fitted[r].copy(), model=str(model),
                            boxes=it["boxes"], scores=it["scores"])
            keep = torch.as_tensor(fitted[r])[:, None, None]
            res.hypotheses = pred.hypotheses.index(r).to(dtype=torch.float64, device="cpu").map(
                lambda t: torch.where(keep, t, torch.full_like(t, float("nan"))))
            results[i] = res
    return results


def _empty_result(item: dict, layout: str, J: int, model, provenance: dict | None = None) -> FitResult:
    e = np.zeros((0,))
    return FitResult(np.zeros((0, 72)), np.zeros((0, 10)), np.zeros((0, 3)), item["K"].numpy(), item["size"], layout,
                     np.zeros((0, J, 3)), np.zeros((0, J, 2)), np.zeros((0, 24, 3)), e, e, e.astype(bool),
                     e.astype(bool), str(model), provenance=dict(provenance or {}))
