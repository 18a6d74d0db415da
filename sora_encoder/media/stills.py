"""Colour stills at given times: what a reviewer looks at (contact sheets, the duplicate
report), not what the model sees.

    grab_stills(path, info, times, height=) -> [(height, width, 3) uint8 RGB, or None]
        one short ffmpeg run per time: -ss before -i (keyframe seek, then decoded up to
        the time exactly), one frame, scaled to `height` at the display aspect, rgb24

A time past the end gives the last frame there is; a frame that does not decode gives None
(the sheet shows an empty cell) rather than failing the whole sheet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from sora_encoder.media.binary import ffmpeg_exe
from sora_encoder.media.command import command, open_input
from sora_encoder.media.limits import DEFAULT_LIMITS, MediaLimits
from sora_encoder.media.probe import VideoInfo
from sora_encoder.media.process import FfmpegProcess

__all__ = ["STILL_HEIGHT", "grab_stills", "still_size"]

log = logging.getLogger(__name__)

STILL_HEIGHT = 90  # pixels: four stills a side fit a 1280-px wide sheet at 16:9
LAST_FRAME_MARGIN_S = 0.05  # a time at the very end seeks past the last frame (no fps known)


def still_size(info: VideoInfo, height: int) -> tuple[int, int]:
    """(width, height) of a still at `height`, the display aspect kept, width even."""
    width = max(2, int(round(height * info.display_aspect / 2.0)) * 2)
    return width, height


def grab_stills(
    path: str | os.PathLike[str],
    info: VideoInfo,
    times: Sequence[float],
    *,
    height: int = STILL_HEIGHT,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> list[np.ndarray | None]:
    """One RGB still (height, width, 3) per time in seconds, None where none decodes."""
    exe = ffmpeg_exe()
    width, height = still_size(info, height)
    frame_bytes = width * height * 3
    # the last frame starts one frame period before the end: a seek past it gives nothing
    period = 1.0 / info.fps if info.fps > 0 else LAST_FRAME_MARGIN_S
    end = max(0.0, info.duration_s - period - 0.001)
    out: list[np.ndarray | None] = []
    for t in times:
        ss = min(max(0.0, float(t)), end)
        node = open_input(path, limits, exe, ss=f"{ss:.3f}")
        stream = node[f"v:{info.video_index}"].filter("scale", width, height)
        args = command(exe, stream.output("pipe:", format="rawvideo", pix_fmt="rgb24",
                                          vframes=1, an=None, sn=None, dn=None))  # fmt: skip
        with FfmpegProcess(args, budget_s=limits.decode_timeout_s(1.0), what="still") as proc:
            data = proc.read_all(frame_bytes)
            proc.wait()
        if len(data) < frame_bytes:
            log.info("no still of %s at %.3f s: %s", path, ss, proc.stderr_tail(2))
            out.append(None)
            continue
        out.append(np.frombuffer(data, np.uint8).reshape(height, width, 3))
    return out
