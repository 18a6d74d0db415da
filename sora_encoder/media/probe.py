"""probe(path) -> VideoInfo: the facts needed to plan and decode a video, limits enforced.

    os.stat (size, regular file)  ->  ffmpeg -i (header on stderr)  ->  parse_header
      -> refuse: unreadable / format refused / no video / too long / too large
      -> [duration missing] demux-only pass (-c copy -f null) timing the stream
      -> VideoInfo

A missing duration ("Duration: N/A": browser MediaRecorder WebM, raw H.264, some live-TS
captures) is measured, not guessed from the bitrate: one extra ffmpeg run copies the video
packets to the null muxer (no decoding, so it is fast) and reports the last timestamp. It
stops at `max_duration_s` so an endless stream cannot keep it busy.
"""

from __future__ import annotations

import logging
import os
import re

from sora_encoder.media.binary import ffmpeg_exe
from sora_encoder.media.command import command, header_command, open_input
from sora_encoder.media.errors import (
    DecodeTimeoutError,
    FormatNotAllowedError,
    NoVideoStreamError,
    ResolutionTooLargeError,
    UndecodableMediaError,
)
from sora_encoder.media.header import (
    HeaderFacts,
    StreamFacts,
    error_reason,
    oversize_picture,
    parse_header,
    probed_format,
)
from sora_encoder.media.info import VideoInfo
from sora_encoder.media.limits import (
    ALWAYS_REFUSED_FORMATS,
    DEFAULT_LIMITS,
    MediaLimits,
    check_file,
    check_video,
)
from sora_encoder.media.process import run_ffmpeg

log = logging.getLogger(__name__)


def probe(path: str | os.PathLike[str], limits: MediaLimits = DEFAULT_LIMITS) -> VideoInfo:
    """Read the header of `path` and check it against `limits`.

    Raises FileNotFoundError (missing path), FileTooLargeError, UndecodableMediaError
    (empty, not media, damaged), FormatNotAllowedError, NoVideoStreamError,
    DurationTooLongError, ResolutionTooLargeError, DecodeTimeoutError.
    """
    st = check_file(path, limits)
    exe = ffmpeg_exe()
    args = header_command(exe, path, limits, loglevel="info")
    run = run_ffmpeg(args, budget_s=limits.probe_timeout_s, what="probe")
    if run.timed_out:
        raise DecodeTimeoutError(
            f"reading the header took over {limits.probe_timeout_s:g} s; raise "
            "MediaLimits.probe_timeout_s if the file is on slow storage",
            path=path,
        )
    facts = parse_header(run.stderr)
    if not facts.format_names:
        _raise_unreadable(path, run.stderr, limits, exe, run.returncode)
    refused = ALWAYS_REFUSED_FORMATS.intersection(facts.format_names)
    if refused:  # unreachable while -format_whitelist works; kept as a second lock
        raise FormatNotAllowedError(_refused_message(sorted(refused)[0]), path=path)
    video = _pick_video(path, facts, run.stderr, limits)
    duration = facts.duration_s
    if duration is None or duration <= 0:
        duration = _measure_duration(path, facts, limits, exe)
    info = _video_info(path, st.st_size, facts, video, duration)
    log.debug("probed %s: %s", path, info)
    check_video(info, limits)
    return info


def _pick_video(
    path: str | os.PathLike[str], facts: HeaderFacts, stderr: str, limits: MediaLimits
) -> StreamFacts:
    videos = facts.video_streams
    if not videos:
        found = ", ".join(
            f"{s.kind} ({s.codec}{', cover picture' if s.attached_pic else ''})"
            for s in facts.streams
        )
        raise NoVideoStreamError(
            f"the file has no video stream, only: {found or 'no streams at all'}", path=path
        )
    video = videos[0]
    if (not video.width or not video.height) and (refused := oversize_picture(stderr)):
        # Codecs whose size comes from decoding the first picture (MPEG-4 Part 2, VP9, PNG,
        # raw video): -max_pixels made the decoder refuse it, so the header has no size.
        w, h = refused
        raise ResolutionTooLargeError(
            f"frame size {w}x{h} is {w * h} pixels, over the limit of {limits.max_pixels}; "
            "raise MediaLimits.max_pixels to accept it",
            path=path,
        )
    if not video.width or not video.height:
        raise UndecodableMediaError(
            f"ffmpeg could not determine the frame size of the {video.codec or 'unknown'} "
            "video stream (damaged or unsupported)",
            path=path,
        )
    return video


