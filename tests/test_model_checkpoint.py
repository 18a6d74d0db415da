"""Checkpoints: save/load round trip and the model version."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from sora_encoder.checkpoint import load_checkpoint, model_version, save_checkpoint
from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config

CFG = get_model_config("sora-t")


def frames(n: int = 2) -> torch.Tensor:
    S = CFG.input.image_size
    return torch.randn(n, CFG.input.num_frames, 3, S, S, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def trained_ish():
    """A sora-t whose BatchNorm statistics have moved, as after training."""
    model = create_model(CFG)
    with torch.no_grad():
        model.train().encode_video(frames(3))
    return model.eval()


def test_round_trip_gives_identical_outputs_and_version(tmp_path, trained_ish):
    version = save_checkpoint(trained_ish, CFG, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    assert re.fullmatch(r"sora-t-[0-9a-f]{16}", version), version
    for path in (tmp_path / "ckpt", tmp_path / "ckpt" / "model.safetensors"):
        model, config, loaded_version = load_checkpoint(path)
        assert config == CFG and loaded_version == version
        assert not model.training
        with torch.no_grad():
            assert torch.equal(model.encode_video(frames()), trained_ish.encode_video(frames()))
    assert version == model_version(trained_ish, CFG)
    assert version != model_version(create_model(CFG), CFG), "BN statistics are part of it"


def test_version_changes_when_one_weight_changes():
    model = create_model(CFG)
    before = model_version(model, CFG)
    with torch.no_grad():
        model.fusion.blocks[1].mlp[0].weight[3, 5] += 1e-6
    assert model_version(model, CFG) != before


def test_version_changes_when_the_config_changes():
    model = create_model(CFG)
    other = dataclasses.replace(CFG, input=dataclasses.replace(CFG.input, mean=(0.5, 0.5, 0.5)))
    assert model_version(model, other) != model_version(model, CFG), "same weights, new config"
    assert model_version(model, CFG) == model_version(create_model(CFG), CFG)


def test_tampered_or_mismatched_checkpoints_raise(tmp_path):
    model = create_model(CFG)
    save_checkpoint(model, CFG, tmp_path)
    config_file = tmp_path / "config.json"
    data = json.loads(config_file.read_text())
    data["input"]["std"] = [0.3, 0.3, 0.3]
    config_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="saved as"):
        load_checkpoint(tmp_path)
    data["fusion"]["dim"] = 128
    config_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nowhere")
