"""Config dataclasses, JSON overrides and the variant registry."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sora_encoder.config import FusionConfig, SoraConfig
from sora_encoder.registry import get_model_config, list_models


def test_registry_lists_the_shipped_variants():
    assert {"sora-t", "sora-s", "sora-b"} <= set(list_models())
    assert list_models() == sorted(list_models())


def test_defaults_are_sora_s():
    assert get_model_config("sora-s") == SoraConfig()


def test_sora_b_is_larger_than_sora_s():
    s, b = get_model_config("sora-s"), get_model_config("sora-b")
    assert b.name == "sora-b"
    assert b.input.image_size > s.input.image_size
    assert b.projection.out_dim > s.projection.out_dim
    assert b.fusion.depth > s.fusion.depth
    assert len(b.frame_cnn.widths) > len(s.frame_cnn.widths)
    assert isinstance(b.frame_cnn.widths, tuple), "JSON lists must come back as tuples"


def test_unknown_variant_raises_with_the_known_names():
    with pytest.raises(ValueError, match="sora-s"):
        get_model_config("sora-xxl")


def test_json_round_trip_is_lossless():
    cfg = dataclasses.replace(get_model_config("sora-b"), heads={"genre": 12}, init_seed=7)
    again = SoraConfig.from_json(json.dumps(cfg.to_dict()))
    assert again == cfg
    assert again.canonical_json() == cfg.canonical_json()


def test_overrides_touch_only_their_fields():
    cfg = SoraConfig.from_dict({"fusion": {"depth": 2}, "input": {"image_size": 64}})
    assert cfg.fusion == dataclasses.replace(FusionConfig(), depth=2)
    assert cfg.input.image_size == 64
    assert cfg.frame_cnn == SoraConfig().frame_cnn


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fusion": {"nope": 1}}, "unknown field 'nope'"),
        ({"colour": 1}, "unknown field 'colour'"),
        ({"fusion": {"dim": 100, "heads": 3}}, "must divide"),
        ({"input": {"image_size": 110}}, "multiple of stem_patch"),
        ({"frame_cnn": {"widths": [32, 64], "depths": [1]}}, "must pair up"),
        ({"heads": {"genre": 1}}, ">= 2 classes"),
        ({"fusion": 3}, "expected a JSON object"),
    ],
)
def test_bad_configs_raise_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        SoraConfig.from_dict(overrides)
