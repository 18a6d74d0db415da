"""Shipping a trained checkpoint: a half-precision export checked against its source, and
what a checkpoint holds. The library part of `sora checkpoint export|info`.

    export_checkpoint(src, dst, dtype="fp16")
        load src -> save_checkpoint(dtype) into a temporary folder beside dst
        -> reload it, cosine of the two models' vectors on random clips
        -> refuse (ExportRefused) an export over max_mb or below min_cosine
        -> move the files into dst (dst is only replaced by an export that passed)
    checkpoint_info(path) -> {variant, params, dtypes, size_mb, model_version, training}

The export gets a model version of its own (see sora_encoder.checkpoint); the source's
version, training steps and final loss are kept in its safetensors metadata.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sora_encoder.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_checkpoint,
    read_header,
    save_checkpoint,
    weights_path,
)
from sora_encoder.config import SoraConfig
from sora_encoder.train.config import CONFIG_NAME as TRAIN_CONFIG_NAME
from sora_encoder.train.loop import LOG_NAME, read_log

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
MB = 1e6  # sizes in decimal megabytes, as in --max-mb
FLOATING = ("float64", "float32", "float16", "bfloat16")


class ExportRefused(ValueError):
    """The export would overwrite, is not a checkpoint, or failed a check; dst is untouched.
    args: (message,) or, for an export measured and then refused, (message, ExportReport)."""


@dataclass(frozen=True)
class ExportReport:
    src_version: str
    src_size_mb: float
    src_dtypes: list[str]
    version: str
    size_mb: float
    cos_min: float  # cosine between the source's and the export's vectors
    cos_mean: float
    kept: list[str]  # floating tensors left in their stored dtype (not converted)


def checkpoint_files(folder: Path) -> list[Path]:
    return [folder / CONFIG_NAME, folder / WEIGHTS_NAME]


def train_summary(folder: Path) -> dict[str, Any]:
    """Steps and final loss from a training run's train_log.jsonl, its train_config.json."""
    out: dict[str, Any] = {}
    if (folder / TRAIN_CONFIG_NAME).is_file():
        out["train_config"] = json.loads((folder / TRAIN_CONFIG_NAME).read_text("utf-8"))
    if (folder / LOG_NAME).is_file():
        log = read_log(folder)
        if log:
            out["train_steps"] = log[-1]["step"]
            out["train_final_loss"] = log[-1]["loss"]
    return out


def vector_cosines(
    a: torch.nn.Module, b: torch.nn.Module, config: SoraConfig, *, clips: int, seed: int = 0
) -> torch.Tensor:
    """Cosine between models a's and b's vectors of the same random (N, T, 3, S, S) clips."""
    T, S = config.input.num_frames, config.input.image_size
    # (N, T, 3, S, S), already normalised: the model's input, not uint8 pixels
    x = torch.randn(clips, T, 3, S, S, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return F.cosine_similarity(a.encode_video(x), b.encode_video(x), dim=-1)  # (N,)


def export_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    dtype: str = "fp16",
    clips: int = 8,
    max_mb: float = float("inf"),
    min_cosine: float = -1.0,
    force: bool = False,
) -> ExportReport:
    """Export `src` in `dtype` to the folder `dst`; see the module docstring."""
    src, dst = Path(src), Path(dst)
    if dtype not in DTYPES:
        raise ExportRefused(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if dst.exists() and not dst.is_dir():
        raise ExportRefused(f"{dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not force:
        raise ExportRefused(f"{dst} is not empty; add --force to replace its checkpoint")
    if clips < 1:
        raise ExportRefused(f"--clips must be >= 1, got {clips}")
    src_dir = weights_path(src).parent
    try:
        model, config, src_version = load_checkpoint(src)
        train = train_summary(src_dir)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportRefused(f"{src} is not a usable checkpoint: {exc}") from exc
    src_dtypes = sorted(set(read_header(src)[1].values()))
    torch_dtype = DTYPES[dtype]
    # Provenance in the header (JSON strings); the version does not depend on it.
    metadata = {"exported_from": src_version}
    metadata.update(
        {k: json.dumps(train[k]) for k in ("train_steps", "train_final_loss") if k in train}
    )

    # Write next to DST first: DST is replaced only by an export that passed every check.
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        version = save_checkpoint(model, config, tmp, dtype=torch_dtype, metadata=metadata)
        size = sum(f.stat().st_size for f in checkpoint_files(tmp))
        exported, _, loaded_version = load_checkpoint(tmp)
        assert loaded_version == version, f"{loaded_version} != {version}"
        cos = vector_cosines(model, exported, config, clips=clips)
        want = str(torch_dtype).removeprefix("torch.")
        kept = sorted(n for n, d in read_header(tmp)[1].items() if d in FLOATING and d != want)
        report = ExportReport(
            src_version=src_version,
            src_size_mb=sum(f.stat().st_size for f in checkpoint_files(src_dir)) / MB,
            src_dtypes=src_dtypes,
            version=version,
            size_mb=size / MB,
            cos_min=cos.min().item(),
            cos_mean=cos.mean().item(),
            kept=kept,
        )
        if size > max_mb * MB:
            raise ExportRefused(f"export is {size / MB:.2f} MB, over --max-mb {max_mb:g}", report)
        if report.cos_min < min_cosine:
            raise ExportRefused(
                f"vectors moved: cosine {report.cos_min:.5f} < --min-cosine {min_cosine:g}",
                report,
            )
        dst.mkdir(exist_ok=True)
        for f in checkpoint_files(tmp):
            f.replace(dst / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """What `sora checkpoint info` shows, as a dict. Raises as load_checkpoint does."""
    model, config, version = load_checkpoint(path)
    metadata, dtypes = read_header(path)
    weights = weights_path(path)
    size = sum(f.stat().st_size for f in checkpoint_files(weights.parent))
    info: dict[str, Any] = {
        "path": str(weights.parent),
        "variant": config.name,
        "params": sum(p.numel() for p in model.parameters()),
        "dtypes": dict(sorted(Counter(dtypes.values()).items())),
        "size_mb": round(size / MB, 3),
        "model_version": version,
    }
    if "exported_from" in metadata:
        info["exported_from"] = metadata["exported_from"]
    for key in ("train_steps", "train_final_loss"):  # kept by export
        if key in metadata:
            info[key] = json.loads(metadata[key])
    info.update(train_summary(weights.parent))  # a training run's own files win
    return info
