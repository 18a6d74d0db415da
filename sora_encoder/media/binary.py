"""Find the ffmpeg binary and ask it what it can do.

Order: $SORA_FFMPEG (an explicit choice wins), then `ffmpeg` on PATH (the system's build,
patched by the distribution), then the binary shipped by the `imageio-ffmpeg` wheel, so that
`pip install` alone gives a working decoder. There is no ffprobe in the wheel, which is why
probing parses `ffmpeg -i` output (see `header.py`).

Supported: ffmpeg 4.4 and newer, the floor being Ubuntu 22.04's 4.4 (Debian 12 has 5.1;
the wheel is newer). An older binary is refused with FfmpegTooOldError the first time it
is picked, rather than failing later on an option or filter it lacks. A build that prints
no release number (a git build) is accepted with a warning.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil

from sora_encoder.media.process import run_ffmpeg

log = logging.getLogger(__name__)

ENV_VAR = "SORA_FFMPEG"
MIN_VERSION = (4, 4)
_QUERY_BUDGET_S = 30.0


class FfmpegNotFoundError(RuntimeError):
    """No usable ffmpeg binary: a deployment problem, not a problem with the media."""


class FfmpegTooOldError(FfmpegNotFoundError):
    """The ffmpeg binary found is older than MIN_VERSION."""


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to run (not cached, so tests can change $SORA_FFMPEG),
    checked to be at least MIN_VERSION (its version is asked once per binary)."""
    exe = _find_ffmpeg()
    check_version(exe)
    return exe


def check_version(exe: str) -> tuple[int, ...]:
    """The version of `exe`; FfmpegTooOldError when it is older than MIN_VERSION."""
    version = ffmpeg_version(exe)
    if version and version < MIN_VERSION:
        need = ".".join(map(str, MIN_VERSION))
        raise FfmpegTooOldError(
            f"ffmpeg {'.'.join(map(str, version))} at {exe} is too old: Sora needs ffmpeg "
            f"{need} or newer. Install a newer one, or point ${ENV_VAR} at one (the "
            "imageio-ffmpeg wheel ships a recent build: `python -c 'import imageio_ffmpeg; "
            "print(imageio_ffmpeg.get_ffmpeg_exe())'`)"
        )
    return version


def _find_ffmpeg() -> str:
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise FfmpegNotFoundError(
                f"${ENV_VAR}={explicit!r} is not an executable; fix or unset it"
            )
        return found
    system = shutil.which("ffmpeg")
    if system is not None:
        return system
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise FfmpegNotFoundError(
            f"no ffmpeg found: install ffmpeg, `pip install imageio-ffmpeg`, or set ${ENV_VAR}"
        ) from exc
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:  # the wheel has no binary for this platform
        raise FfmpegNotFoundError(f"imageio-ffmpeg has no ffmpeg here: {exc}") from exc


@functools.lru_cache(maxsize=8)
def ffmpeg_version(exe: str | None = None) -> tuple[int, ...]:
    """(major, minor) of an ffmpeg binary, e.g. (9, 0); () when the banner is unparseable.

    Git builds print `ffmpeg version N-12345-g...` with no release number: () then.
    """
    exe = exe or _find_ffmpeg()
    run = run_ffmpeg([exe, "-hide_banner", "-version"], budget_s=_QUERY_BUDGET_S, what="version")
    text = run.stdout.decode("utf-8", "replace")
    match = re.search(r"ffmpeg version n?(\d+)\.(\d+)", text)
    version = (int(match.group(1)), int(match.group(2))) if match else ()
    if version:
        log.info("ffmpeg %s is version %s", exe, ".".join(map(str, version)))
    else:
        log.warning("ffmpeg %s prints no release number; assuming it is recent enough", exe)
    return version


@functools.lru_cache(maxsize=8)
def ffmpeg_demuxers(exe: str | None = None) -> frozenset[str]:
    """Names of the demuxers an ffmpeg binary has, devices (flag `d`) left out."""
    exe = exe or ffmpeg_exe()
    run = run_ffmpeg([exe, "-hide_banner", "-demuxers"], budget_s=_QUERY_BUDGET_S, what="demuxers")
    names: set[str] = set()
    listing = run.stdout.decode("utf-8", "replace").split("--", 1)[-1]
    for line in listing.splitlines():
        # " D   mov,mp4,m4a,3gp,3g2,mj2 QuickTime / MOV" or " D d fbdev  Linux framebuffer"
        match = re.match(r"\s*(D[.E ]?)\s*(d?)\s+(\S+)", line)
        if match and not match.group(2):
            names.update(match.group(3).split(","))
    return frozenset(names)
