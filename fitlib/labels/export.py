"""A label store's contents out: training files in the field's formats, and statistics with a score histogram.

``fitlib labels export STORE --format spin|humandata|npz --out FILE`` writes the valid labels (``--all``: every
label) through the same writers as fit results (:mod:`fitlib.interop`): SPIN / 4D-Humans training npz,
mmhuman3d HumanData, or fitlib's own npz with every column of the store. ``fitlib labels stats STORE`` prints
counts, replacements per round and the score distribution, and draws the histogram as a PNG.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from fitlib.body.layouts import convert_keypoints, get_layout
from fitlib.io.atomic import atomic_write
from fitlib.labels.store import Label, LabelStore

FORMATS = ("spin", "humandata", "npz")


def _layout(labels: list[Label]) -> str:
    """The one layout to export: the labels' own when they share one, else COCO-17 (which every supported
    layout converts to)."""
    layouts = {lab.layout for lab in labels}
    return layouts.pop() if len(layouts) == 1 else "coco17"


def export_arrays(labels: list[Label], model: str = "open"):
    """The labels as :class:`fitlib.interop.ExportArrays` (image names ``dataset/item``; pose, betas and transl NaN
    where a label has no SMPL)."""
    from fitlib.interop import ExportArrays
    from fitlib.detection.keypoints import keypoint_boxes

    layout = _layout(labels)
    kp = np.stack([convert_keypoints(lab.keypoints[None], lab.layout, layout)[0] for lab in labels]) if labels \
        else np.zeros((0, len(get_layout(layout)), 3))
    has = np.array([lab.has_smpl for lab in labels], dtype=bool)
    rows = lambda f, n: np.stack([f(lab) for lab in labels]) if labels else np.zeros((0, n))  # noqa: E731
    pose, betas, transl = rows(lambda l: l.pose, 72), rows(lambda l: l.betas, 10), rows(lambda l: l.transl, 3)
    for a in (pose, betas, transl):
        a[~has] = np.nan
    return ExportArrays(
        image_names=[f"{lab.dataset}/{lab.item}" for lab in labels],
        person_index=np.array([int(lab.person) if lab.person.isdigit() else -1 for lab in labels], dtype=np.int64),
        pose=pose, betas=betas, transl=transl, keypoints=kp, layout=layout, boxes=keypoint_boxes(kp),
        box_scores=np.ones(len(labels)), has_smpl=has,
        K=np.stack([lab.K for lab in labels]) if labels else np.zeros((0, 3, 3)),
        image_size=np.array([lab.image_size for lab in labels], dtype=np.int64).reshape(-1, 2), model=model)


def export_store(store: str | Path, out: str | Path, fmt: str, valid_only: bool = True) -> tuple[Path, int]:
    """Write a store's labels as ``fmt`` (:data:`FORMATS`) to ``out``; returns the path and the number of labels.

    Raises:
        ValueError: unknown format, or nothing to export.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
    with LabelStore(store) as st:
        labels = list(st.labels(valid_only=valid_only))
        model = st.body_model.get("model", "open")
    if not labels:
        raise ValueError(f"{store}: no {'valid ' if valid_only else ''}labels to export")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        layout = _layout(labels)
        arrays = {
            "key": np.array([lab.key for lab in labels]), "dataset": np.array([lab.dataset for lab in labels]),
            "item": np.array([lab.item for lab in labels]), "person": np.array([lab.person for lab in labels]),
            "pose": np.stack([lab.pose for lab in labels]), "betas": np.stack([lab.betas for lab in labels]),
            "transl": np.stack([lab.transl for lab in labels]), "K": np.stack([lab.K for lab in labels]),
            "image_size": np.array([lab.image_size for lab in labels]), "layout": np.array(layout),
            "keypoints": np.stack([convert_keypoints(lab.keypoints[None], lab.layout, layout)[0] for lab in labels]),
            "score": np.array([lab.score for lab in labels]), "valid": np.array([lab.valid for lab in labels]),
            "has_smpl": np.array([lab.has_smpl for lab in labels]), "is_gt": np.array([lab.is_gt for lab in labels]),
            "replaced": np.array([lab.replaced for lab in labels]), "round": np.array([lab.round for lab in labels]),
            "body_model": np.array(str(model))}
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with atomic_write(out) as fh:
            fh.write(buf.getvalue())
        return out, len(labels)
    from fitlib.interop import export_training_file

    return Path(export_training_file(out, export_arrays(labels, model), fmt)), len(labels)


def store_stats(store: str | Path) -> dict:
    """Counts of a store: ``labels``, ``valid``, ``has_smpl``, ``ground_truth``, ``replaced`` (labels replaced at
    least once), per dataset, the score quantiles (canonical px) and per-round counts
    (:meth:`LabelStore.rounds`)."""
    with LabelStore(store) as st:
        labels = list(st.labels())
        rounds = st.rounds()
        model = st.body_model
    scores = np.array([lab.score for lab in labels if np.isfinite(lab.score)])
    return {"labels": len(labels), "valid": sum(lab.valid for lab in labels),
            "has_smpl": sum(lab.has_smpl for lab in labels), "ground_truth": sum(lab.is_gt for lab in labels),
            "replaced": sum(lab.replaced > 0 for lab in labels),
            "datasets": dict(Counter(lab.dataset for lab in labels)),
            "score_quantiles": {q: float(np.quantile(scores, q / 100)) for q in (5, 25, 50, 75, 95)} if scores.size else {},
            "scores": scores, "rounds": rounds, "body_model": model}


def plot_histogram(scores: np.ndarray, path: str | Path, max_score: float | None = None, bins: int = 40) -> Path:
    """Score histogram (canonical px) as a PNG (OpenCV), with the validity threshold drawn when given."""
    import cv2

    W, H, m = 800, 420, 60
    img = np.full((H, W, 3), 255, np.uint8)
    top = 20.0
    counts, edges = np.histogram(np.clip(scores, 0, top), bins=bins, range=(0, top))
    peak = max(int(counts.max()) if counts.size else 1, 1)
    bw = (W - 2 * m) / bins
    for i, c in enumerate(counts):
        x0 = int(m + i * bw)
        y0 = int(H - m - (H - 2 * m) * c / peak)
        cv2.rectangle(img, (x0, y0), (int(x0 + bw) - 1, H - m), (200, 130, 60), -1)
    cv2.rectangle(img, (m, m), (W - m, H - m), (0, 0, 0), 1)
    if max_score is not None and max_score < top:
        x = int(m + (W - 2 * m) * max_score / top)
        cv2.line(img, (x, m), (x, H - m), (0, 0, 220), 2)
        cv2.putText(img, f"valid below {max_score:g}", (x + 5, m + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 220), 1,
                    cv2.LINE_AA)
    cv2.putText(img, f"pseudo-label scores (canonical px), {len(scores)} labels, median "
                     f"{np.median(scores) if len(scores) else float('nan'):.2f}", (m, 35), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    for v in range(0, int(top) + 1, 5):
        x = int(m + (W - 2 * m) * v / top)
        cv2.putText(img, str(v), (x - 5, H - m + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"0..{peak}", (5, m + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    path = Path(path)
    with atomic_write(path) as fh:
        fh.write(png.tobytes())
    return path
