"""The model: shapes over several configs, hand assembly, unit norm, batch independence,
determinism of the seeded initialisation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from sora_encoder.checkpoint import model_version
from sora_encoder.config import FrameCNNConfig, FusionConfig, ProjectionConfig, SoraConfig
from sora_encoder.config import TemporalRNNConfig as RNNConfig
from sora_encoder.factory import create_model
from sora_encoder.model import (
    FrameCNN,
    SoraModel,
    build_frame_cnn,
    build_fusion,
    build_projection,
    build_temporal_rnn,
)
from sora_encoder.registry import get_model_config


def clips(cfg: SoraConfig, n: int, *, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    S = cfg.input.image_size
    return torch.randn(n, cfg.input.num_frames, 3, S, S, generator=g)  # (n, T, 3, S, S)


TINY = get_model_config("sora-t")
ODD = SoraConfig.from_dict(  # 3 stages, 3x3 grid, 2-layer LSTM, odd-sized maps (48 -> 12, 6, 3)
    {
        "name": "odd",
        "input": {"num_frames": 3, "image_size": 48},
        "frame_cnn": {"widths": [32, 32, 64], "depths": [1, 0, 2], "spatial_grid": 3},
        "temporal_rnn": {"hidden": 16, "layers": 2},
        "fusion": {"dim": 32, "depth": 1, "heads": 1, "mlp_ratio": 2.0},
        "projection": {"out_dim": 8},
        "heads": {"genre": 5, "nsfw": 2},
    }
)


@pytest.mark.parametrize("cfg", [TINY, ODD], ids=lambda c: c.name)
def test_shapes_and_unit_norm(cfg):
    model = create_model(cfg).eval()
    with torch.no_grad():
        vec = model.encode_video(clips(cfg, 3))
        raw = model.encode_video(clips(cfg, 3), normalize=False)
        logits = model.classify(vec)
    assert vec.shape == (3, cfg.projection.out_dim) and vec.dtype == torch.float32
    torch.testing.assert_close(vec.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(raw.norm(dim=-1), torch.ones(3)), "normalize=False must not normalise"
    torch.testing.assert_close(torch.nn.functional.normalize(raw, dim=-1), vec)
    assert {k: v.shape for k, v in logits.items()} == {
        name: (3, k) for name, k in cfg.heads.items()
    }


@pytest.mark.parametrize("name", ["sora-s", "sora-b"])
def test_shipped_variants_encode_one_clip(name):
    cfg = get_model_config(name)
    model = create_model(cfg).eval()
    with torch.no_grad():
        vec = model.encode_video(clips(cfg, 1))
    assert vec.shape == (1, cfg.projection.out_dim)
    assert torch.isfinite(vec).all()


def test_hand_assembled_model_from_built_parts():
    """Modules take built submodules: swap in a hand-made FrameCNN stem and stages."""
    stem = nn.Sequential(nn.Conv2d(3, 16, 8, stride=8), nn.GELU())
    stages = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.ReLU())
    cnn = FrameCNN(stem, stages, out_dim=24, grid=1)
    rnn = build_temporal_rnn(cfg=RNNConfig(hidden=8), in_dim=24)
    fusion = build_fusion(
        cfg=FusionConfig(dim=16, depth=1, heads=2), frame_dim=24, temporal_dim=16, max_frames=5,
        cells=1,
    )  # fmt: skip
    model = SoraModel(
        cnn, rnn, fusion, build_projection(cfg=ProjectionConfig(out_dim=12), in_dim=16)
    )
    frames = torch.randn(2, 5, 3, 32, 32)
    vec = model.eval().encode_video(frames)
    assert vec.shape == (2, 12)
    # Fewer frames than the time embedding holds are fine; more are refused.
    assert model.encode_video(frames[:, :3]).shape == (2, 12)
    with pytest.raises(AssertionError, match="max_frames"):
        model.encode_video(torch.randn(2, 6, 3, 32, 32))
    with pytest.raises(AssertionError, match=r"\(B, T, 3, S, S\)"):
        model.encode_video(torch.randn(2, 5, 32, 32, 3))


def test_frame_cnn_builder_widths_and_grid():
    cnn = build_frame_cnn(cfg=FrameCNNConfig(widths=(32, 64, 96), depths=(1, 1, 1), spatial_grid=2))
    spatial, vec = cnn.eval()(torch.randn(5, 3, 64, 64))
    assert spatial.shape == (5, 4, 96) and vec.shape == (5, 96)
    assert cnn.forward_map(torch.randn(1, 3, 64, 64)).shape == (1, 96, 4, 4)  # 64/4/2/2


def test_a_clip_vector_does_not_depend_on_the_rest_of_the_batch():
    model = create_model(TINY).eval()
    x = clips(TINY, 4)
    x[1] = 0.0  # very different neighbours: a flat grey clip and a bright one
    x[2] = 3.0
    with torch.no_grad():
        together = model.encode_video(x)
        alone = torch.cat([model.encode_video(x[i : i + 1]) for i in range(4)])
        shuffled = model.encode_video(x[[3, 0, 2, 1]])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled, together[[3, 0, 2, 1]], atol=1e-5, rtol=0)
    assert (together[0] - together[1]).abs().max() > 1e-3, "distinct clips, distinct vectors"


def test_frames_of_a_clip_are_not_mixed_across_clips():
    """Changing clip 0 must leave clip 1's vector alone (a wrong reshape would mix them)."""
    model = create_model(TINY).eval()
    x = clips(TINY, 2)
    y = x.clone()
    y[0, -1] += 1.0  # only the last frame of clip 0
    with torch.no_grad():
        a, b = model.encode_video(x), model.encode_video(y)
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=0)
    assert (a[0] - b[0]).abs().max() > 1e-4


def test_same_seed_same_model_and_outputs():
    a, b = create_model("sora-t"), create_model("sora-t")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    x = clips(TINY, 2)
    with torch.no_grad():
        assert torch.equal(a.eval().encode_video(x), b.eval().encode_video(x))
        assert torch.equal(a.encode_video(x), a.encode_video(x)), "two runs, same output"


def test_other_seed_other_weights_and_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    c = create_model("sora-t", init_seed=1)
    assert torch.equal(torch.rand(3), expected), "create_model must not consume the global RNG"
    a = create_model("sora-t")
    assert not torch.equal(a.projection.weight, c.projection.weight)
    d = create_model(SoraConfig.from_dict({"init_seed": 1}, base=TINY))
    assert torch.equal(c.projection.weight, d.projection.weight), "argument == config seed"


def test_untrained_model_is_the_same_in_another_process():
    code = (
        "from sora_encoder.factory import create_model;"
        "from sora_encoder.checkpoint import model_version;"
        "from sora_encoder.registry import get_model_config as g;"
        "print(model_version(create_model('sora-t'), g('sora-t')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == model_version(create_model("sora-t"), TINY)
