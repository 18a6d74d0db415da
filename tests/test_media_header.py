"""The `ffmpeg -i` header parser, over headers captured from several ffmpeg releases."""

from __future__ import annotations

import pytest

from sora_encoder.media.header import error_reason, parse_header, probed_format

# ffmpeg 9.0 (the imageio-ffmpeg wheel): `-display_rotation -90`, i.e. 90 degrees clockwise.
FFMPEG9_ROTATED = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/h1.mp4':
  Metadata:
    major_brand     : isom
    minor_version   : 512
    compatible_brands: isomiso2avc1mp41
    encoder         : Lavf63.1.102
  Duration: 00:00:02.00, start: 0.000000, bitrate: 346 kb/s
  Stream #0:0[0x1](und): Video: h264 (Constrained Baseline) (avc1 / 0x31637661), yuv420p(progressive), 160x120 [SAR 1:1 DAR 4:3], 265 kb/s, 25 fps, 25 tbr, 12800 tbn (default)
    Metadata:
      handler_name    : VideoHandler
      encoder         : Lavc63.1.102 libx264
    Side data:
      Display Matrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, mono, fltp, 70 kb/s (default)
    Metadata:
      handler_name    : SoundHandler
At least one output file must be specified
"""  # noqa: E501

# ffmpeg 5.1 (Debian 12) on a phone video: lower-case "displaymatrix", HEVC, a data track.
FFMPEG51_PHONE = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'IMG_1234.MOV':
  Metadata:
    major_brand     : qt  
    minor_version   : 0
    compatible_brands: qt  
    creation_time   : 2023-06-01T10:00:00.000000Z
    com.apple.quicktime.make: Apple
  Duration: 00:00:07.37, start: 0.000000, bitrate: 10915 kb/s
  Stream #0:0[0x1](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, bt709), 1920x1080, 10745 kb/s, 29.98 fps, 29.97 tbr, 600 tbn (default)
    Metadata:
      creation_time   : 2023-06-01T10:00:00.000000Z
      handler_name    : Core Media Video
      vendor_id       : [0][0][0][0]
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 157 kb/s (default)
    Metadata:
      handler_name    : Core Media Audio
  Stream #0:2[0x3](und): Data: none (mebx / 0x7862656D), 0 kb/s (default)
    Metadata:
      handler_name    : Core Media Metadata
At least one output file must be specified
"""  # noqa: E501, W291

# ffmpeg 4.x: streams indented by four spaces, the legacy `rotate` tag beside the matrix.
FFMPEG4_ROTATE_TAG = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'VID_20190101.mp4':
  Metadata:
    major_brand     : isom
    creation_time   : 2019-01-01T12:00:00.000000Z
  Duration: 00:00:10.03, start: 0.000000, bitrate: 17234 kb/s
    Stream #0:0(eng): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 17000 kb/s, SAR 1:1 DAR 16:9, 29.97 fps, 29.97 tbr, 90k tbn, 180k tbc (default)
    Metadata:
      rotate          : 270
      creation_time   : 2019-01-01T12:00:00.000000Z
      handler_name    : VideoHandle
    Side data:
      displaymatrix: rotation of 90.00 degrees
    Stream #0:1(eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 256 kb/s (default)
    Metadata:
      handler_name    : SoundHandle
At least one output file must be specified
"""  # noqa: E501

# ffmpeg 9: MPEG-TS with a program block, anamorphic pixels (SAR 32:27), a start offset.
FFMPEG9_MPEGTS_ANAMORPHIC = """\
Input #0, mpegts, from 'file:/tmp/h3.ts':
  Duration: 00:00:02.00, start: 1.400000, bitrate: 2649 kb/s
  Program 1 
    Metadata:
      service_name    : Service01
      service_provider: FFmpeg
  Stream #0:0[0x100]: Video: h264 (Constrained Baseline) ([27][0][0][0] / 0x001B), yuv420p(progressive), 720x480 [SAR 32:27 DAR 16:9], 25 fps, 25 tbr, 90k tbn, start 1.400000
At least one output file must be specified
"""  # noqa: E501, W291

# ffmpeg 9: WebM written to a pipe (as a browser's MediaRecorder does): no duration.
FFMPEG9_WEBM_NO_DURATION = """\
Input #0, matroska,webm, from 'file:/tmp/nodur.webm':
  Metadata:
    ENCODER         : Lavf63.1.102
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0: Video: vp9 (Profile 0), yuv420p(tv, progressive), 160x120, SAR 1:1 DAR 4:3, 25 fps, 25 tbr, 1k tbn
    Metadata:
      ENCODER         : Lavc63.1.102 libvpx-vp9
At least one output file must be specified
"""  # noqa: E501

# ffmpeg 9: an MP3 with cover art, which ffmpeg lists as a video stream.
FFMPEG9_MP3_COVER = """\
Input #0, mp3, from 'file:/tmp/h4.mp3':
  Metadata:
    encoder         : Lavf63.1.102
  Duration: 00:00:01.00, start: 0.025056, bitrate: 70 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, mono, fltp, 64 kb/s, start 0.025057
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 64x64 [SAR 1:1 DAR 1:1], 90k tbr, 90k tbn, start 0.025056 (attached pic)
    Metadata:
      comment         : Other
