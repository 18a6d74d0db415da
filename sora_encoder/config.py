"""The Sora encoder's configuration: one frozen dataclass per part, nested in `SoraConfig`.

    SoraConfig
      |- input:         InputConfig          frames per clip, frame size, mean/std
      |- frame_cnn:     FrameCNNConfig       residual conv stages on each frame
      |- temporal_rnn:  TemporalRNNConfig    bidirectional LSTM over the frame vectors
      |- fusion:        FusionConfig         Transformer over [CLS] + temporal + spatial tokens
      |- projection:    ProjectionConfig     CLS -> the Sora vector
      '- heads:         {name: num_classes}  optional classifiers on the vector

The defaults ARE the `sora-s` variant (the CPU default). Named variants are JSON files in
`model_configs/` holding only their overrides; `SoraConfig.from_dict` lays them over the
defaults. `to_dict()` gives the full config and `canonical_json()` the exact bytes that the
model version hashes, so the JSON round trip must be lossless (tuples become lists and back).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputConfig:
    # Frames per clip. 16 frames over a 4 s window is 4 fps: enough for motion, cheap to decode.
    num_frames: int = 16
    # Frames are resized and centre-cropped to image_size x image_size by the decoder.
    # 112 px keeps the CPU encoder fast; it must be a multiple of the stem patch.
    image_size: int = 112
    # Per-channel RGB mean and std on the [0, 1] scale (the Kinetics values of pytorchvideo).
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class FrameCNNConfig:
    # The stem is ONE k x k, stride-k "patchify" conv (3 -> widths[0]): full-resolution convs
    # with few channels run at a fraction of oneDNN's speed, so we downsample at once.
    # 4 takes 112 px to a 28 x 28 map, the same as ResNet's stride-2 conv + max-pool.
    stem_patch: int = 4
    # Channels per stage; each later stage opens with a 3x3 stride-2 conv. Multiples of 64
    # keep the oneDNN kernels on their fast path.
    widths: tuple[int, ...] = (64, 128, 256)
    # Residual blocks (two 3x3 convs each) per stage. 112 px: maps of 28, 14 and 7 cells.
    depths: tuple[int, ...] = (2, 2, 2)
    # The last map is average-pooled to a grid x grid of spatial tokens per frame
    # (2 -> 4 tokens a frame, 64 a clip): enough to say "where", few enough for attention.
    spatial_grid: int = 2


@dataclass(frozen=True)
class TemporalRNNConfig:
    # LSTM hidden size per direction; the temporal tokens have 2 * hidden features.
    hidden: int = 128
    # Stacked LSTM layers. One is enough over 16 steps; the Transformer does the rest.
    layers: int = 1


@dataclass(frozen=True)
class FusionConfig:
    # Token width. A multiple of 64 so that each head is 64 wide (fused SDPA's sweet spot).
    dim: int = 256
    # Pre-norm Transformer blocks. ~81 tokens a clip, so attention is cheap next to the CNN.
    depth: int = 4
    # Attention heads; dim must divide by it.
    heads: int = 4
    # Hidden width of each block's MLP, as a multiple of dim.
    mlp_ratio: float = 4.0
    # Dropout in attention and MLP while training; 0 keeps pretraining simple.
    dropout: float = 0.0


@dataclass(frozen=True)
class ProjectionConfig:
    # Size of the Sora vector. 256 float32 = 1 KiB per segment in SQL and in FAISS.
    out_dim: int = 256
    # A learned affine map after the unit vector, then unit length again: PCA whitening fitted
    # on training vectors (`sora checkpoint whiten`), which spreads the directions unrelated
    # clips share and so separates copies from look-alikes (docs/MODEL.md). Off: the unit
    # projection output is the Sora vector. Left out of to_dict() when off, so the configs
    # (and model versions) written before it existed are unchanged.
    whiten: bool = False


@dataclass(frozen=True)
class SoraConfig:
    # Variant name; prefixes the model version ("sora-s-3f2a...").
    name: str = "sora-s"
    input: InputConfig = field(default_factory=InputConfig)
    frame_cnn: FrameCNNConfig = field(default_factory=FrameCNNConfig)
    temporal_rnn: TemporalRNNConfig = field(default_factory=TemporalRNNConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    # Optional classifier heads on the vector: {head name: number of classes}. Empty for the
    # pretrained encoder; heads trained later on labelled videos are added here.
    heads: dict[str, int] = field(default_factory=dict)
    # Seed of the deterministic initialisation, so an untrained model is the same everywhere.
    init_seed: int = 0

    def __post_init__(self) -> None:
        _check(self)

    # -- JSON ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, overrides: dict[str, Any], base: SoraConfig | None = None) -> SoraConfig:
        """`base` (default: the defaults) with `overrides` laid over it, part by part."""
        return merge_dataclass(base if base is not None else cls(), overrides)

    def to_dict(self) -> dict[str, Any]:
        d = to_jsonable(dataclasses.asdict(self))
        if not self.projection.whiten:  # a field added later: absent means off
            del d["projection"]["whiten"]
        return d

    def canonical_json(self) -> str:
        """Sorted keys, no spaces: the exact text that the model version hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SoraConfig:
        return cls.from_dict(json.loads(text))


