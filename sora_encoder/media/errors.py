"""The media errors: one class per reason a video is refused.

Callers (the ingest worker, the API) map these to a job failure or a gRPC status; the message
is meant for the person who sent the file, so it says what went wrong, the value that tripped
it and, for limits, which `MediaLimits` field raises it. A missing file is not a media error:
it raises the built-in `FileNotFoundError`.
"""

from __future__ import annotations

from pathlib import Path


class MediaError(Exception):
    """Base class of every media error; `str(err)` is a human-readable reason."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Kept apart from the message so a service can log the path but not show it to a user.
        self.path = str(path) if path is not None else None

    def __str__(self) -> str:
        return self.message


class UndecodableMediaError(MediaError):
    """ffmpeg cannot read the file: not media, damaged, truncated, or empty."""


class FormatNotAllowedError(UndecodableMediaError):
    """The container format is refused by policy (`MediaLimits.allowed_formats`).

    A subclass of `UndecodableMediaError`, so code that only cares "cannot use this file"
    catches both.
    """


class NoVideoStreamError(MediaError):
    """The file is media but holds no video stream (audio only, or only cover art)."""


class FileTooLargeError(MediaError):
    """The file is larger than `MediaLimits.max_file_bytes` (checked before ffmpeg runs)."""


class DurationTooLongError(MediaError):
    """The video is longer than `MediaLimits.max_duration_s`."""


class ResolutionTooLargeError(MediaError):
    """The frame size exceeds `MediaLimits.max_side` or `MediaLimits.max_pixels`."""


class DecodeTimeoutError(MediaError):
    """ffmpeg ran past its time budget and was killed (see `MediaLimits.decode_timeout_s`)."""
