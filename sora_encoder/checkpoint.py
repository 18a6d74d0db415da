"""Checkpoints: `model.safetensors` + `config.json` in one folder, named by a model version.

    save_checkpoint(model, config, dir) -> version     writes both files, returns the version
    load_checkpoint(dir or .safetensors) -> (model, config, version)
    model_version(model or state_dict, config) -> "sora-s-<16 hex>"

The version is sha256 over the canonical config JSON and every tensor of the state dict
(name, dtype, shape and raw bytes, in name order), truncated to 16 hex digits and prefixed
with the variant name. Any changed weight, buffer or config field gives a new version; every
stored vector records the version that made it. The version is also kept in the safetensors
metadata, and loading checks that the files still agree with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from sora_encoder.config import SoraConfig
from sora_encoder.factory import create_model

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "sora-encoder/1"


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


def save_checkpoint(model: nn.Module, config: SoraConfig, directory: str | os.PathLike) -> str:
    """Write `model.safetensors` and `config.json` into `directory` (created); return the version.

    Each file is written to a temporary name and renamed, so a crash leaves no half file.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    version = model_version(state, config)
    tmp = out / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT, "model_version": version})
    os.replace(tmp, out / WEIGHTS_NAME)
    tmp = out / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, out / CONFIG_NAME)
    return version


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, SoraConfig, str]:
    """(model in eval mode on the CPU, its config, its version) from a folder or its weights file.

    FileNotFoundError if a file is missing; ValueError if the weights do not fit the config or
    no longer match the version recorded when they were saved.
    """
    p = Path(path)
    weights = p / WEIGHTS_NAME if p.is_dir() else p
    config_file = weights.with_name(CONFIG_NAME)
    for f in (weights, config_file):
        if not f.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {f}")
    config = SoraConfig.from_json(config_file.read_text("utf-8"))
    with safe_open(str(weights), framework="pt") as f:
        recorded = (f.metadata() or {}).get("model_version")
    state = load_file(str(weights))
    model = create_model(config)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape
        raise ValueError(f"{weights} does not fit config {config.name!r}: {e}") from e
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not fit config {config.name!r}: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    version = model_version(state, config)
    if recorded is not None and recorded != version:
        raise ValueError(
            f"{weights}: files hash to {version} but were saved as {recorded} "
            "(weights or config.json changed since)"
        )
    return model.eval(), config, version