def merge_dataclass(obj: Any, overrides: dict[str, Any]) -> Any:
    """A copy of dataclass `obj` with `overrides` applied; nested dicts recurse into parts.
    Shared by every config dataclass (SoraConfig here, TrainConfig in sora_encoder.train)."""
    if not isinstance(overrides, dict):
        raise ValueError(f"expected a JSON object for {type(obj).__name__}, got {overrides!r}")
    names = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(
                f"unknown field {key!r} in {type(obj).__name__}; known: {sorted(names)}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge_dataclass(current, value)
        elif isinstance(current, tuple):
            changes[key] = tuple(value)
        elif isinstance(current, dict):
            changes[key] = dict(value)
        else:
            changes[key] = value
    return dataclasses.replace(obj, **changes)


def to_jsonable(value: Any) -> Any:
    """`dataclasses.asdict` output with tuples as lists, as JSON writes them."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def _check(cfg: SoraConfig) -> None:
    """Raise ValueError on a config that cannot build a working model."""
    inp, cnn, fus = cfg.input, cfg.frame_cnn, cfg.fusion
    problems = []
    if inp.num_frames < 1:
        problems.append(f"input.num_frames must be >= 1, got {inp.num_frames}")
    if len(inp.mean) != 3 or len(inp.std) != 3 or min(inp.std) <= 0:
        problems.append(f"input.mean/std must be 3 values, std > 0; got {inp.mean}, {inp.std}")
    if cnn.stem_patch < 1 or inp.image_size % cnn.stem_patch:
        problems.append(
            f"input.image_size {inp.image_size} must be a multiple of stem_patch {cnn.stem_patch}"
        )
    if not cnn.widths or len(cnn.widths) != len(cnn.depths):
        problems.append(f"frame_cnn.widths {cnn.widths} and depths {cnn.depths} must pair up")
    if cnn.spatial_grid < 1:
        problems.append(f"frame_cnn.spatial_grid must be >= 1, got {cnn.spatial_grid}")
    if fus.heads < 1 or fus.dim % fus.heads:
        problems.append(f"fusion.dim {fus.dim} must divide by fusion.heads {fus.heads}")
    if cfg.projection.out_dim < 1:
        problems.append(f"projection.out_dim must be >= 1, got {cfg.projection.out_dim}")
    if any(n < 2 for n in cfg.heads.values()):
        problems.append(f"every head needs >= 2 classes, got {cfg.heads}")
    if problems:
        raise ValueError(f"invalid SoraConfig {cfg.name!r}: " + "; ".join(problems))
