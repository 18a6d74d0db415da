"""EncoderRuntime: a SoraModel made ready for inference, and the one call the workers use.

    clips uint8 (N, T, S, S, 3)
      -> batches of `batch_size`  -> transforms.clips_to_frames on the device  (b, T, 3, S, S)
      -> inference model: eval, BatchNorm folded into the convs, channels_last,
         bf16 autocast if chosen (the FrameCNN's weights then stored in bf16), optionally
         torch.compile'd, under torch.inference_mode
      -> float32 numpy (N, D), unit length

Precision policy (`precision="auto"`):
  - CUDA: fp32. Measured on an H200 (torch 2.11, 2026-12-01, both shipped models): bf16
    autocast moved video vectors to cosine 0.9947-0.9986 of the CPU's fp32 ones (pairwise
    similarities by up to 0.016, enough to flip a copy verdict near the threshold, and
    below the CPU rule's MIN_COSINE), while fp32 on CUDA matched the CPU within 0.0008.
    bf16 encodes 1.3-1.5x faster (about 7,000 against 4,700-5,400 clips/s at batch 64), but
    embedding files ran at the same 13-14 files/s in both: decoding, not the encoder, is
    the limit, so bf16 would buy nothing but scores that differ by device.
  - CPU: a calibration at start times the model in fp32 and in bf16 on a synthetic clip
    and compares the vectors. bf16 is chosen only if it is at least `MIN_SPEEDUP` times
    faster AND every vector is within cosine `MIN_COSINE` of fp32 (`choose_precision`).
    It costs about 0.4 s for sora-s (1 s for sora-b) and is cached per model version,
    machine, torch version and thread count: in the process, and in a JSON file if
    `calibration_cache` is given (not when the machine was busy while it measured: timings
    under load can invert the comparison). `precision="fp32"` or `"bf16"` skips it.
    On the 2-core AVX-512-BF16 machine this was written on (AMD EPYC, torch 2.13), sora-s
    at batch 8 ran 2.0x faster in bf16 (730 vs 364 GFLOP/s; the calibration's own estimate
    was 1.74x) with every vector within cosine 0.99997 of fp32 (bench/bench_encoder.py).
    A CPU without native bf16 instructions is slower in bf16; the calibration keeps it in
    fp32. Caveat: an untrained model maps all clips close together (mean cosine ~0.996
    between clips), so its raw cosine says little; centred on the batch mean the bf16
    vectors kept cosine ~0.96. Re-check with bench_encoder.py when a trained checkpoint
    lands.

torch.compile is off by default: on that CPU (inductor with freezing) it gave +4 % in fp32
and +14 % in bf16, for 10-20 s of compiling per batch shape in a fresh process (2-3 s with
inductor's on-disk cache warm). `compile=True` turns it on; batches are then padded to
`batch_size` so one shape is compiled once, and any failure falls back to eager with a
warning. channels_last and BatchNorm folding are always on: +25 % over the model as built.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from sora_encoder.checkpoint import load_checkpoint, model_version
from sora_encoder.config import SoraConfig
from sora_encoder.factory import create_model
from sora_encoder.model.frame_cnn import ConvNormAct
from sora_encoder.model.sora import SoraModel
from sora_encoder.registry import get_model_config
from sora_encoder.transforms import clips_to_frames

logger = logging.getLogger(__name__)

MIN_COSINE = 0.999  # bf16 vectors must stay this close to fp32 ones, clip by clip
MIN_SPEEDUP = 1.1  # and bf16 must be this much faster: a margin over timing noise
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class InputSpec:
    """What the decoder must deliver: clips of `frames` RGB frames of `size` x `size`."""

    frames: int  # T
    size: int  # S


@dataclass(frozen=True)
class Calibration:
    """One fp32-vs-bf16 measurement on this machine."""

    fp32_s: float  # seconds per calibration batch in fp32 (best of a few runs)
    bf16_s: float  # the same under bf16 autocast
    cosine: float  # the smallest cosine between a clip's fp32 and bf16 vectors

    @property
    def speedup(self) -> float:
        return self.fp32_s / self.bf16_s


def choose_precision(
    cal: Calibration, *, min_cosine: float = MIN_COSINE, min_speedup: float = MIN_SPEEDUP
) -> str:
    """'bf16' if it is both accurate and faster enough, else 'fp32'."""
    return "bf16" if cal.cosine >= min_cosine and cal.speedup >= min_speedup else "fp32"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm of a ConvNormAct into its conv, in place; returns model."""
    assert not model.training, "fold_batchnorm needs an eval-mode model (it uses running stats)"
    for m in model.modules():
        if isinstance(m, ConvNormAct) and isinstance(m.norm, nn.BatchNorm2d):
            m.conv = fuse_conv_bn_eval(m.conv, m.norm)
            m.norm = nn.Identity()
    return model


