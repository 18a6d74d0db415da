"""Parse the stream header that `ffmpeg -i FILE` prints on stderr (pure, no I/O).

There is no ffprobe in the imageio-ffmpeg wheel, so probing reads ffmpeg's human-readable
dump instead. The format has drifted between releases; what this parser relies on:

    Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'clip.mp4':
      Duration: 00:00:05.43, start: 0.000000, bitrate: 8732 kb/s      (or "Duration: N/A")
      Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709),
             1920x1080 [SAR 1:1 DAR 16:9], 8591 kb/s, 29.97 fps, 29.97 tbr, 600 tbn (default)
        Metadata:
          rotate          : 90                                        (ffmpeg <= 4)
        Side data:
          displaymatrix: rotation of -90.00 degrees                  (ffmpeg 5, 6)
          Display Matrix: rotation of -90.00 degrees                 (ffmpeg 7 and later)
      Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp

(the Stream line is one line in the real output). Rotation here is *clockwise* degrees the
player turns the stored picture, the convention of the old `rotate` tag and of phones: a
display matrix printed as "rotation of -90.00 degrees" means 90.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_INPUT = re.compile(r"^Input #0, (?P<formats>.+?), from '")
_DURATION = re.compile(
    r"^\s+Duration: (?:N/A|(?P<h>\d+):(?P<m>\d+):(?P<s>\d+(?:\.\d+)?))"
    r"(?:, start: (?P<start>-?\d+(?:\.\d+)?))?"
)
_STREAM = re.compile(
    r"^\s+Stream #0:(?P<index>\d+)(?:\[[^\]]*\])?(?:\([^)]*\))?: "
    r"(?P<kind>Video|Audio|Subtitle|Data|Attachment): (?P<detail>.*)$"
)
# ", 1920x1080" or ", 1920x1080 [SAR ...": a comma before it, so a codec tag such as
# "(avc1 / 0x31637661)" is never read as a frame size.
_SIZE = re.compile(r"(?:^|, )(?P<w>\d+)x(?P<h>\d+)(?=[ ,]|$)")
_SAR = re.compile(r"SAR (?P<num>\d+):(?P<den>\d+)")
_RATE = r"(?P<value>\d+(?:\.\d+)?)(?P<k>k?) "
_FPS = re.compile(_RATE + "fps")
_TBR = re.compile(_RATE + "tbr")
_DISPLAY_MATRIX = re.compile(
    r"^\s+(?:displaymatrix|Display Matrix): rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees",
    re.IGNORECASE,
)
_ROTATE_TAG = re.compile(r"^\s+rotate\s*: (?P<deg>-?\d+(?:\.\d+)?)\s*$")
# A line that closes the current stream's block (anything not indented deeper than it).
_BLOCK_END = re.compile(r"^(?:\S|\s{0,2}\S)")
_PROBED_FORMAT = re.compile(r"Format (?P<name>\S+) probed with size=")
# The decoders' refusal of a picture over -max_pixels (see command.py).
_OVERSIZE = re.compile(r"Picture size (?P<w>\d+)x(?P<h>\d+) exceeds specified max pixel count")
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]+ @ (?:0x)?[0-9a-fA-F]+\] )+")  # may be nested

# ffmpeg prints rates with two decimals; the NTSC family is 1000/1001 of a round number.
_NTSC_RATES = tuple(n * 1000 / 1001 for n in (24, 30, 48, 60, 120, 240))


@dataclass(frozen=True)
class StreamFacts:
    """One `Stream #0:N` entry."""

    index: int  # N in "#0:N", the stream's index in the file
    kind: str  # "video", "audio", "subtitle", "data" or "attachment"
    codec: str  # first word of the detail, e.g. "h264"; "" when absent
    width: int | None = None  # coded size, before rotation
    height: int | None = None
    sar: float | None = None  # sample (pixel) aspect ratio; None when not printed or 0:1
    fps: float | None = None  # the "fps" figure: the average frame rate
    tbr: float | None = None  # the "tbr" figure: ffmpeg's guess of the base rate
    rotation: int = 0  # clockwise degrees in [0, 360)
    attached_pic: bool = False  # cover art in an audio file, not a video


@dataclass(frozen=True)
class HeaderFacts:
    """What `ffmpeg -i` said about input #0; `format_names` is () when it could not open it."""

    format_names: tuple[str, ...] = ()
    duration_s: float | None = None  # None for "Duration: N/A"
    start_s: float | None = None
    streams: tuple[StreamFacts, ...] = ()

    @property
    def video_streams(self) -> tuple[StreamFacts, ...]:
        """Real video streams: cover art ("attached pic") is not video."""
        return tuple(s for s in self.streams if s.kind == "video" and not s.attached_pic)

    @property
    def audio_streams(self) -> tuple[StreamFacts, ...]:
        return tuple(s for s in self.streams if s.kind == "audio")


