"""Find the picture inside letterbox, pillarbox and flat-colour frame borders.

    ffmpeg -skip_frame nokey -i VIDEO  -vf select=(a keyframe every duration/n s),
                                           scale=W:H, format=gray
        -> up to `samples` grey keyframes (n, H, W) uint8, ONE process, keyframes only
    frames with content (not one flat colour: fades, black intros say nothing)
    a border line (row or column) = flat along the line in every frame (std <= flat_tol)
                                    and the same level in every frame (range <= steady_tol)
    content box = what is left after the border lines that touch each edge, minus a margin
    -> ContentBox(x, y, w, h) as fractions of the upright frame; FULL when unsure

Copies re-uploaded in another aspect ratio gain black bars (letterbox, pillarbox), and
edits add coloured frames; a square centre crop of the padded frame then shows a
different part of the picture than the original's. Cutting the borders off at ingest AND
at query time, with the same function, gives both sides the same picture.

Only keyframes are decoded (`-skip_frame nokey`): a handful of frames spread over the video
cost a fraction of the main decode, even for long videos. Bars do not move, so a few
frames are enough; a box that would keep less than `min_area` of the frame, or a video
with no frame of content, keeps the full frame (a wrong crop hurts more than a border).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from sora_encoder.media.binary import ffmpeg_exe
from sora_encoder.media.command import command, open_input
from sora_encoder.media.info import VideoInfo
from sora_encoder.media.limits import DEFAULT_LIMITS, MediaLimits
from sora_encoder.media.process import FfmpegProcess
from sora_encoder.media.sampling import scaled_size

log = logging.getLogger(__name__)

__all__ = [
    "FULL",
    "QUERY_REGIONS",
    "ContentBox",
    "content_box_of_frames",
    "detect_content_box",
]


@dataclass(frozen=True)
class ContentBox:
    """The picture inside the borders: left, top, width, height as fractions of the
    upright frame (so the same box applies at any decode size)."""

    x: float = 0.0
    y: float = 0.0
    w: float = 1.0
    h: float = 1.0

    def __post_init__(self) -> None:
        ok = 0 <= self.x < 1 and 0 <= self.y < 1 and 0 < self.w <= 1 and 0 < self.h <= 1
        if not (ok and self.x + self.w <= 1 + 1e-9 and self.y + self.h <= 1 + 1e-9):
            raise ValueError(f"a content box must lie inside the unit square, got {self}")

    @property
    def is_full(self) -> bool:
        return self == FULL

    def aspect(self, display_aspect: float) -> float:
        """Display width / height of the box, in a frame of `display_aspect`."""
        return display_aspect * self.w / self.h

    def crop_filter_args(self) -> dict[str, str]:
        """Keyword arguments of ffmpeg's `crop` filter (input-size expressions, so the box
        applies to the stored picture whatever its size or pixel aspect)."""
        return {
            "w": f"iw*{self.w:.6f}",
            "h": f"ih*{self.h:.6f}",
            "x": f"iw*{self.x:.6f}",
            "y": f"ih*{self.y:.6f}",
        }

    def inner(self, sub: ContentBox) -> ContentBox:
        """`sub`, given as fractions of this box, as fractions of the whole frame."""
        return ContentBox(
            self.x + sub.x * self.w, self.y + sub.y * self.h, sub.w * self.w, sub.h * self.h
        )

    def to_text(self) -> str:
        """ "x,y,w,h" with 4 decimals: what the store records on the video."""
        return ",".join(f"{v:.4f}" for v in (self.x, self.y, self.w, self.h))

    @classmethod
    def from_text(cls, text: str) -> ContentBox:
        parts = [float(p) for p in text.split(",")]
        if len(parts) != 4:
            raise ValueError(f"want 'x,y,w,h', got {text!r}")
        return cls(*parts)


FULL = ContentBox()

# Sub-regions a query clip is also embedded at (`VideoEmbedder.embed_regions`): the four
# corners and the centre at 60 % of each side, so that a picture-in-picture inset, a split
# screen or a heavy crop of a library video fills most of one of them. As fractions of the
# content box (inside the borders).
QUERY_REGIONS = tuple(
    ContentBox(x, y, 0.6, 0.6) for x, y in ((0, 0), (0.4, 0), (0, 0.4), (0.4, 0.4), (0.2, 0.2))
)

# Sampling and thresholds, on 8-bit grey levels of frames scaled to a short side of SIDE px.
SAMPLES = 12  # keyframes looked at, spread over the video
SIDE = 144  # detection resolution: 1 px = 0.7 % of the short side
FLAT_TOL = 6.0  # a border line's grey std along itself (compression noise, dithering)
STEADY_TOL = 10.0  # how much a border line's level may change from frame to frame
UNIFORM_TOL = 4.0  # a frame whose whole std is below this has no content (fade, black)
MIN_BORDER = 0.02  # thinner borders are ignored (edge artefacts of encoders, 1-px lines)
MARGIN = 0.01  # cut this much more inside a detected border: its edge is blurred by scaling
MIN_AREA = 0.25  # never keep less than this share of the frame
EDGE_ACROSS = 0.6  # share of a line where the picture must start for a border to end there


def content_box_of_frames(
    frames: np.ndarray,
    *,
    flat_tol: float = FLAT_TOL,
    steady_tol: float = STEADY_TOL,
    uniform_tol: float = UNIFORM_TOL,
    min_border: float = MIN_BORDER,
    margin: float = MARGIN,
    min_area: float = MIN_AREA,
) -> ContentBox:
    """The content box of grey frames (n, H, W) uint8 (or float); FULL when unsure."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"want grey frames (n, H, W), got shape {frames.shape}")
    n, H, W = frames.shape
    content = frames.reshape(n, -1).std(axis=1) > uniform_tol  # (n,)
    if not content.any():
        return FULL
    f = frames[content]  # (m, H, W)
    rows = _border_lines(f, axis=2, flat_tol=flat_tol, steady_tol=steady_tol)  # (H,)
    cols = _border_lines(f, axis=1, flat_tol=flat_tol, steady_tol=steady_tol)  # (W,)
    # (m, L, across) views of the frames with the edge at line 0, one per side
    sides = {
        "top": f, "bottom": f[:, ::-1], "left": f.transpose(0, 2, 1),
        "right": f.transpose(0, 2, 1)[:, ::-1],
    }  # fmt: skip
    lines = {"top": rows, "bottom": rows[::-1], "left": cols, "right": cols[::-1]}
    runs = {k: _edge_run(lines[k]) for k in sides}
    # A border ends at a straight edge: the picture starts across most of the line. A flat
    # desk or a dark sky ends where an object begins, across part of it: not a border.
    runs = {k: r if r and _sharp_edge(sides[k], r, flat_tol) else 0 for k, r in runs.items()}
    top, bottom, left, right = runs["top"], runs["bottom"], runs["left"], runs["right"]
    if top + bottom >= H or left + right >= W:  # flat everywhere: nothing to go by
        return FULL
    y0, y1 = _cut(top, H, min_border, margin), H - _cut(bottom, H, min_border, margin)
    x0, x1 = _cut(left, W, min_border, margin), W - _cut(right, W, min_border, margin)
    # The margins can eat a thin stripe of picture whole: too little left is "unsure".
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < min_area * W * H:
        log.debug("content box keeps under %.0f%% of the frame: not cropping", 100 * min_area)
        return FULL
    return ContentBox(x0 / W, y0 / H, (x1 - x0) / W, (y1 - y0) / H)