def _video_info(
    path: str | os.PathLike[str],
    size_bytes: int,
    facts: HeaderFacts,
    video: StreamFacts,
    duration: float,
) -> VideoInfo:
    assert video.width and video.height, "checked by _pick_video"
    sar = video.sar or 1.0
    width, height = video.width, video.height
    if video.rotation in (90, 270):
        # ffmpeg's autorotate transposes the picture, so decoded frames have swapped sides
        # and pixels that were wide are now tall.
        width, height, sar = height, width, 1.0 / sar
    videos = facts.video_streams
    return VideoInfo(
        path=str(path),
        duration_s=float(duration),
        fps=float(video.fps or video.tbr or 0.0),
        width=width,
        height=height,
        rotation=video.rotation,
        codec=video.codec,
        n_video_streams=len(videos),
        has_audio=bool(facts.audio_streams),
        size_bytes=size_bytes,
        format_name=",".join(facts.format_names),
        sample_aspect_ratio=sar,
        # The K of `-map 0:v:K` counts cover art too, so count every video stream before it.
        video_index=[s for s in facts.streams if s.kind == "video"].index(video),
    )


def _raise_unreadable(
    path: str | os.PathLike[str], stderr: str, limits: MediaLimits, exe: str, returncode: int
) -> None:
    if "not on whitelist" in stderr:
        # ffmpeg's message names the whitelist, not the format it detected. Ask again at
        # debug level (the whitelist still applies, so this run is just as safe).
        args = header_command(exe, path, limits, loglevel="debug")
        run = run_ffmpeg(args, budget_s=limits.probe_timeout_s, what="probe")
        raise FormatNotAllowedError(_refused_message(probed_format(run.stderr)), path=path)
    reason = error_reason(stderr, hide=os.path.abspath(path))
    if returncode < 0:  # killed by a signal, and not by our watchdog: ffmpeg crashed
        reason = f"ffmpeg crashed (signal {-returncode}); {reason}"
    raise UndecodableMediaError(f"ffmpeg cannot read the file: {reason}", path=path)


def _refused_message(name: str | None) -> str:
    what = f"container format '{name}'" if name else "the container format"
    why = (
        " (playlists, concat lists and manifests make ffmpeg open other files or URLs, so "
        "they are never accepted)"
        if name in ALWAYS_REFUSED_FORMATS
        else "; to accept it, add its ffmpeg demuxer name to MediaLimits.allowed_formats"
    )
    return f"{what} is not accepted{why}"


def _measure_duration(
    path: str | os.PathLike[str], facts: HeaderFacts, limits: MediaLimits, exe: str
) -> float:
    """Duration from the last video packet timestamp (see the module docstring)."""
    k = [s for s in facts.streams if s.kind == "video"].index(facts.video_streams[0])
    node = open_input(path, limits, exe)[f"v:{k}"].output(
        "-", f="null", c="copy", t=limits.max_duration_s + 1.0
    )
    args = command(exe, node, loglevel="error")
    # -progress writes key=value lines; out_time_us is the output position in microseconds.
    args[1:1] = ["-progress", "pipe:1"]
    run = run_ffmpeg(args, budget_s=limits.probe_timeout_s, what="duration")
    if run.timed_out:
        raise DecodeTimeoutError(
            f"the header has no duration and measuring it took over {limits.probe_timeout_s:g}"
            " s; raise MediaLimits.probe_timeout_s",
            path=path,
        )
    times = re.findall(rb"out_time_us=(\d+)", run.stdout)
    # The position after the last packet, i.e. its timestamp plus its duration.
    seconds = int(times[-1]) / 1e6 if times else 0.0
    frames = re.findall(rb"frame=\s*(\d+)", run.stdout)
    fps = facts.video_streams[0].fps or facts.video_streams[0].tbr
    if seconds <= 0 and frames and fps:
        # Raw streams (.h264) carry no timestamps; ffmpeg decodes them at the guessed rate.
        seconds = int(frames[-1]) / fps
    if seconds <= 0:
        reason = error_reason(run.stderr, hide=os.path.abspath(path))
        raise UndecodableMediaError(
            f"the file has no duration and its video has no timestamps to measure ({reason})",
            path=path,
        )
    log.info("%s: no duration in the header, measured %.3f s", path, seconds)
    return seconds
