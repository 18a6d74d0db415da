"""Classifier heads on Sora vectors: the library part of `sora train classifier` and of the
API's TrainClassifier / Classify, and of `sora eval classify`.

    softmax     train_head / fit_softmax / TrainedHead: a softmax head on frozen vectors,
                a group-aware stratified holdout, (de)serialised as safetensors
    metrics     accuracy, macro-F1, confusion matrix
    dataset     labelled files (DIR/<label>/*.mp4 or a path,label[,group] CSV) checked
                for training
    offline     embed labelled files, fit a head, write it to a file
    finetuned   fine-tune the encoder with a head, then a fresh head on its vectors
"""

from sora_encoder.heads.metrics import accuracy, confusion_matrix, macro_f1
from sora_encoder.heads.softmax import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_L2,
    TrainedHead,
    fit_softmax,
    stratified_split,
    train_head,
)

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
