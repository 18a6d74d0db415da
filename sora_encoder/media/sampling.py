"""The frame-selection filters: exact samples for every window in one ffmpeg pass (pure).

ffmpeg's `fps` filter emits one frame per tick of a uniform grid, repeating or dropping
input frames; with `round=up`, the frame for tick n is the last input frame with
timestamp <= n, i.e. the frame on screen at n. Our sample times are uniform *within* a
window but windows can differ in length (the last one is shorter), so no single grid fits.
Instead the time line is warped so that every sample falls on an integer tick:

    warp(t) = slot0 + (t - start) * T / length      inside a run of equal, adjacent windows
    tick(t) = warp(t) - 1/2                           sample i of window w  ->  tick w*T + i

    settb=AVTB, setpts=tick(T - STARTT)/TB, fps=1:start_time=0:round=up

The warp is increasing, so "last frame at or before the tick" in warped time is "last frame
at or before the sample time" in real time: exact, whatever the frame rate (a 2 fps video
gives repeated frames, a 60 fps video dropped ones). `start_time=0` drops frames before the
first sample and makes tick 0 the first output. Between runs that leave a gap the warp is
constant, so frames in the gap can only stand in for the next window's first sample when
nothing closer exists. Timestamps are microseconds (AVTB), fine enough for any frame rate.

Why not `select`: an expression over `t` can pick the first frame after each sample time, but
it cannot emit a frame twice, so a low frame rate or a short last window loses samples, and
a per-sample expression grows with the video (57600 terms for 4 hours).

Cost, measured by `bench/bench_decode.py --compare-select` (369 clips, 1812 s of 360p H.264,
2 CPUs): bare ffmpeg with this warp took 18.10 s, with a grid `select` 17.79 s (-1.7%), with
a plain `fps=4` 17.84 s (-1.4%). Decoding every frame dominates; exactness costs ~1.5%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sora_encoder.media.windows import Window

# Ties between a frame timestamp and a sample time go to that frame (it is on screen at t),
# despite floating-point noise of a few ulps.
_TIE_SLOTS = 1e-6


@dataclass(frozen=True)
class _Piece:
    """warp(t) = slot0 + (t - start_s) * rate on [start_s, next piece's start)."""

    start_s: float
    slot0: float
    rate: float  # slots per second; 0 for a gap between runs


def warp_pieces(windows: Sequence[Window], frames: int) -> list[_Piece]:
    """Piecewise-linear warp for windows already checked by `check_windows`."""
    pieces: list[_Piece] = []
    prev_end: float | None = None
    prev_rate: float | None = None
    for slot, w in enumerate(windows):
        rate = frames / w.duration_s
        slot0 = float(slot * frames)
        adjacent = prev_end is not None and abs(w.start_s - prev_end) < 1e-9
        if adjacent and prev_rate is not None and abs(rate - prev_rate) < 1e-12 * rate:
            prev_end = w.end_s  # same run: the previous piece already covers this window
            continue
        if prev_end is not None and not adjacent:
            pieces.append(_Piece(prev_end, slot0, 0.0))  # gap: hold at this window's start
        pieces.append(_Piece(w.start_s, slot0, rate))
        prev_end, prev_rate = w.end_s, rate
    return pieces


def tick_expression(windows: Sequence[Window], frames: int, t: str = "(T-STARTT)") -> str:
    """An ffmpeg expression of `t` giving the output tick (see the module docstring).

    Pieces are chosen by a balanced tree of `if(lt(t, b), ...)`, so its depth is the log of
    the number of pieces: plan_windows gives at most two pieces, arbitrary windows many.
    """
    pieces = warp_pieces(windows, frames)
    if not pieces:
        raise ValueError("no windows")
    shift = 0.5 + _TIE_SLOTS

    def linear(p: _Piece) -> str:
        if p.rate == 0.0:
            return _num(p.slot0 - shift)
        return f"{_num(p.slot0 - shift)}+({t}-{_num(p.start_s)})*{_num(p.rate)}"

    def tree(ps: list[_Piece]) -> str:
        if len(ps) == 1:
            return linear(ps[0])
        mid = len(ps) // 2
        return f"if(lt({t},{_num(ps[mid].start_s)}),{tree(ps[:mid])},{tree(ps[mid:])})"

    return tree(pieces)


def _num(x: float) -> str:
    # repr round-trips a float exactly; ffmpeg's parser reads the same notation.
    return repr(float(x))


def scaled_size(display_aspect: float, size: int) -> tuple[int, int]:
    """(width, height) that makes the short side `size` and keeps the display aspect."""
    if display_aspect >= 1.0:
        return max(size, round(size * display_aspect)), size
    return size, max(size, round(size / display_aspect))
