"""View augmentations for contrastive training: batched torch ops, on the CPU or a GPU.

    window frames uint8 (B, F, Hc, Wc, 3)      F = 2T cached frames, Hc = Wc = 128 for 112 px
      -> temporal_resample   T frames at a random speed and offset    uint8 (B, T, Hc, Wc, 3)
      -> to_float            [0, 1], channels first                   (B, T, 3, Hc, Wc)
      -> random_resized_crop one box per clip, resized to S           (B, T, 3, S, S)
      -> hflip, color_jitter, grayscale, letterbox, picture_in_picture, overlay,
         gaussian_blur, gaussian_noise,
         compress (down-up scaling + 8x8 DCT quantisation), quantize_8bit
      = one view, float (B, T, 3, S, S) in [0, 1]; `normalize` applies the model's mean/std

Every function draws its random numbers from the `generator` it is given, on that
generator's device, one parameter set per clip (the same for all frames of a clip, as an
edit of a video would be); nothing depends on the global RNG, so a seeded generator gives
the same view on any run. Clips that a `p` coin leaves alone come out unchanged. The
costly ops (letterbox, picture_in_picture, blur, noise, compress) run on the picked clips
only, which costs one host sync each on a GPU; the rest are branch-free over the batch.

Compression is approximated on tensors rather than by re-encoding while caching: a
re-encode would give both views of a window the same artefacts (and cost an encoder run
per video); here each view draws its own, on the device.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sora_encoder.config import InputConfig
from sora_encoder.train.config import AugmentConfig

# Rec. 601 luma weights: greyscale, contrast means and YCbCr.
_LUMA = (0.299, 0.587, 0.114)


# -- random draws ---------------------------------------------------------------------------------
def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    """(n,) float32 uniform in [lo, hi) on the generator's device."""
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def _log_uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.exp(_uniform(g, n, math.log(lo), math.log(hi)))


