"""Embedders of the evaluation: one interface, shapes and norms, order (in)variance."""

from __future__ import annotations

import numpy as np
import pytest

from sora_encoder.eval.baselines import (
    CnnMeanEmbedder,
    SoraEmbedder,
    TinyImageEmbedder,
    build_embedders,
)
from sora_encoder.eval.data import reverse_time
from sora_encoder.runtime import InputSpec


@pytest.fixture(scope="module")
def embedders():
    return {e.name: e for e in build_embedders(variant="sora-t", precision="fp32")}


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 4, 32, 32, 3), dtype=np.uint8)  # sora-t: T=4, S=32


def test_every_embedder_gives_unit_rows(embedders, clips) -> None:
    for name, e in embedders.items():
        out = e.embed_clips(clips)
        assert out.dtype == np.float32 and out.shape == (3, e.dim), name
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_untrained_shares_the_weights_without_a_checkpoint(embedders) -> None:
    assert embedders["untrained"].key == embedders["sora"].key
    assert embedders["cnn_mean"].key != embedders["sora"].key
    assert isinstance(embedders["sora"], SoraEmbedder)
    assert isinstance(embedders["cnn_mean"], CnnMeanEmbedder)


def test_cnn_only_is_order_invariant_and_sora_is_not(embedders, clips) -> None:
    backwards = reverse_time(clips)
    cnn = embedders["cnn_mean"]
    np.testing.assert_allclose(cnn.embed_clips(backwards), cnn.embed_clips(clips), atol=1e-5)
    rng = np.random.default_rng(1)
    shuffled = np.ascontiguousarray(clips[:, rng.permutation(4)])
    np.testing.assert_allclose(cnn.embed_clips(shuffled), cnn.embed_clips(clips), atol=1e-5)
    sora = embedders["sora"]
    diff = np.abs(sora.embed_clips(backwards) - sora.embed_clips(clips)).max()
    assert diff > 1e-3  # the LSTM and the time embeddings see the order


def test_tiny_image_shape_norm_and_brightness_offset() -> None:
    tiny = TinyImageEmbedder(InputSpec(frames=4, size=32))
    assert tiny.dim == 4 * 8 * 8
    rng = np.random.default_rng(2)
    x = rng.integers(20, 200, size=(2, 4, 32, 32, 3), dtype=np.uint8)
    v = tiny.embed_clips(x)
    assert v.shape == (2, 256)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    # centred: a uniform brightness offset leaves the vector unchanged
    np.testing.assert_allclose(tiny.embed_clips(x + np.uint8(30)), v, atol=1e-5)
    # 8x8 area averages: a 32x32 frame made of 4x4 blocks is reproduced exactly
    blocks = rng.integers(0, 256, size=(1, 4, 8, 8), dtype=np.uint8)
    frame = np.repeat(np.repeat(blocks, 4, axis=2), 4, axis=3)[..., None].repeat(3, axis=-1)
    got = tiny.embed_clips(np.ascontiguousarray(frame))
    want = blocks.reshape(1, -1).astype(np.float64)
    want -= want.mean()
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5)


def test_tiny_image_of_a_flat_clip_is_still_a_unit_vector() -> None:
    tiny = TinyImageEmbedder(InputSpec(frames=2, size=16))
    v = tiny.embed_clips(np.full((1, 2, 16, 16, 3), 128, np.uint8))
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, atol=1e-6)


def test_clips_are_checked_at_the_boundary(embedders, clips) -> None:
    with pytest.raises(TypeError):
        embedders["tiny_image"].embed_clips(clips.astype(np.float32))
    with pytest.raises(ValueError):
        embedders["cnn_mean"].embed_clips(clips[:, :2])  # T=2, the model wants 4
    with pytest.raises(ValueError, match="unknown embedders"):
        build_embedders(["clip"], variant="sora-t")
