"""The Sora encoder's modules; `sora_encoder.factory.create_model` assembles them."""

from sora_encoder.model.frame_cnn import FrameCNN, build_frame_cnn
from sora_encoder.model.fusion import FusionTransformer, build_fusion
from sora_encoder.model.sora import (
    ClassifierHead,
    SoraModel,
    build_heads,
    build_projection,
    build_whitening,
)
from sora_encoder.model.temporal_rnn import TemporalRNN, build_temporal_rnn

__all__ = [
    "ClassifierHead",
    "FrameCNN",
    "FusionTransformer",
    "SoraModel",
    "TemporalRNN",
    "build_frame_cnn",
    "build_fusion",
    "build_heads",
    "build_projection",
    "build_temporal_rnn",
    "build_whitening",
]
