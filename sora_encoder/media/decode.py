"""Decode the sampled frames of every window in ONE ffmpeg process per video.

    ffmpeg -threads N -i file:VIDEO                          (+ the safety options)
      -filter_complex [0:v:K] tpad=stop_mode=clone              hold the last frame (padding)
                              settb, setpts=warp, fps=1:round=up   exact samples (sampling.py)
                              scale=W:H (short side = size), format=rgb24, crop=size:size
      -frames:v windows*T -an -sn -dn -f rawvideo pipe:1
    pipe:1 --> T*size*size*3 bytes at a time --> one (T, size, size, 3) uint8 clip per window

- Rotation: ffmpeg's autorotate turns the picture upright before our filters; the scale
  target comes from the probed display size (rotation and pixel aspect applied).
- Selecting frames before scaling means only the sampled frames are resized; the one
  swscale pass does both the resize and the YUV->RGB conversion.
- `-frames:v` stops ffmpeg once the last window is complete, so decoding the first windows
  of a long video does not read the rest of it.
- Padding: inside the video the `fps` filter already repeats the frame on screen (low frame
  rates, gaps in variable-rate video). Past the end of the stream (a header or an audio
  track longer than the video, a truncated file), samples repeat the last frame of the
  stream, the nearest one in time: `tpad` holds it for `MediaLimits.max_missing_s`
  seconds (or, when the frame rate is unknown, Python repeats the last frame it received).
  A longer gap raises UndecodableMediaError rather than indexing a frozen picture.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np

from sora_encoder.media.binary import ffmpeg_exe
from sora_encoder.media.borders import FULL, ContentBox
from sora_encoder.media.command import command, open_input
from sora_encoder.media.errors import (
    DecodeTimeoutError,
    ResolutionTooLargeError,
    UndecodableMediaError,
)
from sora_encoder.media.header import error_reason, oversize_picture
from sora_encoder.media.info import VideoInfo
from sora_encoder.media.limits import DEFAULT_LIMITS, MediaLimits, check_file, check_video
from sora_encoder.media.process import FfmpegProcess
from sora_encoder.media.sampling import scaled_size, tick_expression
from sora_encoder.media.windows import Window, check_windows

log = logging.getLogger(__name__)

# Frame threads beyond 4 add latency and memory for little gain at the sizes we decode,
# and a worker usually runs several decodes (or the encoder) beside this one.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Decoder threads when the caller does not say: the CPUs this process may use, max 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, cpus))


def decode_command(
    exe: str,
    path: str | os.PathLike[str],
    info: VideoInfo,
    windows: Sequence[Window],
    *,
    frames_per_clip: int,
    size: int,
    limits: MediaLimits,
    threads: int,
    box: ContentBox = FULL,
) -> list[str]:
    """The one ffmpeg command that decodes every window (see the module docstring)."""
    width, height = scaled_size(box.aspect(info.display_aspect), size)
    # reinit_filter=0: a mid-stream change of frame size (screen recordings, spliced
    # streams) must not rebuild the filter graph, which would restart the time warp and
    # the fps filter; scale adapts to the new input size by itself.
    node = open_input(path, limits, exe, threads=threads, reinit_filter=0)
    stream = node[f"v:{info.video_index}"]
    if _pads_in_ffmpeg(info, limits):
        # Hold the last frame for max_missing_s after the stream ends, so that samples past
        # the end get the true last frame (the fps filter never emits a frame for a tick
        # after the end of the stream).
        stream = stream.filter("tpad", stop_mode="clone", stop_duration=limits.max_missing_s)
    stream = (
        stream.filter("settb", "AVTB")
        .filter("setpts", f"({tick_expression(windows, frames_per_clip)})/TB")
        .filter("fps", fps=1, start_time=0, round="up")
    )
    if not box.is_full:  # borders off before the resize (borders.py), sampled frames only
        stream = stream.filter("crop", **box.crop_filter_args())
    stream = (
        stream.filter("scale", width, height, flags="bilinear")
        .filter("format", "rgb24")
        .filter("crop", size, size)
    )
    node = stream.output(
        "pipe:",
        format="rawvideo",
        pix_fmt="rgb24",
        an=None,
        sn=None,
        dn=None,
        **{"frames:v": len(windows) * frames_per_clip},
    )
    return command(exe, node, loglevel="error")


def _pads_in_ffmpeg(info: VideoInfo, limits: MediaLimits) -> bool:
    # tpad clones at the stream's frame rate; without a known rate it would add nothing.
    return limits.max_missing_s > 0 and info.fps > 0


def iter_clips(
    path: str | os.PathLike[str],
    info: VideoInfo,
    windows: Sequence[Window],
    *,
    frames_per_clip: int = 16,
    size: int = 112,
    limits: MediaLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    box: ContentBox = FULL,
) -> Iterator[np.ndarray]:
    """Yield one (frames_per_clip, size, size, 3) uint8 RGB clip per window, in order, as
    soon as its frames arrive, from a single ffmpeg process.

    Windows must be in time order and not overlap (`plan_windows` makes such a list). The
    time-out budget (`MediaLimits.decode_timeout_s`) is charged only while this generator
    waits on ffmpeg, not while the caller holds a clip. Close the generator (or exhaust it)
    to stop ffmpeg early; it is also stopped when the generator is garbage-collected.
    Raises the media errors of `probe`, plus UndecodableMediaError when ffmpeg stops
    early and DecodeTimeoutError. `box` (borders.detect_content_box) is cut out of every
    frame before the resize and centre crop.
    """
    if frames_per_clip < 1 or size < 1:
        raise ValueError(f"frames_per_clip and size must be >= 1, got {frames_per_clip}, {size}")
    windows = list(windows)
    check_windows(windows)
    st = check_file(path, limits)  # the file may have changed since it was probed
    if st.st_size != info.size_bytes:
        raise UndecodableMediaError(
            f"the file changed since it was probed ({info.size_bytes} -> {st.st_size} bytes)",
            path=path,
        )
    check_video(info, limits)
    if not windows:
        return
    exe = ffmpeg_exe()
    args = decode_command(
        exe,
        path,
        info,
        windows,
        frames_per_clip=frames_per_clip,
        size=size,
        limits=limits,
        threads=threads if threads is not None else default_threads(),
        box=box,
    )
    budget = limits.decode_timeout_s(windows[-1].end_s)
    shape = (frames_per_clip, size, size, 3)
    frame_bytes = size * size * 3
    with FfmpegProcess(args, budget_s=budget, what="decode") as proc:
        last: np.ndarray | None = None  # the last decoded frame, for padding
        for k, window in enumerate(windows):
            clip = np.empty(shape, np.uint8)
            got = proc.read_into(memoryview(clip.reshape(-1))) // frame_bytes
            if got < frames_per_clip:  # ffmpeg stopped early
                proc.wait()
                if proc.timed_out:
                    raise _timeout(path, budget, limits, window)
                if got:
                    last = clip[got - 1]
                _check_gap(path, info, windows, k, got, frames_per_clip, limits, proc, last)
                assert last is not None, "_check_gap raises when nothing was decoded"
                clip[got:] = last
                yield from _padded(clip, len(windows) - k - 1, last)
                return
            last = clip[-1]
            proc.pause_clock()
            yield clip
            proc.resume_clock()
        rc = proc.wait()
        if proc.timed_out:
            raise _timeout(path, budget, limits, windows[-1])
        _raise_if_oversize(path, proc.stderr_text(), limits)
        if rc != 0:  # every frame arrived; ffmpeg complained about something on the way
            tail = proc.stderr_tail()
            log.warning("ffmpeg exit %d after a complete decode of %s: %s", rc, path, tail)


def _padded(clip: np.ndarray, n_more: int, last: np.ndarray) -> Iterator[np.ndarray]:
    """The clip ffmpeg left unfinished, then whole clips of the last frame."""
    yield clip
    for _ in range(n_more):
        yield np.broadcast_to(last, clip.shape).copy()


def _check_gap(
    path: str | os.PathLike[str],
    info: VideoInfo,
    windows: Sequence[Window],
    k: int,
    got: int,
    frames: int,
    limits: MediaLimits,
    proc: FfmpegProcess,
    last: np.ndarray | None,
) -> None:
    """Raise unless the samples ffmpeg did not deliver may be padded (module docstring)."""
    stderr = proc.stderr_text()
    _raise_if_oversize(path, stderr, limits)
    reason = error_reason(stderr, hide=os.path.abspath(path))
    if proc.proc.returncode is not None and proc.proc.returncode < 0:
        reason = f"ffmpeg crashed (signal {-proc.proc.returncode}); {reason}"
    if last is None:
        raise UndecodableMediaError(
            f"ffmpeg decoded no frame from the video stream ({reason})", path=path
        )
    # Time of the last sample delivered vs the last one asked for. When ffmpeg already
    # held the last frame for max_missing_s (tpad), the stream really ended that much
    # earlier, so any shortfall is a gap longer than max_missing_s.
    delivered = (
        windows[k].sample_times(frames)[got - 1] if got else windows[k - 1].sample_times(frames)[-1]
    )
    stream_end = delivered - (limits.max_missing_s if _pads_in_ffmpeg(info, limits) else 0.0)
    wanted = windows[-1].sample_times(frames)[-1]
    if wanted - stream_end > limits.max_missing_s:
        raise UndecodableMediaError(
            f"the video stream stops at about {max(0.0, stream_end):.2f} s of a "
            f"{info.duration_s:.2f} s video: the file is truncated or damaged ({reason}); "
            f"up to MediaLimits.max_missing_s ({limits.max_missing_s:g} s) missing at the end "
            "is padded with the last frame",
            path=path,
        )
    log.info(
        "%s: ffmpeg stopped at %.2f s, padding %.2f s with the last frame",
        path,
        delivered,
        wanted - delivered,
    )


def _raise_if_oversize(path: str | os.PathLike[str], stderr: str, limits: MediaLimits) -> None:
    """The decoder refused a picture over max_pixels (see command.py): the resolution grew
    after the header that probe checked. Raised even when padding hid the missing frames."""
    if grown := oversize_picture(stderr):
        w, h = grown
        raise ResolutionTooLargeError(
            f"the video switches to a frame size of {w}x{h} after its start, over the limit "
            f"of {limits.max_pixels} pixels; raise MediaLimits.max_pixels to accept it",
            path=path,
        )


def _timeout(
    path: str | os.PathLike[str], budget: float, limits: MediaLimits, window: Window
) -> DecodeTimeoutError:
    return DecodeTimeoutError(
        f"decoding took over its {budget:.3g} s budget (MediaLimits.timeout_s "
        f"{limits.timeout_s:g} s + timeout_per_video_s {limits.timeout_per_video_s:g} x "
        f"{window.end_s:.1f} s of video) and was stopped; raise those limits for slow storage "
        "or very high resolutions",
        path=path,
    )


def decode_clips(
    path: str | os.PathLike[str],
    info: VideoInfo,
    windows: Sequence[Window],
    *,
    frames_per_clip: int = 16,
    size: int = 112,
    limits: MediaLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    box: ContentBox = FULL,
) -> np.ndarray:
    """All clips at once: uint8 RGB of shape (len(windows), frames_per_clip, size, size, 3).

    Memory grows with the video (4 hours of 4-s windows at 16x112x112 is 2.2 GB); a worker
    that embeds long videos should stream with `iter_clips` instead.
    """
    windows = list(windows)
    out = np.empty((len(windows), frames_per_clip, size, size, 3), np.uint8)
    n = 0
    for n, clip in enumerate(
        iter_clips(
            path,
            info,
            windows,
            frames_per_clip=frames_per_clip,
            size=size,
            limits=limits,
            threads=threads,
            box=box,
        ),
        start=1,
    ):
        out[n - 1] = clip
    assert n == len(windows), f"iter_clips yielded {n} clips for {len(windows)} windows"
    return out
