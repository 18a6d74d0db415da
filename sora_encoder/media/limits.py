"""What media we accept: size, duration, resolution, time and container limits.

Every field is a guard against hostile or accidental input (a 50 GB upload, a 100-hour
stream, a 30000x30000 "decompression bomb", a playlist that points ffmpeg at the network).
Each violation raises its own `MediaError` subclass whose message names the field to raise.

Time-out policy: a probe gets `probe_timeout_s`; a decode gets `decode_timeout_s(seconds)`
= `timeout_s + timeout_per_video_s * seconds of video decoded`, so a 4-hour film is not
killed by a budget sized for a 10-second clip. The budget counts only time spent waiting on
ffmpeg: while a caller of `iter_clips` works on a clip, ffmpeg is blocked on a full pipe and
that time is not charged to it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sora_encoder.media.errors import (
    DurationTooLongError,
    FileTooLargeError,
    ResolutionTooLargeError,
    UndecodableMediaError,
)
from sora_encoder.media.info import VideoInfo

GIB = 1024**3

# ffmpeg demuxer names for the containers and raw streams that cameras, phones, browsers and
# editors produce, plus common audio formats (so an audio file reports "no video stream"
# rather than "format refused"). Deliberately absent: playlists and scripts that make ffmpeg
# open other files or URLs (hls, dash, concat, imf, ...), image sequences, devices, and odd
# legacy demuxers that only widen the attack surface (tty turns a text file into a "video").
DEFAULT_ALLOWED_FORMATS: tuple[str, ...] = (
    "mov",  # mov,mp4,m4a,3gp,3g2,mj2
    "matroska",  # matroska,webm
    "avi",
    "flv",
    "mpegts",
    "mpeg",
    "asf",
    "ogg",
    "mxf",
    "nut",
    "dv",
    "rm",
    "gif",
    "apng",
    "ivf",
    "obu",
    "h264",
    "hevc",
    "m4v",
    "mpegvideo",
    "mjpeg",
    "yuv4mpegpipe",
    "mp3",
    "wav",
    "aac",
    "flac",
)

# Demuxers that read other files or URLs named inside the input, run scripts, or read
# devices. Refused even when `allowed_formats` is None ("anything ffmpeg can read").
ALWAYS_REFUSED_FORMATS: frozenset[str] = frozenset(
    {
        "hls",
        "applehttp",
        "dash",
        "concat",
        "imf",
        "webm_dash_manifest",
        "avisynth",
        "vapoursynth",
        "dvdvideo",
        "bluray",
        "image2",
        "sdp",
        "rtsp",
        "rtp",
        "lavfi",
    }
)


@dataclass(frozen=True)
class MediaLimits:
    """Limits and time budgets applied to every probe and decode (see the module docstring)."""

    # 4 GiB: a long 1080p upload fits; past this it is most likely a mistake or an attack.
    max_file_bytes: int = 4 * GIB
    # 4 hours: a feature film or a long recording; longer streams should be cut upstream.
    max_duration_s: float = 4 * 3600.0
    # 8192 px: covers 8K UHD (7680x4320) and DCI 8K; decoders of larger frames eat memory.
    max_side: int = 8192
    # Total pixels per frame; equal to max_side squared by default, lower it to cap memory.
    max_pixels: int = 8192 * 8192
    # Fixed part of a decode budget: process start, probing and a slow disk.
    timeout_s: float = 120.0
    # Seconds of budget per second of video decoded: 1.0 means "at least real time", which
    # any CPU reaches for 1080p H.264; raise it for 4K HEVC on small machines.
    timeout_per_video_s: float = 1.0
    # Reading a header is quick; a probe that takes this long is stuck or malicious.
    probe_timeout_s: float = 30.0
    # A decode that stops early (truncated file, header longer than the stream) is padded
    # by repeating the last frame when the missing part is at most this long; a longer gap
    # raises UndecodableMediaError instead of indexing a frozen frame.
    max_missing_s: float = 1.0
    # ffmpeg demuxer names accepted (enforced by ffmpeg's -format_whitelist, so a refused
    # format is never parsed); None means every demuxer except ALWAYS_REFUSED_FORMATS.
    allowed_formats: tuple[str, ...] | None = DEFAULT_ALLOWED_FORMATS

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_duration_s", "max_side", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MediaLimits.{name} must be > 0, got {getattr(self, name)}")
        for name in ("timeout_s", "probe_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"MediaLimits.{name} must be > 0, got {getattr(self, name)}")
        if self.timeout_per_video_s < 0 or self.max_missing_s < 0:
            raise ValueError("MediaLimits.timeout_per_video_s and max_missing_s must be >= 0")
        if isinstance(self.allowed_formats, str):
            # A bare string would be iterated character by character; make the mistake loud.
            raise TypeError("MediaLimits.allowed_formats must be a tuple of names, not a str")

    def decode_timeout_s(self, video_seconds: float) -> float:
        """Time budget for decoding `video_seconds` of video."""
        return self.timeout_s + self.timeout_per_video_s * max(0.0, video_seconds)


# The default, shared: MediaLimits is frozen, so one instance serves every call.
DEFAULT_LIMITS = MediaLimits()


def check_file(path: str | os.PathLike[str], limits: MediaLimits) -> os.stat_result:
    """Refuse a path before ffmpeg sees it: missing, not a regular file, empty, too large.

    Raises FileNotFoundError for a missing path; a FIFO or device is refused because ffmpeg
    would block on it or read it forever.
    """
    st = os.stat(path)  # FileNotFoundError propagates: it is the caller's error, not media's
    if not stat.S_ISREG(st.st_mode):
        raise UndecodableMediaError(
            f"not a regular file (a directory, pipe or device): {Path(path).name}", path=path
        )
    if st.st_size == 0:
        raise UndecodableMediaError("the file is empty (0 bytes)", path=path)
    if st.st_size > limits.max_file_bytes:
        raise FileTooLargeError(
            f"file is {_human_bytes(st.st_size)} ({st.st_size} bytes), over the limit of "
            f"{_human_bytes(limits.max_file_bytes)}; raise MediaLimits.max_file_bytes to "
            "accept it",
            path=path,
        )
    return st


def check_video(info: VideoInfo, limits: MediaLimits) -> None:
    """Refuse a probed video that is too long or too large."""
    if info.duration_s > limits.max_duration_s:
        raise DurationTooLongError(
            f"video lasts {info.duration_s:.1f} s, over the limit of {limits.max_duration_s:g} s;"
            " raise MediaLimits.max_duration_s to accept it",
            path=info.path,
        )
    long_side = max(info.width, info.height)
    if long_side > limits.max_side:
        raise ResolutionTooLargeError(
            f"frame size {info.width}x{info.height} has a side of {long_side} px, over the "
            f"limit of {limits.max_side} px; raise MediaLimits.max_side to accept it",
            path=info.path,
        )
    if info.width * info.height > limits.max_pixels:
        raise ResolutionTooLargeError(
            f"frame size {info.width}x{info.height} is {info.width * info.height} pixels, over "
            f"the limit of {limits.max_pixels}; raise MediaLimits.max_pixels to accept it",
            path=info.path,
        )


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
