"""Checkpoints: `model.safetensors` + `config.json` in one folder, named by a model version.

    save_checkpoint(model, config, dir, dtype=None) -> version   writes both files
    load_checkpoint(dir or .safetensors) -> (model, config, version)   always a float32 model
    model_version(model or state_dict, config) -> "sora-s-<16 hex>"

The version is sha256 over the canonical config JSON and every tensor of the state dict
(name, dtype, shape and raw bytes, in name order), truncated to 16 hex digits and prefixed
with the variant name. Any changed weight, buffer or config field gives a new version; every
stored vector records the version that made it. The version is also kept in the safetensors
metadata, and loading checks that the files still agree with it.

Half-precision storage (`dtype=torch.float16` or `torch.bfloat16`) halves the file; the
loaded model is float32 all the same. The version hashes the tensors *as stored*, so a
half-precision export has a version of its own: its vectors differ (slightly) from the
float32 model's, and an index must not mix the two. Casting is deterministic, so exporting
the same weights twice gives the same version, and re-exporting an export changes nothing.
A tensor is stored in the smaller dtype only if its values survive the cast
(`survives_cast`); the others keep their dtype, decided tensor by tensor:

    integer buffers (BatchNorm's num_batches_tracked)        kept: not floating point
    any value non-finite after the cast (fp16 overflows above 65504), or non-finite before
                                                             kept
    a value that matters (|x| >= 1% of the tensor's largest) loses more than the dtype's
    machine epsilon, relatively: fp16 below 6.1e-5 is subnormal, so a BatchNorm running_var
    of tiny values, or a tensor of tiny weights, would come back visibly changed
                                                             kept
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from sora_encoder.config import SoraConfig
from sora_encoder.factory import create_model

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "sora-encoder/1"
# The dtypes a checkpoint may be stored in (None in save_checkpoint: as the model has them).
STORAGE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Elements smaller than this share of a tensor's largest |value| may lose relative precision
# (fp16 subnormals): in a dot product or a per-channel scale they weigh 100x less than the
# largest, so an absolute error of eps * 1% of the largest is all they are held to.
SIGNIFICANT_SHARE = 1e-2
# safetensors' dtype codes, in torch's words.
_HEADER_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip


def model_version(
    model_or_state: nn.Module | Mapping[str, torch.Tensor], config: SoraConfig
) -> str:
    """`<config.name>-<16 hex>`: a hash of the weights and the canonical config JSON."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    h = hashlib.sha256()
    h.update(config.canonical_json().encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{str(t.dtype).removeprefix('torch.')}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{config.name}-{h.hexdigest()[:16]}"


def survives_cast(t: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether floating tensor `t` can be stored as `dtype` and read back close enough: all
    values finite before and after, and each significant value (|x| >= SIGNIFICANT_SHARE of
    the largest) within dtype's machine epsilon, relatively (the rule in the module doc)."""
    if not t.is_floating_point():
        raise TypeError(f"survives_cast needs a floating tensor, got {t.dtype}")
    x = t.detach().cpu().to(torch.float64)
    back = t.detach().cpu().to(dtype).to(torch.float64)
    if not (torch.isfinite(x).all() and torch.isfinite(back).all()):
        return False
    if x.numel() == 0:
        return True
    floor = SIGNIFICANT_SHARE * x.abs().max()
    scale = torch.maximum(x.abs(), floor)  # 0 only where x is 0, and 0 casts exactly
    err = torch.where(scale > 0, (back - x).abs() / scale.clamp_min(1e-300), 0.0)
    return bool(err.max() <= torch.finfo(dtype).eps)


def storage_state(
    state: Mapping[str, torch.Tensor], dtype: torch.dtype | None
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(the state dict as it will be stored, the floating tensors kept in their own dtype).

    dtype None stores every tensor as it is; otherwise each floating tensor is cast to dtype
    where it `survives_cast`, and integer tensors are left alone.
    """
    if dtype is not None and dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES} or None, got {dtype}")
    out: dict[str, torch.Tensor] = {}
    kept: list[str] = []
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            if survives_cast(t, dtype):
                t = t.to(dtype)
            else:
                kept.append(name)
        out[name] = t
    return out, kept


def save_checkpoint(
    model: nn.Module,
    config: SoraConfig,
    directory: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write `model.safetensors` and `config.json` into `directory` (created); return the version.

    dtype: store floating tensors as this (torch.float16 / bfloat16 halve the file) where
    their values survive, see the module doc; None stores the model's own dtypes. metadata:
    extra strings for the safetensors header (provenance); not part of the version. Each file
    is written to a temporary name and renamed, so a crash leaves no half file.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state, kept = storage_state(model.state_dict(), dtype)
    if kept:
        logger.info("kept %d tensor(s) out of %s: %s", len(kept), dtype, ", ".join(kept))
    version = model_version(state, config)
    meta = {**(metadata or {}), "format": FORMAT, "model_version": version}
    if dtype is not None:
        meta["dtype"] = str(dtype).removeprefix("torch.")
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # safetensors writes 0600; weights are shared like config.json
    os.replace(tmp, out / WEIGHTS_NAME)
    tmp = out / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, out / CONFIG_NAME)
    return version


def weights_path(path: str | os.PathLike) -> Path:
    """The `model.safetensors` of a checkpoint folder (or the file itself)."""
    p = Path(path)
    return p / WEIGHTS_NAME if p.is_dir() else p


def read_header(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """(safetensors metadata, {tensor name: stored dtype, e.g. "float16"}) without loading
    the tensors."""
    with safe_open(str(weights_path(path)), framework="pt") as f:
        codes = {name: f.get_slice(name).get_dtype() for name in f.keys()}
        dtypes = {name: _HEADER_DTYPES.get(code, code) for name, code in codes.items()}
        return dict(f.metadata() or {}), dtypes


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, SoraConfig, str]:
    """(model in eval mode on the CPU, its config, its version) from a folder or its weights file.

    The model is float32 whatever the storage dtype; the version is that of the stored
    tensors. FileNotFoundError if a file is missing; ValueError if a file is not what it should
    be, the weights do not fit the config or no longer match the version recorded when they
    were saved.
    """
    weights = weights_path(path)
    config_file = weights.with_name(CONFIG_NAME)
    for f in (weights, config_file):
        if not f.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {f}")
    config = SoraConfig.from_json(config_file.read_text("utf-8"))
    try:
        with safe_open(str(weights), framework="pt") as f:
            recorded = (f.metadata() or {}).get("model_version")
        state = load_file(str(weights))
    except SafetensorError as e:
        raise ValueError(f"{weights} is not a safetensors file: {e}") from e
    version = model_version(state, config)
    model = create_model(config)
    # Half-precision tensors widen exactly; integer buffers are left alone.
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise ValueError(f"{weights} does not fit config {config.name!r}: {e}") from e
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not fit config {config.name!r}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    if recorded is not None and recorded != version:
        raise ValueError(
            f"{weights}: files hash to {version} but were saved as {recorded} "
            "(weights or config.json changed since)"
        )
    return model.eval(), config, version