def parse_header(text: str) -> HeaderFacts:
    """Parse ffmpeg's stderr dump of input #0 (see the module docstring for the format)."""
    formats: tuple[str, ...] = ()
    duration: float | None = None
    start: float | None = None
    streams: list[StreamFacts] = []
    current: dict[str, object] | None = None  # fields of the stream being read
    in_input = False
    has_matrix = False  # the current stream has a display matrix (it wins over the tag)

    def close_stream() -> None:
        nonlocal current
        if current is not None:
            streams.append(StreamFacts(**current))  # type: ignore[arg-type]
            current = None

    for line in text.splitlines():
        if m := _INPUT.match(line):
            if in_input:  # a second input: stop at the first one
                break
            in_input = True
            formats = tuple(m.group("formats").split(","))
            continue
        if not in_input:
            continue
        if m := _STREAM.match(line):
            close_stream()
            current = _stream_fields(m)
            has_matrix = False
            continue
        if current is not None:
            if _BLOCK_END.match(line):
                close_stream()
            elif m := _DISPLAY_MATRIX.match(line):
                # The display matrix is what ffmpeg's autorotate applies: it wins over the tag.
                current["rotation"] = _clockwise(-float(m.group("deg")))
                has_matrix = True
                continue
            elif (m := _ROTATE_TAG.match(line)) and not has_matrix:
                current["rotation"] = _clockwise(float(m.group("deg")))
                continue
            else:
                continue
        if m := _DURATION.match(line):
            if m.group("h") is not None:
                duration = int(m.group("h")) * 3600 + int(m.group("m")) * 60 + float(m.group("s"))
            if m.group("start") is not None:
                start = float(m.group("start"))
        elif not line.startswith(" "):
            # An unindented line (an error, "At least one output file ...") ends the dump.
            close_stream()
            if streams:
                break
    close_stream()
    return HeaderFacts(formats, duration, start, tuple(streams))


def _stream_fields(m: re.Match[str]) -> dict[str, object]:
    detail = m.group("detail")
    kind = m.group("kind").lower()
    codec_match = re.match(r"[\w.-]+", detail)
    fields: dict[str, object] = {
        "index": int(m.group("index")),
        "kind": kind,
        "codec": codec_match.group(0) if codec_match else "",
        "attached_pic": "(attached pic)" in detail,
    }
    if kind == "video":
        if size := _SIZE.search(detail):
            fields["width"], fields["height"] = int(size.group("w")), int(size.group("h"))
        if (sar := _SAR.search(detail)) and int(sar.group("num")) and int(sar.group("den")):
            fields["sar"] = int(sar.group("num")) / int(sar.group("den"))
        fields["fps"] = _rate(_FPS.search(detail))
        fields["tbr"] = _rate(_TBR.search(detail))
    return fields


def _rate(m: re.Match[str] | None) -> float | None:
    if m is None:
        return None
    value = float(m.group("value")) * (1000 if m.group("k") else 1)
    if value <= 0:
        return None
    for exact in _NTSC_RATES:
        if abs(value - exact) < 0.006:  # "29.97" -> 30000/1001
            return exact
    return value


def _clockwise(degrees: float) -> int:
    return int(round(degrees)) % 360


def probed_format(text: str) -> str | None:
    """The demuxer name from a `-loglevel debug` run ("Format hls probed with size=...")."""
    m = _PROBED_FORMAT.search(text)
    return m.group("name") if m else None


def oversize_picture(text: str) -> tuple[int, int] | None:
    """(width, height) of the first picture a decoder refused for exceeding -max_pixels."""
    m = _OVERSIZE.search(text)
    return (int(m.group("w")), int(m.group("h"))) if m else None


def error_reason(text: str, *, hide: str | None = None, max_lines: int = 4) -> str:
    """ffmpeg's error lines, without "[mov @ 0x55...]" prefixes, with the input path `hide`
    (which a service should not echo to a client) replaced by "<input>"."""
    reasons: list[str] = []
    for raw in text.splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        if not line or line.startswith(("Input #", "At least one output file")):
            continue
        if raw.startswith(" "):  # the indented header dump is not an error
            continue
        if hide:
            line = line.replace("file:" + hide, "<input>").replace(hide, "<input>")
        if line.startswith("Error opening input file <input>"):
            continue  # ffmpeg 6+ wraps the real reason in this line and the next two
        for prefix in ("Error opening input files: ", "Error opening input: "):
            line = line.removeprefix(prefix)  # ffmpeg 6+ repeats the reason with these
        if line not in reasons:
            reasons.append(line)
    if len(reasons) > max_lines:  # the first error is often the cause, the last the effect
        reasons = reasons[:1] + ["..."] + reasons[1 - max_lines :]
    return "; ".join(reasons) or "no error message from ffmpeg"
