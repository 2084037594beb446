"""Training the keypoint regressor: on-the-fly seeded samples (:mod:`~fitlib.training.data`), validated
configs (:mod:`~fitlib.training.config`, ``configs/train/*.yaml``) and a resumable trainer
(:mod:`~fitlib.training.trainer`, ``fitlib train-regressor``)."""
from fitlib.training.config import LossWeights, TrainConfig, load_train_config
from fitlib.datasets.batch import Batch
from fitlib.training.data import DataConfig, SampleGenerator
from fitlib.training.trainer import regressor_loss, train, validate

__all__ = ["Batch", "DataConfig", "LossWeights", "SampleGenerator", "TrainConfig", "load_train_config",
           "regressor_loss", "train", "validate"]
