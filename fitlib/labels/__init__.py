"""Pseudo-labels: a store of each person sample's best fit (:class:`LabelStore`), the config-independent score
that decides which fit is better (:mod:`fitlib.labels.score`), validity rules, label jobs over image
collections, videos, keypoint files and 3DPW-format sets (:func:`run_label_job`, local or on Ray), and
exports to the field's training formats."""
from fitlib.labels.config import LabelConfig, LabelRules, load_label_config
from fitlib.labels.job import JobSummary, LabelWorker, run_label_job
from fitlib.labels.score import score_params
from fitlib.labels.sources import Item, items
from fitlib.labels.store import Label, LabelStore

__all__ = ["Item", "JobSummary", "Label", "LabelConfig", "LabelRules", "LabelStore", "LabelWorker", "items",
           "load_label_config", "run_label_job", "score_params"]
