"""Tiny grey frames at a fixed rate: the frame-level signal that places a match in time.

    decode_thumbnails(path, info, start_s, duration_s) -> Thumbnails
        one ffmpeg run: seek, fps=4, crop to the content box, area-scale to 16 x 16, grey

Why: the Sora vectors describe 4-s segments, so a match found with them is only as fine as
4 s; moments.py slides these frames of a query over those of the matched stretch of a
library video to place the match within a frame (0.25 s at 4 fps). 16 x 16 grey is what a
frame-accurate offset needs and nothing more: it ignores colour changes and re-encoding,
and a stretch of 30 s costs ~0.1 s to decode here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from sora_encoder.media.binary import ffmpeg_exe
from sora_encoder.media.borders import FULL, ContentBox
from sora_encoder.media.command import command, open_input
from sora_encoder.media.limits import DEFAULT_LIMITS, MediaLimits
from sora_encoder.media.probe import VideoInfo
from sora_encoder.media.process import FfmpegProcess

__all__ = ["THUMB_FPS", "THUMB_SIDE", "Thumbnails", "decode_thumbnails"]

THUMB_FPS = 4.0
THUMB_SIDE = 16


@dataclass(frozen=True)
class Thumbnails:
    """Frames sampled every 1 / fps seconds from `start_s` of a video."""

    start_s: float
    fps: float
    frames: np.ndarray  # (n, side, side) uint8 grey

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps


def decode_thumbnails(
    path: str | os.PathLike[str],
    info: VideoInfo,
    *,
    start_s: float = 0.0,
    duration_s: float | None = None,
    fps: float = THUMB_FPS,
    side: int = THUMB_SIDE,
    box: ContentBox = FULL,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> Thumbnails:
    """Thumbnails of [start_s, start_s + duration_s) of a probed video (to its end when
    `duration_s` is None). Media errors surface as the decoders' do: a broken file gives
    fewer frames, an empty result when nothing decodes."""
    start_s = min(max(0.0, start_s), info.duration_s)
    span = info.duration_s - start_s if duration_s is None else max(0.0, duration_s)
    exe = ffmpeg_exe()
    # -ss before -i: a fast keyframe seek, then frames are decoded up to start_s exactly,
    # and the output's clock starts at 0 there.
    node = open_input(path, limits, exe, ss=f"{start_s:.3f}", t=f"{span:.3f}")
    stream = node[f"v:{info.video_index}"].filter("fps", fps=fps)
    if not box.is_full:
        stream = stream.filter("crop", **box.crop_filter_args())
    stream = stream.filter("scale", side, side, flags="area").filter("format", "gray")
    out = stream.output("pipe:", format="rawvideo", pix_fmt="gray", an=None, sn=None, dn=None)
    frame_bytes = side * side
    cap = int(span * fps + 2) * frame_bytes
    budget = limits.decode_timeout_s(span)
    with FfmpegProcess(command(exe, out), budget_s=budget, what="thumbnails") as proc:
        data = proc.read_all(cap)
        proc.wait()
    n = len(data) // frame_bytes
    frames = np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(n, side, side)
    return Thumbnails(start_s, fps, frames)
