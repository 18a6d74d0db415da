"""Build ffmpeg command lines with ffmpeg-python, with the safety options on every call.

Every input is opened as

    ffmpeg -hide_banner -nostdin -nostats -loglevel L
           -protocol_whitelist file,pipe -format_whitelist <allowed demuxers> -i file:/abs/path

- `-protocol_whitelist file,pipe`: ffmpeg never opens a network address, also not one named
  inside the input (an HLS playlist, an ffconcat list, a DASH manifest). It is inherited by
  every nested open, so a referenced URL fails instead of being fetched.
- `-format_whitelist`: the demuxer is checked right after format detection, before it reads
  anything; so a playlist or concat list naming *local* files (allowed by `file`) is refused
  before ffmpeg follows it.
- `-max_pixels`: the decoders refuse pictures over `MediaLimits.max_pixels`, wherever
  they appear in the stream.
- `file:` prefix: a path that looks like an option ("-x.mp4") or a protocol ("concat:a|b",
  "http://...") is read as a plain file name.
"""

from __future__ import annotations

import os
from typing import Any

import ffmpeg

from sora_encoder.media.binary import ffmpeg_demuxers
from sora_encoder.media.limits import ALWAYS_REFUSED_FORMATS, MediaLimits

PROTOCOL_WHITELIST = "file,pipe"


def format_whitelist(limits: MediaLimits, exe: str) -> str:
    """The `-format_whitelist` value for these limits and this ffmpeg binary."""
    if limits.allowed_formats is not None:
        names = [n for n in limits.allowed_formats if n not in ALWAYS_REFUSED_FORMATS]
    else:
        # "Anything ffmpeg reads" still means "nothing that opens other files".
        names = sorted(ffmpeg_demuxers(exe) - ALWAYS_REFUSED_FORMATS)
    if not names:
        raise ValueError("MediaLimits.allowed_formats leaves no format to accept")
    return ",".join(names)


def open_input(path: str | os.PathLike[str], limits: MediaLimits, exe: str, **options: Any) -> Any:
    """An ffmpeg-python input node for `path` with the safety options (see module docstring)."""
    return ffmpeg.input(
        "file:" + os.path.abspath(path),
        protocol_whitelist=PROTOCOL_WHITELIST,
        format_whitelist=format_whitelist(limits, exe),
        # The decoder refuses larger pictures, also ones that appear after an innocent
        # header (a stream whose resolution grows mid-way); probe only sees the first.
        max_pixels=limits.max_pixels,
        **options,
    )


def command(exe: str, node: Any, *, loglevel: str = "error") -> list[str]:
    """The argument list for an ffmpeg-python output node.

    Global flags go first: ffmpeg-python appends `global_args` after the output, where
    recent ffmpeg warns that trailing options may be ignored.
    """
    return [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", loglevel, *node.get_args()]


def header_command(
    exe: str, path: str | os.PathLike[str], limits: MediaLimits, *, loglevel: str
) -> list[str]:
    """`ffmpeg -i FILE` with no output: ffmpeg opens the input, prints its header on stderr
    and exits with status 1 ("At least one output file must be specified").

    ffmpeg-python cannot compile an input without an output, so the placeholder output
    name it needs is dropped. A null output instead (`-t 0 -f null -`) would also open the
    decoders: about 8 ms more per probe, 10% of decoding a typical 5-s clip.
    """
    args = command(exe, open_input(path, limits, exe).output("-"), loglevel=loglevel)
    assert args[-1] == "-", f"expected the placeholder output last: {args}"
    return args[:-1]
