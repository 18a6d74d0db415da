"""Checkpoints: save/load round trip, the model version, half-precision storage."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from sora_encoder.checkpoint import (
    load_checkpoint,
    model_version,
    save_checkpoint,
    storage_state,
    survives_cast,
)
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


# -- half-precision storage ------------------------------------------------------------------


def cosines(a: torch.nn.Module, b: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        za, zb = a.encode_video(frames(4)), b.encode_video(frames(4))  # (4, D) each
    return torch.nn.functional.cosine_similarity(za, zb, dim=-1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_halves_the_file_and_loads_as_float32(tmp_path, trained_ish, dtype):
    fp32_version = save_checkpoint(trained_ish, CFG, tmp_path / "fp32")
    version = save_checkpoint(trained_ish, CFG, tmp_path / "half", dtype=dtype)
    ratio = (tmp_path / "half/model.safetensors").stat().st_size / (
        tmp_path / "fp32/model.safetensors"
    ).stat().st_size
    assert 0.45 < ratio < 0.55, ratio
    model, config, loaded_version = load_checkpoint(tmp_path / "half")
    assert config == CFG and loaded_version == version
    state = model.state_dict()
    assert {v.dtype for v in state.values()} == {torch.float32, torch.int64}
    stored = load_file(str(tmp_path / "half/model.safetensors"))
    for name, t in trained_ish.state_dict().items():
        want = dtype if t.is_floating_point() else torch.int64
        assert stored[name].dtype == want, name  # nothing here needs to stay float32
    assert cosines(model, trained_ish).min() > 0.9999
    assert version != fp32_version, "the stored tensors differ, so does the version"
    assert version == save_checkpoint(trained_ish, CFG, tmp_path / "again", dtype=dtype)
    assert version == save_checkpoint(model, CFG, tmp_path / "re-export", dtype=dtype), (
        "casting a widened half tensor back is exact: re-exporting changes nothing"
    )


def test_tensors_whose_values_do_not_survive_keep_their_dtype(tmp_path, trained_ish):
    bn = trained_ish.frame_cnn.stem.norm
    with torch.no_grad():
        bn.running_var.fill_(3e-7)  # all subnormal in fp16: ~10% relative error
        trained_ish.projection.weight[0, 0] = 1e5  # above fp16's 65504: inf
        trained_ish.fusion.embed.cls.fill_(0.05)
        trained_ish.fusion.embed.cls[..., 0] = 1e-7  # tiny next to 0.05: precision not needed
    state = {k: v.clone() for k, v in trained_ish.state_dict().items()}
    cast, kept = storage_state(state, torch.float16)
    assert sorted(kept) == ["frame_cnn.stem.norm.running_var", "projection.weight"]
    assert cast["fusion.embed.cls"].dtype == torch.float16
    assert cast["frame_cnn.stem.norm.num_batches_tracked"].dtype == torch.int64
    assert not survives_cast(torch.tensor([1.0, float("nan")]), torch.float16)
    assert survives_cast(torch.full((3,), 3e-7), torch.bfloat16), "bf16 has float32's range"

    save_checkpoint(trained_ish, CFG, tmp_path, dtype=torch.float16)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert stored["frame_cnn.stem.norm.running_var"].dtype == torch.float32
    assert stored["projection.weight"].dtype == torch.float32
    assert stored["frame_cnn.stem.norm.weight"].dtype == torch.float16
    model, _, _ = load_checkpoint(tmp_path)
    assert torch.equal(model.frame_cnn.stem.norm.running_var, bn.running_var), "kept exactly"
    assert model.projection.weight[0, 0].item() == 1e5
    with pytest.raises(ValueError, match="dtype"):
        storage_state(state, torch.int8)
