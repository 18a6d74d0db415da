"""Video decoding for the Sora encoder: probe a file, cut it into windows, decode clips.

    probe(path, limits) -> VideoInfo            one `ffmpeg -i` (header parsed from stderr)
    plan_windows(info.duration_s) -> [Window]   4-s segments, the last one shorter
    detect_content_box(path, info) -> ContentBox   letterbox / frame borders, keyframes only
    decode_clips(path, info, windows, box=) -> (N, T, S, S, 3) uint8 RGB     ONE ffmpeg process
    iter_clips(...)  the same, one (T, S, S, 3) clip per window as soon as it is decoded

ffmpeg is the system's, else the imageio-ffmpeg wheel's (`ffmpeg_exe`). Hostile input is
expected: every call whitelists protocols and container formats, enforces `MediaLimits`
and a time-out, and every refusal is a `MediaError` subclass with a readable reason.
"""

from sora_encoder.media.binary import (
    FfmpegNotFoundError,
    FfmpegTooOldError,
    ffmpeg_exe,
    ffmpeg_version,
)
from sora_encoder.media.borders import ContentBox, detect_content_box
from sora_encoder.media.decode import decode_clips, iter_clips
from sora_encoder.media.errors import (
    DecodeTimeoutError,
    DurationTooLongError,
    FileTooLargeError,
    FormatNotAllowedError,
    MediaError,
    NoVideoStreamError,
    ResolutionTooLargeError,
    UndecodableMediaError,
)
from sora_encoder.media.info import VideoInfo
from sora_encoder.media.limits import DEFAULT_ALLOWED_FORMATS, MediaLimits
from sora_encoder.media.probe import probe
from sora_encoder.media.windows import Window, plan_windows

__all__ = [
    "ContentBox",
    "detect_content_box",
    "DEFAULT_ALLOWED_FORMATS",
    "DecodeTimeoutError",
    "DurationTooLongError",
    "FfmpegNotFoundError",
    "FileTooLargeError",
    "FormatNotAllowedError",
    "MediaError",
    "MediaLimits",
    "NoVideoStreamError",
    "ResolutionTooLargeError",
    "UndecodableMediaError",
    "VideoInfo",
    "Window",
    "decode_clips",
    "ffmpeg_exe",
    "ffmpeg_version",
    "FfmpegTooOldError",
    "iter_clips",
    "plan_windows",
    "probe",
]