def _border_lines(f: np.ndarray, *, axis: int, flat_tol: float, steady_tol: float) -> np.ndarray:
    """Bool per line (rows: axis=2 averages along x; columns: axis=1 along y)."""
    spread = f.std(axis=axis).max(axis=0)  # (L,) worst flatness over the frames
    level = f.mean(axis=axis)  # (m, L)
    drift = level.max(axis=0) - level.min(axis=0)  # (L,)
    return (spread <= flat_tol) & (drift <= steady_tol)


def _sharp_edge(side: np.ndarray, run: int, flat_tol: float, across: float = EDGE_ACROSS) -> bool:
    """Does the picture start across the line? side (m, L, A): frames with the edge at
    line 0 and `run` border lines. True when, in some frame, most pixels of the first lines
    past the border (one blurred line skipped) differ from the border's level."""
    if run + 1 >= side.shape[1]:
        return False
    level = side[:, :run].mean(axis=(1, 2))  # (m,) the border's grey level per frame
    past = side[:, run + 1 : run + 4]  # (m, <=3, A)
    differs = np.abs(past - level[:, None, None]) > 2 * flat_tol + 4  # (m, k, A)
    return bool(differs.mean(axis=2).max() >= across)


def _edge_run(lines: np.ndarray) -> int:
    """How many lines from the start are border lines."""
    not_border = np.flatnonzero(~lines)
    return int(not_border[0]) if not_border.size else int(lines.size)


def _cut(run: int, length: int, min_border: float, margin: float) -> int:
    """Lines to cut at one edge: the border run plus the margin, 0 for a thin run."""
    if run < min_border * length:
        return 0
    return min(length, run + int(np.ceil(margin * length)))


def detect_content_box(
    path: str | os.PathLike[str],
    info: VideoInfo,
    limits: MediaLimits = DEFAULT_LIMITS,
    *,
    samples: int = SAMPLES,
) -> ContentBox:
    """The content box of a probed video (see the module docstring). Media errors are not
    raised here: a video whose keyframes cannot be read keeps the full frame, and the main
    decode reports the problem."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    width, height = scaled_size(info.display_aspect, SIDE)
    exe = ffmpeg_exe()
    node = open_input(path, limits, exe, skip_frame="nokey")
    # Keep a keyframe when `step` seconds have passed since the last kept one: spread over
    # the video, and (unlike the fps filter) a one-keyframe clip still gives its frame.
    step = info.duration_s / samples
    stream = (
        node[f"v:{info.video_index}"]
        .filter("select", f"isnan(prev_selected_t)+gte(t-prev_selected_t,{step:.6f})")
        .filter("scale", width, height, flags="area")
        .filter("format", "gray")
    )
    out = stream.output(
        "pipe:", format="rawvideo", pix_fmt="gray", an=None, sn=None, dn=None,
        **{"frames:v": samples},
    )  # fmt: skip
    frame_bytes = width * height
    budget = limits.decode_timeout_s(info.duration_s)
    with FfmpegProcess(command(exe, out), budget_s=budget, what="borders") as proc:
        data = proc.read_all(samples * frame_bytes)
        proc.wait()
    n = len(data) // frame_bytes
    if n == 0:
        log.debug("no keyframe decoded from %s for border detection", path)
        return FULL
    frames = np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(n, height, width)
    return content_box_of_frames(frames)
