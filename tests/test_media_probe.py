"""probe() on videos generated with ffmpeg: codecs, sizes, frame rates, rotations, limits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sora_encoder.media import (
    DurationTooLongError,
    FfmpegNotFoundError,
    FfmpegTooOldError,
    FileTooLargeError,
    FormatNotAllowedError,
    MediaLimits,
    ResolutionTooLargeError,
    ffmpeg_exe,
    ffmpeg_version,
    probe,
)
from sora_encoder.media.binary import ffmpeg_demuxers
from tests.media_factory import ffmpeg_run, make_video


@pytest.mark.parametrize(
    ("name", "codec", "size", "fps", "expected_codec", "expected_fps"),
    [
        ("a.mp4", "libx264", (160, 120), 25, "h264", 25.0),
        ("b.mp4", "libx264", (120, 160), 12, "h264", 12.0),  # portrait
        ("c.mkv", "libx264", (161, 121), 60, "h264", 60.0),  # odd sides
        ("d.avi", "mpeg4", (176, 144), "30000/1001", "mpeg4", 30000 / 1001),
        ("e.webm", "libvpx-vp9", (96, 64), 25, "vp9", 25.0),
        ("f.mov", "mjpeg", (99, 75), 12, "mjpeg", 12.0),
        pytest.param(
            "g.ts",
            "libx264",
            (64, 48),
            25,
            "h264",
            25.0,
            marks=pytest.mark.skipif(
                ffmpeg_version() < (4, 3),
                reason="the ffmpeg 4.2.2 static build segfaults reading MPEG-TS it wrote",
            ),
        ),
    ],
)
def test_probe_facts(
    tmp_path: Path,
    name: str,
    codec: str,
    size: tuple[int, int],
    fps: int | str,
    expected_codec: str,
    expected_fps: float,
) -> None:
    path = make_video(tmp_path / name, duration_s=1.0, fps=fps, size=size, codec=codec)
    info = probe(path)
    assert (info.width, info.height) == size
    assert info.codec == expected_codec
    assert info.fps == pytest.approx(expected_fps, rel=1e-4)
    assert info.duration_s == pytest.approx(1.0, abs=0.1)
    assert info.rotation == 0
    assert info.n_video_streams == 1
    assert not info.has_audio
    assert info.size_bytes == path.stat().st_size
    assert info.sample_aspect_ratio == pytest.approx(1.0)
    assert info.path == str(path)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_probe_rotation_swaps_the_display_size(tmp_path: Path, rotation: int) -> None:
    path = make_video(tmp_path / "r.mp4", duration_s=0.5, size=(160, 120), rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    expected = (120, 160) if rotation in (90, 270) else (160, 120)
    assert (info.width, info.height) == expected


def test_probe_audio_and_anamorphic_pixels(tmp_path: Path) -> None:
    path = make_video(
        tmp_path / "dvd.mkv", duration_s=1.0, size=(720, 480), vf="setsar=32/27", audio=True
    )
    info = probe(path)
    assert info.has_audio
    assert (info.width, info.height) == (720, 480)
    assert info.sample_aspect_ratio == pytest.approx(32 / 27)
    assert info.display_aspect == pytest.approx(16 / 9)
    assert info.format_name == "matroska,webm"


def test_probe_measures_a_missing_duration(tmp_path: Path) -> None:
    # WebM written to a pipe has no duration in its header (like a browser recording).
    raw = ffmpeg_run(
        ["-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=3", "-c:v", "libvpx-vp9"]
        + ["-deadline", "realtime", "-cpu-used", "8", "-f", "webm", "pipe:1"]
    )
    path = tmp_path / "recording.webm"
    path.write_bytes(raw)
    assert "Duration: N/A" in _header(path)  # the premise of the test
    assert probe(path).duration_s == pytest.approx(3.0, abs=0.05)


def test_probe_multiple_video_streams(tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", duration_s=1.0, size=(64, 48))
    b = make_video(tmp_path / "b.mp4", duration_s=1.0, size=(96, 64))
    both = tmp_path / "both.mkv"
    ffmpeg_run(["-i", str(a), "-i", str(b), "-map", "0:v", "-map", "1:v", "-c", "copy", str(both)])
    info = probe(both)
    assert info.n_video_streams == 2
    assert (info.width, info.height, info.video_index) == (64, 48, 0)  # the first one


def test_duration_limit(tmp_path: Path) -> None:
    path = make_video(tmp_path / "long.mp4", duration_s=3.0, size=(64, 48), fps=5)
    with pytest.raises(DurationTooLongError) as err:
        probe(path, MediaLimits(max_duration_s=2.0))
    assert "3.0 s" in str(err.value) and "max_duration_s" in str(err.value)


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        (MediaLimits(max_side=150), "max_side"),
        (MediaLimits(max_pixels=160 * 120 - 1), "max_pixels"),
    ],
)
def test_resolution_limits(tmp_path: Path, limits: MediaLimits, field: str) -> None:
    path = make_video(tmp_path / "v.mp4", duration_s=0.2, size=(160, 120))
    with pytest.raises(ResolutionTooLargeError) as err:
        probe(path, limits)
    assert "160x120" in str(err.value) and field in str(err.value)


def test_resolution_limit_applies_to_the_rotated_size(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", duration_s=0.2, size=(160, 120), rotation=90)
    with pytest.raises(ResolutionTooLargeError, match="120x160"):
        probe(path, MediaLimits(max_side=150))


def test_file_size_is_checked_before_ffmpeg_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_video(tmp_path / "v.mp4", duration_s=0.2, size=(64, 48))
    spawned: list[object] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: spawned.append(a))
    with pytest.raises(FileTooLargeError) as err:
        probe(path, MediaLimits(max_file_bytes=100))
    assert spawned == []
    assert "max_file_bytes" in str(err.value) and str(path.stat().st_size) in str(err.value)
    assert "100 bytes" in str(err.value)


def test_sora_ffmpeg_overrides_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = ffmpeg_exe()
    monkeypatch.setenv("SORA_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(FfmpegNotFoundError, match="SORA_FFMPEG"):
        ffmpeg_exe()
    monkeypatch.setenv("SORA_FFMPEG", wheel)
    assert ffmpeg_exe() == wheel


@pytest.mark.parametrize(
    ("banner", "accepted"),
    [
        ("ffmpeg version 4.2.7-0ubuntu0.1 Copyright (c) 2000-2022", False),  # Ubuntu 20.04
        ("ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021", True),  # the floor
        ("ffmpeg version 5.1.9-0+deb12u1 Copyright (c) 2000-2026", True),  # Debian 12
        ("ffmpeg version N-112233-gabcdef Copyright (c) 2000-2026", True),  # a git build
    ],
)
def test_an_ffmpeg_older_than_4_4_is_refused_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, banner: str, accepted: bool
) -> None:
    fake = tmp_path / f"ffmpeg-{abs(hash(banner))}"  # a path per banner: versions are cached
    fake.write_text(f"#!/bin/sh\necho '{banner}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SORA_FFMPEG", str(fake))
    if accepted:
        assert ffmpeg_exe() == str(fake)
    else:
        with pytest.raises(FfmpegTooOldError, match=r"ffmpeg 4\.2 .* too old.*4\.4 or newer"):
            ffmpeg_exe()


def _header(path: Path) -> str:
    done = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60
    )
    return done.stderr


def test_any_format_mode_still_reads_ordinary_files(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mkv", duration_s=0.5, size=(64, 48))
    assert probe(path, MediaLimits(allowed_formats=None)).format_name == "matroska,webm"
    demuxers = ffmpeg_demuxers()
    assert {"mov", "matroska", "hls", "concat"} <= demuxers


def test_format_outside_the_allow_list(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mkv", duration_s=0.5, size=(64, 48))
    with pytest.raises(FormatNotAllowedError) as err:
        probe(path, MediaLimits(allowed_formats=("mov",)))
    assert "'matroska,webm'" in str(err.value) and "allowed_formats" in str(err.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_file_bytes": 0},
        {"max_duration_s": -1.0},
        {"timeout_s": 0.0},
        {"timeout_per_video_s": -0.5},
        {"allowed_formats": "mov"},
    ],
)
def test_limits_refuse_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        MediaLimits(**kwargs)  # type: ignore[arg-type]


def test_decode_budget_grows_with_the_video() -> None:
    limits = MediaLimits(timeout_s=100.0, timeout_per_video_s=0.5)
    assert limits.decode_timeout_s(0.0) == 100.0
    assert limits.decode_timeout_s(3600.0) == 1900.0


def test_frame_over_the_pixel_cap_is_named_when_the_header_has_no_size(tmp_path: Path) -> None:
    # MPEG-4 Part 2 in AVI: the frame size comes from decoding the first picture, which the
    # decoder refuses over -max_pixels, so the header has no size. The reason is the cap, not
    # "damaged or unsupported" (issue #9, defect 9).
    path = make_video(tmp_path / "v.avi", duration_s=0.2, size=(256, 256), codec="mpeg4")
    with pytest.raises(ResolutionTooLargeError) as err:
        probe(path, MediaLimits(max_pixels=128 * 128))
    message = str(err.value)
    assert "256x256" in message and "max_pixels" in message
    assert "damaged" not in message