def _coin(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    """(n,) bool, each True with probability p."""
    return torch.rand(n, generator=g, device=g.device) < p


def _check(x: torch.Tensor, g: torch.Generator) -> tuple[int, int, int, int, int]:
    assert x.ndim == 5 and x.shape[2] == 3, f"want clips (B, T, 3, H, W), got {tuple(x.shape)}"
    assert x.is_floating_point(), f"want float clips in [0, 1], got {x.dtype}"
    assert x.device.type == g.device.type, f"clips on {x.device}, generator on {g.device}"
    return tuple(x.shape)  # type: ignore[return-value]


def _per_clip(v: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1, 1), to broadcast over (B, T, C, H, W)."""
    return v.view(-1, 1, 1, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, T, 1, H, W)."""
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    return (x * w).sum(2, keepdim=True)


# -- temporal -------------------------------------------------------------------------------------
def temporal_resample(
    frames: torch.Tensor,
    num_frames: int,
    *,
    generator: torch.Generator,
    speed: tuple[float, float] = (0.5, 2.0),
) -> torch.Tensor:
    """(B, F, ...) -> (B, T, ...): T frames `s` apart from a random start, s log-uniform in
    `speed` (clamped so that the T frames fit in F). Works on any dtype (uint8 is cheapest).

    The offset is the temporal jitter, the speed the frame-rate change: below 1 frames repeat
    (slow motion, a low frame rate), above 1 they are skipped (fast forward).
    """
    assert frames.ndim >= 2, f"want (B, F, ...), got {tuple(frames.shape)}"
    B, F_ = frames.shape[:2]
    T = num_frames
    assert 1 <= T, f"num_frames must be >= 1, got {T}"
    assert 0 < speed[0] <= speed[1], f"speed range must be positive and ordered, got {speed}"
    fit = (F_ - 1) / (T - 1) if T > 1 else 1.0
    lo, hi = min(speed[0], fit), min(speed[1], fit)
    s = _log_uniform(generator, B, lo, hi)  # (B,) frames per step
    span = s * (T - 1)  # (B,) frames covered
    room = (F_ - 1 - span).clamp(min=0)  # (B,) frames left for the offset
    start = torch.rand(B, generator=generator, device=generator.device) * room
    steps = torch.arange(T, device=s.device, dtype=s.dtype)
    idx = (start[:, None] + s[:, None] * steps).round().long().clamp(0, F_ - 1)  # (B, T)
    rows = torch.arange(B, device=s.device)[:, None]  # (B, 1)
    return frames[rows.to(frames.device), idx.to(frames.device)]  # (B, T, ...)


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float32 (B, T, 3, H, W) in [0, 1]."""
    assert frames.dtype == torch.uint8 and frames.ndim == 5 and frames.shape[-1] == 3, (
        f"want uint8 (B, T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
    )
    return frames.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, T, 3, H, W)


# -- geometry -------------------------------------------------------------------------------------
def _theta(sx: torch.Tensor, sy: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """(n,) scales and shifts -> (n, 2, 3) affine maps from output to input coordinates,
    both in [-1, 1] (F.affine_grid's convention): in = s * out + t."""
    zero = torch.zeros_like(sx)
    return torch.stack([torch.stack([sx, zero, tx], -1), torch.stack([zero, sy, ty], -1)], 1)


def _warp_over(
    sub: torch.Tensor, theta: torch.Tensor, background: torch.Tensor, *, padding_mode: str
) -> torch.Tensor:
    """Each clip of sub (b, T, C, H, W) resampled through its `theta` (b, 2, 3), with
    `background` (broadcast to sub) wherever the output falls outside the input frame."""
    b, T, C, H, W = sub.shape
    grid = F.affine_grid(theta.to(sub.dtype), [b, 1, H, W], align_corners=False)  # (b,H,W,2)
    out = F.grid_sample(
        sub.reshape(b, T * C, H, W), grid, padding_mode=padding_mode, align_corners=False
    )  # (b, T*C, H, W)
    outside = (grid.abs() > 1.0).any(-1)[:, None, None]  # (b, 1, 1, H, W)
    return torch.where(outside, background, out.view(b, T, C, H, W))


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    *,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, T, 3, size, size): a box of `scale` x the area and aspect
    `ratio` (log-uniform), anywhere inside the frame, resized bilinearly; one box per clip."""
    B, T, C, H, W = _check(x, generator)
    area = _uniform(generator, B, *scale)
    r = _log_uniform(generator, B, *ratio)
    w = torch.sqrt(area * r).clamp(max=1.0)  # (B,) box width as a fraction of W
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * torch.rand(B, generator=generator, device=generator.device) - 1) * (1 - w)
    cy = (2 * torch.rand(B, generator=generator, device=generator.device) - 1) * (1 - h)
    theta = _theta(w, h, cx, cy)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), [B, 1, size, size], align_corners=False)  # (B,S,S,2)
    out = F.grid_sample(
        x.reshape(B, T * C, H, W), grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # (B, T*C, S, S)
    return out.view(B, T, C, size, size)


def hflip(x: torch.Tensor, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror left-right the clips a p-coin picks."""
    B = _check(x, generator)[0]
    return torch.where(_per_clip(_coin(generator, B, p)), x.flip(-1), x)


def letterbox(
    x: torch.Tensor, *, generator: torch.Generator, p: float = 0.2, max_frac: float = 0.2
) -> torch.Tensor:
    """Squeeze the picture between two dark bars (top/bottom or left/right, half each), each
    bar 3 %..max_frac of the side, as a re-upload into another aspect ratio does."""
    B = _check(x, generator)[0]
    g = generator
    apply = _coin(g, B, p)
    bar = _uniform(g, B, min(0.03, max_frac), max_frac)  # (B,) fraction of the side
    vertical = _coin(g, B, 0.5)  # bars left and right (pillarbox)
    fill = _uniform(g, B, 0.0, 0.1)  # near-black bars

    def bars(idx: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        squeeze = 1.0 / (1.0 - 2.0 * bar[idx])  # (b,) input coords per output coord
        one, zero = torch.ones_like(squeeze), torch.zeros_like(squeeze)
        sx = torch.where(vertical[idx], squeeze, one)
        sy = torch.where(vertical[idx], one, squeeze)
        fill_ = _per_clip(fill[idx]).to(sub.dtype)
        return _warp_over(sub, _theta(sx, sy, zero, zero), fill_, padding_mode="zeros")

    return _on_picked(x, apply, bars)


def picture_in_picture(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    p: float = 0.2,
    scale: tuple[float, float] = (0.4, 0.9),
) -> torch.Tensor:
    """Shrink each picked clip to `scale` of its side (the same factor for width and height)
    and paste it at a random place over a background: half the time a solid random colour
    (a coloured border when the scale is large), half the time the clip before it in the
    batch (a picture-in-picture edit or split screen, with moving content around the copy),
    as it was before any clip was changed. With p 0
    nothing is drawn from the generator, so turning it off gives the views of the runs made
    before it existed."""
    B = _check(x, generator)[0]
    if p <= 0:
        return x
    g = generator
    apply = _coin(g, B, p)
    s = _uniform(g, B, *scale)  # (B,) side of the pasted picture, fraction of the frame
    cx = (2 * torch.rand(B, generator=g, device=g.device) - 1) * (1 - s)  # its centre, [-1, 1]
    cy = (2 * torch.rand(B, generator=g, device=g.device) - 1) * (1 - s)
    solid = _coin(g, B, 0.5)
    colour = torch.rand(B, 3, generator=g, device=g.device)
    others = x.roll(1, 0)  # drawn before any clip is changed

    def paste(idx: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        b, T, C, H, W = sub.shape
        # Output coordinates -> picture coordinates: (out - centre) / scale.
        inv = 1.0 / s[idx]
        theta = _theta(inv, inv, -cx[idx] * inv, -cy[idx] * inv)  # (b, 2, 3)
        back = torch.where(
            solid[idx].view(b, 1, 1, 1, 1),
            colour[idx].to(sub.dtype).view(b, 1, 3, 1, 1).expand(b, T, C, H, W),
            others.index_select(0, idx),
        )
        # Border padding: the picture's outer ring samples its own edge, not a black frame.
        return _warp_over(sub, theta, back, padding_mode="border")

    return _on_picked(x, apply, paste)


def _on_picked(
    x: torch.Tensor,
    apply: torch.Tensor,
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """x with the clips `apply` picks replaced by fn(their indices, those clips).

    Work is spent on the picked clips only; finding them costs one host sync (nothing on a
    CPU, a short wait on a GPU)."""
    idx = apply.nonzero().squeeze(1)  # (b,)
    if idx.numel() == 0:
        return x
    return x.index_copy(0, idx, fn(idx, x.index_select(0, idx)))


# -- colour ---------------------------------------------------------------------------------------
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@functools.cache
def _yiq_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """RGB -> YIQ and its inverse, float64 on the CPU (inverted once, not per call)."""
    yiq = torch.tensor(_YIQ, dtype=torch.float64)
    return yiq, torch.linalg.inv(yiq)


def color_jitter(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    p: float = 0.8,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
) -> torch.Tensor:
    """Brightness (scale), contrast (towards the clip's mean grey), saturation (towards each
    pixel's grey) and hue (a turn of the YIQ chroma plane), in that order.

    All four are linear in RGB, so they are composed into one 3x3 matrix and offset per clip
    and applied in one pass, then clamped to [0, 1] (torchvision clamps after each step
    too; the difference only shows on clipped highlights)."""
    B = _check(x, generator)[0]
    g = generator
    apply = _coin(g, B, p).to(x.dtype)

    def factor(amount: float) -> torch.Tensor:  # (B,), 1 where the coin said no
        f = _uniform(g, B, max(0.0, 1 - amount), 1 + amount).to(x.dtype)
        return 1 + (f - 1) * apply

    b, c, s = factor(brightness), factor(contrast), factor(saturation)
    angle = (_uniform(g, B, -hue, hue) * (2 * math.pi)).to(x.dtype) * apply  # (B,)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)
    grey = torch.ones(3, 1, dtype=x.dtype, device=x.device) @ luma[None]  # (3, 3): rgb -> yyy
    yiq, yiq_inv = (t.to(device=x.device, dtype=x.dtype) for t in _yiq_pair())
    rot = torch.zeros(B, 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rot[:, 2, 1], rot[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    hue_m = yiq_inv @ rot @ yiq  # (B, 3, 3)
    sat_m = s[:, None, None] * eye + (1 - s)[:, None, None] * grey  # (B, 3, 3)
    m = hue_m @ sat_m * (c * b)[:, None, None]  # (B, 3, 3)
    # Contrast pulls towards the clip's mean grey (after brightness); saturation and hue
    # leave a grey level unchanged, so that pull is the whole offset.

    def jitter(idx: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        mean = _luma(sub).mean(dim=(1, 2, 3, 4))  # (b,)
        offset = (1 - c[idx]) * b[idx] * mean  # (b,)
        y = torch.einsum("bij,btjhw->btihw", m[idx], sub)  # (b, T, 3, H, W)
        return (y + _per_clip(offset)).clamp_(0, 1)

    return _on_picked(x, apply > 0, jitter)


def grayscale(x: torch.Tensor, *, generator: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace the clips a p-coin picks by their luma, on all three channels."""
    B = _check(x, generator)[0]
    return torch.where(_per_clip(_coin(generator, B, p)), _luma(x).expand_as(x), x)


# -- overlays -------------------------------------------------------------------------------------
_TEXT_ROWS, _TEXT_COLS = 10, 48  # a bit grid: 2 lines of 5 rows, 12 glyphs of 4 columns


def overlay(x: torch.Tensor, *, generator: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """A static rectangle over each picked clip: half the time a solid box of a random colour
    and opacity (a logo, a sticker), half the time a text-like block (random glyph-sized bit
    patterns in two lines over a darkened box: a caption or a timestamp)."""
    B, T, C, H, W = _check(x, generator)
    g, dev = generator, generator.device
    apply = _coin(g, B, p)
    text = _coin(g, B, 0.5)
    w, h = _uniform(g, B, 0.15, 0.6), _uniform(g, B, 0.08, 0.3)  # box, fractions of the side
    x0 = torch.rand(B, generator=g, device=dev) * (1 - w)
    y0 = torch.rand(B, generator=g, device=dev) * (1 - h)
    colour = torch.rand(B, 3, generator=g, device=dev)  # (B, 3)
    alpha = _uniform(g, B, 0.5, 1.0)
    bits = torch.rand(B, _TEXT_ROWS, _TEXT_COLS, generator=g, device=dev) < 0.5
    bits[:, 4::5, :] = False  # the gap between the two lines
    bits[:, :, 3::4] = False  # the gap between glyphs
    # Pixel centres in [0, 1], then in box coordinates.
    u = ((torch.arange(W, device=dev) + 0.5) / W - x0[:, None]) / w[:, None]  # (B, W)
    v = ((torch.arange(H, device=dev) + 0.5) / H - y0[:, None]) / h[:, None]  # (B, H)
    inside = ((v >= 0) & (v < 1))[:, :, None] & ((u >= 0) & (u < 1))[:, None, :]  # (B, H, W)
    inside &= apply[:, None, None]
    row = (v * _TEXT_ROWS).floor().clamp(0, _TEXT_ROWS - 1).long()  # (B, H)
    col = (u * _TEXT_COLS).floor().clamp(0, _TEXT_COLS - 1).long()  # (B, W)
    cell = row[:, :, None] * _TEXT_COLS + col[:, None, :]  # (B, H, W)
    glyph = torch.gather(bits.flatten(1), 1, cell.flatten(1)).view(B, H, W)  # (B, H, W)
    # One blend for both kinds: out = x * keep + paint * cover, maps of (B, H, W).
    # box: keep 1 - alpha, cover alpha; caption: keep 0.4 (darkened), glyphs keep 0, cover 1.
    a = alpha[:, None, None]
    keep = torch.where(text[:, None, None], torch.where(glyph, 0.0, 0.4), 1 - a)
    cover = torch.where(text[:, None, None], glyph.to(a.dtype), a)
    keep = torch.where(inside, keep, 1.0).to(x.dtype)[:, None, None]  # (B, 1, 1, H, W)
    cover = torch.where(inside, cover, 0.0).to(x.dtype)[:, None, None]
    paint = torch.where(text[:, None], colour.clamp(min=0.6), colour).to(x.dtype)  # (B, 3)
    return x * keep + paint.view(B, 1, 3, 1, 1) * cover


# -- degradations ---------------------------------------------------------------------------------
def gaussian_blur(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    p: float = 0.3,
    sigma: tuple[float, float] = (0.1, 2.0),
) -> torch.Tensor:
    """Separable Gaussian blur, sigma (pixels) uniform in `sigma`; reflect-padded."""
    B, T, C, H, W = _check(x, generator)
    apply = _coin(generator, B, p)
    sig = _uniform(generator, B, *sigma).clamp(min=1e-3).to(x.dtype)  # (B,)
    radius = max(1, min(math.ceil(3 * sigma[1]), min(H, W) - 1))
    d = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)  # (K,)

    def blur(idx: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        k = torch.exp(-(d[None] ** 2) / (2 * sig[idx, None] ** 2))  # (b, K)
        k = k / k.sum(1, keepdim=True)
        n = len(idx) * T * C
        weights = k.repeat_interleave(T * C, 0)  # (b*T*C, K): one kernel per channel plane
        y = sub.reshape(1, n, H, W)
        y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), weights.view(n, 1, 1, -1),
                     groups=n)  # fmt: skip
        y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), weights.view(n, 1, -1, 1),
                     groups=n)  # fmt: skip
        return y.view_as(sub)

    return _on_picked(x, apply, blur)


def gaussian_noise(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    p: float = 0.3,
    std: tuple[float, float] = (0.01, 0.05),
) -> torch.Tensor:
    """Add per-pixel Gaussian noise of a per-clip standard deviation; clamped to [0, 1]."""
    B = _check(x, generator)[0]
    apply = _coin(generator, B, p)
    s = _uniform(generator, B, *std).to(x.dtype)  # (B,)

    def noise(idx: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        n = torch.randn(sub.shape, generator=generator, device=generator.device, dtype=x.dtype)
        return (sub + _per_clip(s[idx]) * n).clamp_(0, 1)

    return _on_picked(x, apply, noise)


_SCALES = (0.4, 0.5, 0.6, 0.75)  # down-up scale factors, one pass each (see compress)
# Rec. 601 full-range RGB -> YCbCr (offsets dropped: the DCT of a constant is the DC term).
_YCC = ((0.299, 0.587, 0.114), (-0.1687, -0.3313, 0.5), (0.5, -0.4187, -0.0813))


def _dct_matrix(n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (n, n): coefficients = D @ block @ D.T."""
    i = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n)) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d.to(device=device, dtype=dtype)


@functools.cache
def _block_codec_cpu() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = _dct_matrix(8, torch.device("cpu"), torch.float64)
    dct2 = torch.kron(d, d)  # (64, 64): vec(D X D^T) = (D kron D) vec(X), row-major
    fwd = torch.kron(torch.tensor(_YCC, dtype=torch.float64), dct2)  # (192, 192)
    f = torch.arange(8, dtype=torch.float64)
    w = (1 + (f[:, None] + f[None, :]) / 2).flatten()  # (64,)
    return fwd, torch.linalg.inv(fwd), torch.cat([w, 2 * w, 2 * w])


def _block_codec(
    device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fwd, inv, weight): fwd (192, 192) maps an 8x8 RGB block, flattened (c, i, j), to
    YCbCr DCT coefficients (colour transform x orthonormal DCT), inv undoes it; weight
    (192,) is each coefficient's relative quantisation step: 1 + (u + v) / 2, chroma twice
    as coarse."""
    return tuple(t.to(device=device, dtype=dtype) for t in _block_codec_cpu())  # type: ignore[return-value]


def compress(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    p: float = 0.4,
    scale: tuple[float, float] = (0.4, 1.0),
    q: tuple[float, float] = (0.01, 0.08),
) -> torch.Tensor:
    """Approximate lossy-codec artefacts: down-up scaling, then 8x8 block-DCT quantisation.

    1. Down-up: a per-clip draw from `scale` picks the smallest of the factors (0.4, 0.5,
       0.6, 0.75) inside `scale` at or above it; the clip is shrunk by it (area) and
       enlarged back (bilinear), as a low-resolution encode played full screen. A draw
       above every such factor keeps the size.
    2. JPEG/intra-frame style: each 8x8 block goes to YCbCr DCT coefficients (one 192x192
       matrix product), which are rounded to steps of q * (1 + (u + v) / 2) (chroma twice
       as coarse), q per clip uniform in `q` on the [0, 1] scale, and back: blocking,
       ringing, colour bleeding. The frame is edge-padded to a multiple of 8.
    """
    B, T, C, H, W = _check(x, generator)
    g = generator
    apply = _coin(g, B, p)
    factor = _uniform(g, B, *scale)
    qstep = _uniform(g, B, *q).to(x.dtype)
    chosen = torch.full((B,), -1, dtype=torch.long, device=x.device)
    for k, f in reversed(list(enumerate(_SCALES))):  # the smallest factor >= draw wins
        if scale[0] <= f <= scale[1]:
            chosen = torch.where(factor <= f, torch.full_like(chosen, k), chosen)

    def codec(idx: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:
        b = len(idx)
        for k, f in enumerate(_SCALES):  # 1. down-up scaling, on the clips that drew f

            def down_up(_: torch.Tensor, clips: torch.Tensor, f: float = f) -> torch.Tensor:
                flat = clips.reshape(-1, C, H, W)  # (b'*T, C, H, W)
                small = F.interpolate(flat, scale_factor=f, mode="area")
                back = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
                return back.view_as(clips)

            sub = _on_picked(sub, chosen[idx] == k, down_up)
        # 2. block DCT quantisation: (b, T, 3, H, W) -> blocks (b, T, by, bx, 3*8*8)
        ph, pw = (-H) % 8, (-W) % 8
        y = sub.reshape(b * T, C, H, W)
        if ph or pw:
            y = F.pad(y, (0, pw, 0, ph), mode="replicate")
        by, bx = (H + ph) // 8, (W + pw) // 8
        blocks = y.view(b, T, C, by, 8, bx, 8).permute(0, 1, 3, 5, 2, 4, 6)  # (b,T,by,bx,C,8,8)
        blocks = blocks.reshape(b, T * by * bx, C * 64)  # (b, N, 192)
        fwd, inv, weight = _block_codec(x.device, x.dtype)
        coef = blocks @ fwd.T  # (b, N, 192)
        step = qstep[idx, None, None] * weight  # (b, 1, 192)
        coef = torch.round(coef / step) * step
        blocks = coef @ inv.T  # (b, N, 192)
        y = blocks.view(b, T, by, bx, C, 8, 8).permute(0, 1, 4, 2, 5, 3, 6)  # (b,T,C,by,8,bx,8)
        y = y.reshape(b, T, C, H + ph, W + pw)[..., :H, :W]
        return y.clamp(0, 1)

    return _on_picked(x, apply, codec)


def quantize_8bit(x: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels a decoded video has; the model never sees finer values."""
    return torch.round(x.clamp(0, 1) * 255.0) / 255.0


def normalize(x: torch.Tensor, inp: InputConfig) -> torch.Tensor:
    """[0, 1] clips (B, T, 3, H, W) -> the model's input: minus mean, over std, per channel."""
    mean = torch.tensor(inp.mean, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(inp.std, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)
    return (x - mean) / std


# -- the pipeline ---------------------------------------------------------------------------------
def make_view(
    window: torch.Tensor,
    *,
    num_frames: int,
    size: int,
    aug: AugmentConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """uint8 window frames (B, F, Hc, Wc, 3) -> one augmented view, float (B, T, 3, S, S) in
    [0, 1] (see the module docstring for the order)."""
    g = generator
    clip = temporal_resample(window, num_frames, generator=g, speed=aug.speed)  # (B,T,Hc,Wc,3)
    x = to_float(clip)  # (B, T, 3, Hc, Wc)
    x = random_resized_crop(x, size, generator=g, scale=aug.crop_scale, ratio=aug.crop_ratio)
    x = hflip(x, generator=g, p=aug.flip_p)
    x = color_jitter(
        x, generator=g, p=aug.jitter_p, brightness=aug.brightness, contrast=aug.contrast,
        saturation=aug.saturation, hue=aug.hue,
    )  # fmt: skip
    x = grayscale(x, generator=g, p=aug.grayscale_p)
    x = letterbox(x, generator=g, p=aug.letterbox_p, max_frac=aug.letterbox_max)
    x = picture_in_picture(x, generator=g, p=aug.pip_p, scale=aug.pip_scale)
    x = overlay(x, generator=g, p=aug.overlay_p)
    px = size / 112  # blur sigmas are given for 112 px frames
    sigma = (aug.blur_sigma[0] * px, aug.blur_sigma[1] * px)
    x = gaussian_blur(x, generator=g, p=aug.blur_p, sigma=sigma)
    x = gaussian_noise(x, generator=g, p=aug.noise_p, std=aug.noise_std)
    x = compress(x, generator=g, p=aug.compress_p, scale=aug.compress_scale, q=aug.compress_q)
    return quantize_8bit(x)  # (B, T, 3, S, S)


def make_views(
    window: torch.Tensor,
    *,
    inp: InputConfig,
    aug: AugmentConfig,
    generator: torch.Generator,
    size: int | None = None,
) -> torch.Tensor:
    """Two independent views of each window, normalised for the model: (2B, T, 3, S, S), the
    first B rows view 1 and the last B rows view 2 (row i and row B + i are positives).
    `size`: the views' side S, default the model's image_size."""
    side = size or inp.image_size
    kw = dict(num_frames=inp.num_frames, size=side, aug=aug, generator=generator)
    v1, v2 = make_view(window, **kw), make_view(window, **kw)
    return normalize(torch.cat([v1, v2]), inp)  # (2B, T, 3, S, S)
