"""Evaluation of Sora vectors against baselines: near-duplicate retrieval and classification.

    splits      split_of(group) -> "train" | "test": the one group split (trainer + eval)
    transforms  near-duplicate families: ffmpeg filter graphs applied to real files
    data        manifests, and decoding each file once into uint8 clips for every embedder
    baselines   embedders with one interface, embed_clips(uint8 clips) -> (N, D)
    neardup     recall@k / mAP of transformed copies against their originals
    classify    heads on frozen vectors, group split; the time-reversal task
    report      Markdown and JSON tables, the confusion-matrix PNG
    png         a minimal canvas with a bitmap font, and a PNG writer (zlib + struct)

Only `splits` is imported here: the trainer needs it without pulling in the rest.
"""

from sora_encoder.eval.splits import DEFAULT_SALT, DEFAULT_TEST_FRACTION, split_items, split_of

__all__ = ["DEFAULT_SALT", "DEFAULT_TEST_FRACTION", "split_items", "split_of"]
