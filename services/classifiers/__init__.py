"""Classifier heads trained on frozen Sora vectors, and the metrics that judge them."""

from services.classifiers.heads import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_L2,
    TrainedHead,
    fit_softmax,
    stratified_split,
    train_head,
)
from services.classifiers.metrics import accuracy, confusion_matrix, macro_f1

__all__ = [
    "DEFAULT_HOLDOUT_FRACTION",
    "DEFAULT_L2",
    "TrainedHead",
    "accuracy",
    "confusion_matrix",
    "fit_softmax",
    "macro_f1",
    "stratified_split",
    "train_head",
]
