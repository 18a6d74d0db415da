"""Embedders compared by the evaluation, all behind one interface.

    embed_clips(uint8 clips (N, T, S, S, 3)) -> float32 (N, D), unit rows

    SoraEmbedder      the Sora encoder (a checkpoint, or a seed-initialised model)
    CnnMeanEmbedder   ablation: the Sora model's FrameCNN only, frame vectors mean-pooled over
                      T (no LSTM, no Transformer): blind to frame order by construction
    TinyImageEmbedder frames reduced to 8x8 grey, concatenated over T, centred, L2-normalised:
                      the classic copy-detection baseline with no learning at all

Each embedder has a `name` (the report's column) and a `key`: two embedders with the same
key compute the same function, so the evaluation embeds once for both (the "untrained"
encoder IS the Sora encoder while no trained checkpoint exists).
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from sora_encoder import checkpoint_folder, load_runtime
from sora_encoder.copy_score import CopyCalibration, load_calibration
from sora_encoder.runtime import EncoderRuntime, InputSpec
from sora_encoder.transforms import clips_to_frames

__all__ = [
    "EMBEDDER_NAMES",
    "ClipEmbedder",
    "CnnMeanEmbedder",
    "SoraEmbedder",
    "TinyImageEmbedder",
    "build_embedders",
    "check_clips",
]

EMBEDDER_NAMES = ("sora", "untrained", "cnn_mean", "tiny_image")


class ClipEmbedder(Protocol):
    name: str  # the report's label
    key: str  # equal keys compute equal vectors
    input_spec: InputSpec  # the clips it wants: T frames of S x S

    def embed_clips(self, clips: np.ndarray) -> np.ndarray: ...


def check_clips(clips: np.ndarray, spec: InputSpec | None = None) -> np.ndarray:
    """Boundary check: uint8 (N, T, S, S, 3), matching `spec` when given."""
    if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8:
        got = f"{type(clips).__name__} of {getattr(clips, 'dtype', '?')}"
        raise TypeError(f"clips must be a uint8 numpy array, got {got}")
    if clips.ndim != 5 or clips.shape[-1] != 3 or clips.shape[2] != clips.shape[3]:
        raise ValueError(f"clips must be (N, T, S, S, 3), got {clips.shape}")
    if spec is not None and clips.shape[1:3] != (spec.frames, spec.size):
        raise ValueError(f"clips must have T={spec.frames}, S={spec.size}, got {clips.shape}")
    return clips


class SoraEmbedder:
    """The full model: `EncoderRuntime.encode_clips`."""

    def __init__(
        self,
        runtime: EncoderRuntime,
        *,
        name: str = "sora",
        calibration: CopyCalibration | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.key = runtime.model_version
        self.input_spec = runtime.input_spec
        self.dim = runtime.dim
        # The service's copy scores (sora_encoder.copy_score): the eval scores with them and
        # reports precision/recall at their threshold, as a hit's `is_copy` would say.
        self.copy_calibration = calibration
        self.copy_threshold = calibration.threshold if calibration is not None else None

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        return self.runtime.encode_clips(check_clips(clips, self.input_spec))


class CnnMeanEmbedder:
    """The runtime's FrameCNN on every frame, frame vectors averaged over time, normalised.

    It runs the runtime's inference copy of the model (BatchNorm folded, the runtime's
    precision), so it sees exactly the frame features the full model sees.
    """

    def __init__(self, runtime: EncoderRuntime, *, name: str = "cnn_mean") -> None:
        self.runtime = runtime
        self.name = name
        self.key = f"cnn-mean:{runtime.model_version}"
        self.input_spec = runtime.input_spec
        self.dim = runtime.model.frame_cnn.out_dim

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        rt = self.runtime
        check_clips(clips, self.input_spec)
        out = [np.zeros((0, self.dim), np.float32)]
        bf16 = rt.precision == "bf16"
        for i in range(0, len(clips), rt.batch_size):
            frames = clips_to_frames(
                clips[i : i + rt.batch_size], rt.config.input, device=rt.device
            )
            B, T = frames.shape[:2]  # frames (B, T, 3, S, S), channels_last per frame
            with (
                torch.inference_mode(),
                torch.autocast(rt.device.type, torch.bfloat16, enabled=bf16),
            ):
                _, frame_vec = rt.model.frame_cnn(frames.flatten(0, 1))  # (B*T, C)
            pooled = frame_vec.float().unflatten(0, (B, T)).mean(dim=1)  # (B, C)
            out.append(F.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out)


class TinyImageEmbedder:
    """Each frame to `side` x `side` grey (area average), concatenated over T: (N, T*side^2).

    `center` subtracts each clip's mean grey level before normalising (the usual recipe:
    without it every vector is nearly parallel to the all-ones direction and cosines are all
    above 0.9); a flat clip, whose centred vector is zero, gets the constant unit vector.
    """

    def __init__(
        self, input_spec: InputSpec, *, side: int = 8, center: bool = True, name: str = "tiny_image"
    ) -> None:
        if not 1 <= side <= input_spec.size:
            raise ValueError(f"side must be in [1, {input_spec.size}], got {side}")
        self.name = name
        self.side = side
        self.center = center
        self.key = f"tiny-image:{side}:{'centred' if center else 'raw'}"
        self.input_spec = input_spec
        self.dim = input_spec.frames * side * side

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        check_clips(clips, self.input_spec)
        N, T, S = clips.shape[:3]
        x = torch.from_numpy(np.ascontiguousarray(clips)).float()  # (N, T, S, S, 3)
        grey = x @ torch.tensor([0.299, 0.587, 0.114])  # (N, T, S, S), ITU-R BT.601 luma
        small = F.adaptive_avg_pool2d(grey.flatten(0, 1)[:, None], self.side)  # (N*T, 1, s, s)
        v = small.reshape(N, T * self.side * self.side).double() / 255.0  # (N, T*s*s)
        if self.center:
            v = v - v.mean(dim=1, keepdim=True)
        norm = v.norm(dim=1, keepdim=True)  # (N, 1)
        flat = norm[:, 0] < 1e-9
        v = v / norm.clamp_min(1e-12)
        v[flat] = self.dim**-0.5
        return v.float().numpy()


def build_embedders(
    names: tuple[str, ...] | list[str] = EMBEDDER_NAMES,
    *,
    checkpoint: str | os.PathLike | None = None,
    variant: str | None = None,
    device: str | None = None,
    precision: str = "auto",
) -> list[ClipEmbedder]:
    """The named embedders, sharing one input spec (the Sora runtime's T and S).

    "sora" is `load_runtime(checkpoint, variant=...)`: the checkpoint if given (or
    $SORA_CHECKPOINT / the shipped one), else a seed-initialised `variant`. "untrained" is a
    seed-initialised model of the same config, "cnn_mean" uses the Sora model's FrameCNN.
    """
    unknown = sorted(set(names) - set(EMBEDDER_NAMES))
    if unknown:
        raise ValueError(f"unknown embedders {unknown}; known: {list(EMBEDDER_NAMES)}")
    runtime = load_runtime(checkpoint, variant=variant, device=device, precision=precision)
    folder = checkpoint_folder(checkpoint, variant=variant)  # its copy calibration
    out: list[ClipEmbedder] = []
    for name in names:
        if name == "sora":
            cal = load_calibration(folder, runtime.model_version)
            out.append(SoraEmbedder(runtime, name="sora", calibration=cal))
        elif name == "untrained":
            untrained = EncoderRuntime.untrained(
                runtime.config,
                device=device,
                precision=precision,
                calibration_cache=None,
            )
            if untrained.model_version == runtime.model_version:
                untrained = runtime  # the same weights: share the runtime
            out.append(SoraEmbedder(untrained, name="untrained"))
        elif name == "cnn_mean":
            out.append(CnnMeanEmbedder(runtime))
        else:
            out.append(TinyImageEmbedder(runtime.input_spec))
    return out