def prepare_for_inference(
    model: SoraModel, *, device: torch.device, precision: str, channels_last: bool = True
) -> SoraModel:
    """A copy of `model`: eval, BatchNorm folded, on `device`, channels_last, and for bf16 the
    FrameCNN's weights in bf16 (autocast would otherwise re-cast them on every call)."""
    assert precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {precision!r}"
    m = fold_batchnorm(copy.deepcopy(model).eval()).to(device)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    if precision == "bf16":
        m.frame_cnn.to(torch.bfloat16)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def synthetic_frames(config: SoraConfig, n: int, *, seed: int = 0) -> torch.Tensor:
    """n smooth, deterministic clips (n, T, 3, S, S), roughly normalised: calibration input."""
    g = torch.Generator().manual_seed(seed)
    T, S = config.input.num_frames, config.input.image_size
    coarse = torch.randn(n * T, 3, 8, 8, generator=g)  # (n*T, 3, 8, 8)
    x = F.interpolate(coarse, size=(S, S), mode="bilinear", align_corners=False)
    x = x + 0.3 * torch.randn(n * T, 3, S, S, generator=g)  # (n*T, 3, S, S)
    return x.unflatten(0, (n, T))  # (n, T, 3, S, S)


class EncoderRuntime:
    """Wraps a SoraModel for inference; `encode_clips` is the one call the workers need."""

    def __init__(
        self,
        model: SoraModel,
        config: SoraConfig,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        compile: bool = False,
        batch_size: int = 8,
        calibration_cache: str | os.PathLike | None = None,
        version: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.config = config
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.model_version = version or model_version(model, config)
        self.calibration: Calibration | None = None
        if precision == "auto" and self.device.type == "cuda":
            precision = "fp32"  # the module docstring's measurement: bf16 moves scores
        elif precision == "auto":
            self.calibration = self._calibration(model, calibration_cache)
            precision = choose_precision(self.calibration)
            logger.info(
                "%s on %s: bf16 %.2fx faster, cosine %.5f -> %s",
                self.model_version, self.device, self.calibration.speedup,
                self.calibration.cosine, precision,
            )  # fmt: skip
        self.precision = precision
        self.model = prepare_for_inference(model, device=self.device, precision=precision)
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self.model.encode_video
        self.compiled = False
        if compile:
            options = {"freezing": True} if self.device.type == "cpu" else None
            self._forward = torch.compile(self.model.encode_video, dynamic=False, options=options)
            self.compiled = True

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> EncoderRuntime:
        model, config, version = load_checkpoint(path)
        return cls(model, config, version=version, **kwargs)

    @classmethod
    def untrained(cls, config_or_name: SoraConfig | str, **kwargs) -> EncoderRuntime:
        """A runtime over a freshly initialised (seeded, reproducible) model."""
        if isinstance(config_or_name, str):
            config_or_name = get_model_config(config_or_name)
        return cls(create_model(config_or_name), config_or_name, **kwargs)

    @property
    def dim(self) -> int:
        """D, the length of a Sora vector."""
        return self.config.projection.out_dim

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec(frames=self.config.input.num_frames, size=self.config.input.image_size)

    # -- inference -----------------------------------------------------------------------
    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """uint8 (N, T, S, S, 3) RGB clips -> float32 (N, D) unit vectors, in batches.

        TypeError for anything but a uint8 array; ValueError if T or S differ from the config.
        """
        inp = self.config.input
        expected = (inp.num_frames, inp.image_size, inp.image_size, 3)
        if not isinstance(clips, np.ndarray) or clips.dtype != np.uint8:
            raise TypeError(
                f"clips must be a uint8 numpy array, got {type(clips).__name__}"
                f"{' of ' + str(clips.dtype) if hasattr(clips, 'dtype') else ''}"
            )
        if clips.ndim != 5 or clips.shape[1:] != expected:
            raise ValueError(
                f"clips must be (N, {', '.join(map(str, expected))}), got {clips.shape}"
            )
        out = [np.zeros((0, self.dim), np.float32)]
        for i in range(0, len(clips), self.batch_size):
            frames = clips_to_frames(clips[i : i + self.batch_size], inp, device=self.device)
            out.append(self.encode_frames(frames).cpu().numpy())
        return np.concatenate(out)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised float frames (B, T, 3, S, S) -> float32 (B, D) unit vectors."""
        n = frames.shape[0]
        pad = self.batch_size - n if self.compiled else 0  # one compiled shape: pad the batch
        frames = _nthwc_frames(frames.to(self.device), pad=max(pad, 0))
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=bf16):
            try:
                vec = self._forward(frames)
            except Exception:
                if not self.compiled:
                    raise
                logger.warning("torch.compile failed; running eager from now on", exc_info=True)
                self._forward, self.compiled = self.model.encode_video, False
                vec = self._forward(frames)
        return vec[:n].float()

    # -- calibration ---------------------------------------------------------------------
    def _calibration(self, model: SoraModel, cache_file: str | os.PathLike | None) -> Calibration:
        key = "|".join(
            [self.model_version, cpu_name(), torch.backends.cpu.get_cpu_capability(),
             f"torch {torch.__version__}",
             f"threads {torch.get_num_threads()}", str(self.device)]
        )  # fmt: skip
        cal = _CALIBRATIONS.get(key) or _read_cache(cache_file, key)
        if cal is None:
            cal = calibrate(model, self.config, device=self.device)
            busy = _busy()
            if busy:
                logger.warning("calibrated on a busy machine (%s); not caching it on disk", busy)
            elif cache_file is not None:
                _write_cache(cache_file, key, cal)
        _CALIBRATIONS[key] = cal
        return cal


def _nthwc_frames(frames: torch.Tensor, *, pad: int = 0) -> torch.Tensor:
    """(B, T, 3, S, S) frames stored as (B + pad, T, S, S, 3), the last clip repeated `pad` times.

    Each frame is then channels_last, the layout of the convs, and every batch has the same
    strides, so a compiled model is not recompiled for a differently laid-out batch.
    """
    x = frames.permute(0, 1, 3, 4, 2)  # (B, T, S, S, 3), a view
    if pad:
        x = torch.cat([x, x[-1:].expand(pad, *x.shape[1:])])  # (B + pad, T, S, S, 3)
    return x.contiguous().permute(0, 1, 4, 2, 3)  # (B + pad, T, 3, S, S), a view


def calibrate(
    model: SoraModel, config: SoraConfig, *, device: torch.device, clips: int = 1, rounds: int = 5
) -> Calibration:
    """Time fp32 and bf16 inference on `clips` synthetic clips and compare their vectors.

    The two alternate, round after round, and the best time of each counts, so that a burst
    of load from other processes does not decide the comparison. Short runs (one clip) make
    an undisturbed run likelier on a busy machine.
    """
    frames = _nthwc_frames(synthetic_frames(config, clips).to(device))
    models = {p: prepare_for_inference(model, device=device, precision=p) for p in ("fp32", "bf16")}
    times = dict.fromkeys(models, float("inf"))
    vecs = {}
    for r in range(rounds + 1):  # round 0 warms up and keeps the vectors
        for precision, m in models.items():
            bf16 = precision == "bf16"
            t0 = time.perf_counter()
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                vec = m.encode_video(frames).float()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r == 0:
                vecs[precision] = vec
            else:
                times[precision] = min(times[precision], time.perf_counter() - t0)
    cosine = (vecs["fp32"] * vecs["bf16"]).sum(-1).min().item()
    return Calibration(fp32_s=times["fp32"], bf16_s=times["bf16"], cosine=cosine)


_CALIBRATIONS: dict[str, Calibration] = {}


def _read_cache(path: str | os.PathLike | None, key: str) -> Calibration | None:
    if path is None:
        return None
    try:
        entry = json.loads(Path(path).read_text("utf-8"))[key]
        return Calibration(
            **{f.name: float(entry[f.name]) for f in dataclasses.fields(Calibration)}
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no cache yet, another machine's, or unreadable: measure again


def _write_cache(path: str | os.PathLike, key: str, cal: Calibration) -> None:
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8")) if p.is_file() else {}
    except (OSError, ValueError):
        data = {}
    data[key] = dataclasses.asdict(cal)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
    os.replace(tmp, p)


def _busy() -> str:
    """A reason if other processes keep the CPUs busy (load above the CPU count), else ''."""
    try:
        load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    except (AttributeError, OSError):  # no load average on this platform
        return ""
    return f"load {load:.1f} on {cpus} CPUs" if load > cpus else ""


def cpu_name() -> str:
    """The CPU model, for reports and the calibration cache key."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