At least one output file must be specified
"""  # noqa: E501

FFMPEG9_NOT_MEDIA = """\
[in#0 @ 0x55717f316d00] Error opening input: Invalid data found when processing input
Error opening input file file:/srv/uploads/secret-name.bin.
Error opening input files: Invalid data found when processing input
"""


def test_ffmpeg9_rotated_video_with_audio() -> None:
    h = parse_header(FFMPEG9_ROTATED)
    assert h.format_names == ("mov", "mp4", "m4a", "3gp", "3g2", "mj2")
    assert h.duration_s == pytest.approx(2.0)
    assert h.start_s == 0.0
    assert [s.kind for s in h.streams] == ["video", "audio"]
    v = h.video_streams[0]
    # "0x31637661" in the codec tag must not be read as a frame size.
    assert (v.codec, v.width, v.height, v.sar, v.fps, v.tbr) == ("h264", 160, 120, 1.0, 25, 25)
    assert v.rotation == 90  # matrix -90 (counter-clockwise) = 90 clockwise
    assert h.audio_streams[0].codec == "aac"


def test_ffmpeg51_phone_video() -> None:
    h = parse_header(FFMPEG51_PHONE)
    assert h.duration_s == pytest.approx(7.37)
    v = h.video_streams[0]
    assert (v.codec, v.width, v.height, v.rotation) == ("hevc", 1920, 1080, 90)
    assert v.sar is None  # not printed: the caller assumes square pixels
    assert v.fps == pytest.approx(29.98)  # an average rate, not snapped to NTSC
    assert v.tbr == pytest.approx(30000 / 1001)  # "29.97" is the NTSC rate
    assert [s.kind for s in h.streams] == ["video", "audio", "data"]


def test_ffmpeg4_rotate_tag_and_matrix() -> None:
    h = parse_header(FFMPEG4_ROTATE_TAG)
    v = h.video_streams[0]
    assert (v.width, v.height, v.rotation) == (1920, 1080, 270)
    assert len(h.audio_streams) == 1


def test_rotate_tag_alone_is_used() -> None:
    text = FFMPEG4_ROTATE_TAG.replace(
        "    Side data:\n      displaymatrix: rotation of 90.00 degrees\n", ""
    ).replace("rotate          : 270", "rotate          : 90")
    assert parse_header(text).video_streams[0].rotation == 90


def test_display_matrix_wins_over_a_disagreeing_tag() -> None:
    text = FFMPEG4_ROTATE_TAG.replace("rotate          : 270", "rotate          : 180")
    assert parse_header(text).video_streams[0].rotation == 270


def test_mpegts_program_and_anamorphic_pixels() -> None:
    h = parse_header(FFMPEG9_MPEGTS_ANAMORPHIC)
    assert h.format_names == ("mpegts",)
    assert h.start_s == pytest.approx(1.4)
    v = h.video_streams[0]
    assert (v.width, v.height, v.rotation) == (720, 480, 0)
    assert v.sar == pytest.approx(32 / 27)
    assert v.tbr == 25


def test_missing_duration_is_none() -> None:
    h = parse_header(FFMPEG9_WEBM_NO_DURATION)
    assert h.duration_s is None
    v = h.video_streams[0]
    assert (v.codec, v.width, v.height, v.sar) == ("vp9", 160, 120, 1.0)


def test_cover_art_is_not_video() -> None:
    h = parse_header(FFMPEG9_MP3_COVER)
    assert h.video_streams == ()
    assert [(s.kind, s.attached_pic) for s in h.streams] == [("audio", False), ("video", True)]


def test_not_media_has_no_format_and_a_reason_without_the_path() -> None:
    h = parse_header(FFMPEG9_NOT_MEDIA)
    assert h.format_names == () and h.streams == ()
    reason = error_reason(FFMPEG9_NOT_MEDIA, hide="/srv/uploads/secret-name.bin")
    assert reason == "Invalid data found when processing input"  # once, no path, no address
    # ffmpeg 4 puts the path in front of the reason.
    old = "file:/srv/uploads/secret-name.bin: Invalid data found when processing input\n"
    assert error_reason(old, hide="/srv/uploads/secret-name.bin") == (
        "<input>: Invalid data found when processing input"
    )


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("25 fps, 25 tbr, 12800 tbn", (25.0, 25.0)),
        ("23.98 fps, 23.98 tbr, 24k tbn", (24000 / 1001, 24000 / 1001)),
        ("59.94 fps, 59.94 tbr, 60k tbn", (60000 / 1001, 60000 / 1001)),
        ("12.50 fps, 1k tbr, 1k tbn", (12.5, 1000.0)),
        ("0.0500 fps, 0.05 tbr", (0.05, 0.05)),
        ("1k tbr, 1k tbn", (None, 1000.0)),
    ],
)
def test_frame_rates(detail: str, expected: tuple[float | None, float | None]) -> None:
    line = f"  Stream #0:0: Video: h264, yuv420p, 640x360, {detail}"
    v = parse_header(f"Input #0, h264, from 'x':\n{line}\n").video_streams[0]
    for got, want in zip((v.fps, v.tbr), expected, strict=True):
        assert got == (None if want is None else pytest.approx(want))


def test_only_the_first_input_is_read() -> None:
    second = FFMPEG9_WEBM_NO_DURATION.replace("Input #0", "Input #1").replace(
        "Stream #0", "Stream #1"
    )
    h = parse_header(
        FFMPEG9_ROTATED.replace("At least one output file must be specified\n", "") + second
    )
    assert len(h.streams) == 2 and h.duration_s == pytest.approx(2.0)


def test_probed_format_from_debug_output() -> None:
    text = "[in#0 @ 0x557296c73180] Format hls probed with size=2048 and score=100\n"
    assert probed_format(text) == "hls"
    assert probed_format("nothing here") is None
