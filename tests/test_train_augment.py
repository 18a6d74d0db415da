"""View augmentations: shapes, dtype, range, determinism under a seeded generator, that each
one changes a clip when applied and leaves it alone when its coin says no."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sora_encoder.registry import get_model_config
from sora_encoder.train import augment as A
from sora_encoder.train.config import AugmentConfig

B, T, H = 3, 4, 24


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Smooth random float clips (B, T, 3, H, H) in [0, 1], with structure to move around."""
    g = gen(42)
    coarse = torch.rand(B * T, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(H, H), mode="bilinear")
    return (x + 0.1 * torch.rand(B * T, 3, H, H, generator=g)).clamp(0, 1).view(B, T, 3, H, H)


# Each per-clip op with the keyword arguments that make it always fire.
ALWAYS = {
    "hflip": (A.hflip, {"p": 1.0}),
    "color_jitter": (A.color_jitter, {"p": 1.0}),
    "grayscale": (A.grayscale, {"p": 1.0}),
    "letterbox": (A.letterbox, {"p": 1.0}),
    "overlay": (A.overlay, {"p": 1.0}),
    "gaussian_blur": (A.gaussian_blur, {"p": 1.0, "sigma": (1.0, 2.0)}),
    "gaussian_noise": (A.gaussian_noise, {"p": 1.0}),
    "compress": (A.compress, {"p": 1.0}),
}


@pytest.mark.parametrize("name", sorted(ALWAYS))
def test_op_keeps_shape_dtype_range_and_changes_every_clip(name, clips):
    fn, kw = ALWAYS[name]
    out = fn(clips, generator=gen(), **kw)
    assert out.shape == clips.shape and out.dtype == clips.dtype
    assert out.min() >= 0 and out.max() <= 1
    changed = (out - clips).abs().flatten(1).amax(1)  # (B,) largest change per clip
    assert (changed > 1e-3).all(), f"{name} left a clip unchanged: {changed}"


@pytest.mark.parametrize("name", sorted(ALWAYS))
def test_op_is_deterministic_under_a_seeded_generator(name, clips):
    fn, kw = ALWAYS[name]
    a = fn(clips, generator=gen(7), **kw)
    b = fn(clips, generator=gen(7), **kw)
    assert torch.equal(a, b)
    if name not in ("hflip", "grayscale"):  # these have no parameter besides the coin
        assert not torch.equal(a, fn(clips, generator=gen(8), **kw))


@pytest.mark.parametrize("name", sorted(ALWAYS))
def test_op_with_p_zero_is_the_identity(name, clips):
    fn, kw = ALWAYS[name]
    out = fn(clips, generator=gen(), **{**kw, "p": 0.0})
    assert torch.equal(out, clips)


def test_hflip_mirrors_and_grayscale_is_grey(clips):
    assert torch.equal(A.hflip(clips, generator=gen(), p=1.0), clips.flip(-1))
    grey = A.grayscale(clips, generator=gen(), p=1.0)
    assert torch.equal(grey[:, :, 0], grey[:, :, 1]) and torch.equal(grey[:, :, 1], grey[:, :, 2])


def test_color_jitter_with_zero_strength_is_the_identity(clips):
    out = A.color_jitter(
        clips, generator=gen(), p=1.0, brightness=0, contrast=0, saturation=0, hue=0
    )
    torch.testing.assert_close(out, clips, atol=1e-5, rtol=0)


def test_letterbox_bars_are_dark_and_cover_two_opposite_sides(clips):
    out = A.letterbox(torch.ones_like(clips), generator=gen(), p=1.0, max_frac=0.25)
    for clip in out:  # each clip: bars top and bottom, or left and right
        rows, cols = clip[0, 0].mean(1), clip[0, 0].mean(0)  # (H,), (W,)
        top_bottom = rows[0] < 0.2 and rows[-1] < 0.2 and cols[H // 2] > 0.2
        left_right = cols[0] < 0.2 and cols[-1] < 0.2 and rows[H // 2] > 0.2
        assert top_bottom != left_right


def test_overlay_is_static_over_the_frames_of_a_clip():
    flat = torch.full((4, T, 3, H, H), 0.5)
    out = A.overlay(flat, generator=gen(3), p=1.0)
    assert torch.equal(out, out[:, :1].expand_as(out))  # the same picture on every frame


def test_compress_at_a_tiny_step_and_full_scale_is_nearly_lossless(clips):
    out = A.compress(clips, generator=gen(), p=1.0, scale=(1.0, 1.0), q=(1e-6, 1e-6))
    torch.testing.assert_close(out, clips, atol=1e-4, rtol=0)
    coarse = A.compress(clips, generator=gen(), p=1.0, scale=(1.0, 1.0), q=(0.2, 0.2))
    assert (coarse - clips).abs().mean() > 0.01  # blocks: coarse steps lose detail


def test_temporal_resample_picks_evenly_spaced_frames_within_the_window():
    F_ = 16
    frames = torch.arange(F_).repeat(8, 1)  # (8, F): frame k holds k
    fixed = A.temporal_resample(frames, 4, generator=gen(), speed=(1.0, 1.0))
    steps = fixed.diff(dim=1)
    assert torch.equal(steps, torch.ones_like(steps))  # consecutive frames, random offsets
    assert len(set(fixed[:, 0].tolist())) > 1
    fast = A.temporal_resample(frames, 4, generator=gen(), speed=(2.0, 2.0))
    assert torch.equal(fast.diff(dim=1), torch.full_like(steps, 2))
    slow = A.temporal_resample(frames, 4, generator=gen(), speed=(0.5, 0.5))
    assert set(slow.diff(dim=1).flatten().tolist()) <= {0, 1}  # frames repeat
    too_fast = A.temporal_resample(frames, 4, generator=gen(), speed=(9.0, 9.0))
    assert torch.equal(too_fast, torch.tensor([0, 5, 10, 15]).repeat(8, 1))  # clamped to fit


def test_random_resized_crop_of_the_whole_frame_resamples_it(clips):
    same = A.random_resized_crop(clips, H, generator=gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same, clips, atol=1e-5, rtol=0)
    small = A.random_resized_crop(clips, 16, generator=gen(), scale=(0.2, 0.3))
    assert small.shape == (B, T, 3, 16, 16)
    assert small.min() >= 0 and small.max() <= 1


def test_make_views_gives_two_normalised_views_of_each_window():
    inp = get_model_config("sora-t").input  # 4 frames of 32 px
    window = torch.randint(0, 256, (B, 8, 40, 40, 3), dtype=torch.uint8, generator=gen())
    aug = AugmentConfig()
    views = A.make_views(window, inp=inp, aug=aug, generator=gen(1))
    assert views.shape == (2 * B, inp.num_frames, 3, 32, 32) and views.dtype == torch.float32
    lo = (0 - inp.mean[0]) / inp.std[0]
    hi = (1 - inp.mean[0]) / inp.std[0]
    assert views.min() >= lo - 1e-4 and views.max() <= hi + 1e-4
    assert not torch.equal(views[:B], views[B:])  # two different views
    assert torch.equal(views, A.make_views(window, inp=inp, aug=aug, generator=gen(1)))
    # With every augmentation off, a view is the window's frames resized: values on 1/255.
    off = dataclasses.replace(
        aug, jitter_p=0, grayscale_p=0, letterbox_p=0, overlay_p=0, blur_p=0, noise_p=0,
        compress_p=0, flip_p=0,
    )  # fmt: skip
    plain = A.make_view(window, num_frames=4, size=32, aug=off, generator=gen())
    torch.testing.assert_close(plain * 255, (plain * 255).round(), atol=1e-4, rtol=0)
