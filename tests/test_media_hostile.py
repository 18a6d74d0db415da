"""Hostile and broken input: each case fails fast with its own MediaError, never a hang,
never a network connection, never a process left behind."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sora_encoder.media import (
    DecodeTimeoutError,
    FormatNotAllowedError,
    MediaError,
    MediaLimits,
    NoVideoStreamError,
    ResolutionTooLargeError,
    UndecodableMediaError,
    decode_clips,
    plan_windows,
    probe,
)
from sora_encoder.media import command as command_module
from sora_encoder.media.limits import DEFAULT_LIMITS
from tests.media_factory import PopenSpy, ffmpeg_run, make_audio, make_video

# Every failure below takes tens of milliseconds; this bound catches a hang or a retry loop.
FAST_S = 5.0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[PopenSpy]:
    """Spies on ffmpeg processes; after the test, every one must have been reaped."""
    recorder = PopenSpy(monkeypatch)
    yield recorder
    assert recorder.all_reaped(), "an ffmpeg process was left running or unreaped"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP port nobody should connect to."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.2)
    yield sock
    sock.close()


def assert_untouched(sock: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        conn, _ = sock.accept()
        conn.close()


def fails_fast(
    expected: type[BaseException], path: Path, limits: MediaLimits = DEFAULT_LIMITS
) -> BaseException:
    start = time.monotonic()
    with pytest.raises(expected) as err:
        info = probe(path, limits)
        decode_clips(path, info, plan_windows(info.duration_s), limits=limits)
    assert time.monotonic() - start < FAST_S
    return err.value


def hls_playlist(path: Path, segment_url: str) -> Path:
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
        f"#EXTINF:2.0,\n{segment_url}\n#EXT-X-ENDLIST\n"
    )
    return path


def test_hls_playlist_with_a_network_segment(
    tmp_path: Path, listener: socket.socket, spy: PopenSpy
) -> None:
    port = listener.getsockname()[1]
    playlist = hls_playlist(tmp_path / "p.m3u8", f"http://127.0.0.1:{port}/seg0.ts")
    err = fails_fast(FormatNotAllowedError, playlist)
    assert "'hls'" in str(err) and "never accepted" in str(err)
    assert_untouched(listener)


def test_hls_is_refused_even_when_all_formats_are_allowed(
    tmp_path: Path, listener: socket.socket, spy: PopenSpy
) -> None:
    port = listener.getsockname()[1]
    playlist = hls_playlist(tmp_path / "p.m3u8", f"http://127.0.0.1:{port}/seg0.ts")
    fails_fast(FormatNotAllowedError, playlist, MediaLimits(allowed_formats=None))
    assert_untouched(listener)


def test_protocol_whitelist_alone_blocks_the_network(
    tmp_path: Path, listener: socket.socket, spy: PopenSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Second lock: even with the hls demuxer let through, the segment URL is not fetched.
    monkeypatch.setattr(command_module, "ALWAYS_REFUSED_FORMATS", frozenset())
    # sys.modules: `sora_encoder.media.probe` is the function, which shadows its module.
    probe_module = sys.modules["sora_encoder.media.probe"]
    monkeypatch.setattr(probe_module, "ALWAYS_REFUSED_FORMATS", frozenset())
    port = listener.getsockname()[1]
    playlist = hls_playlist(tmp_path / "p.m3u8", f"http://127.0.0.1:{port}/seg0.ts")
    fails_fast(UndecodableMediaError, playlist, MediaLimits(allowed_formats=("hls", "mpegts")))
    assert_untouched(listener)


def test_hls_playlist_naming_a_local_file(tmp_path: Path, spy: PopenSpy) -> None:
    segment = make_video(tmp_path / "seg0.ts", duration_s=1.0, size=(64, 48))
    playlist = hls_playlist(tmp_path / "p.m3u8", str(segment))
    fails_fast(FormatNotAllowedError, playlist)


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/x.mp4", "{local}"])
def test_ffconcat_list(tmp_path: Path, listener: socket.socket, spy: PopenSpy, target: str) -> None:
    local = make_video(tmp_path / "real.mp4", duration_s=1.0, size=(64, 48))
    url = target.format(port=listener.getsockname()[1], local=local)
    listing = tmp_path / "list.ffconcat"
    listing.write_text(f"ffconcat version 1.0\nfile '{url}'\n")
    err = fails_fast(FormatNotAllowedError, listing)
    assert "'concat'" in str(err)
    assert_untouched(listener)


def test_random_bytes(tmp_path: Path, spy: PopenSpy) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(os.urandom(50_000))
    err = fails_fast(UndecodableMediaError, path)
    assert "ffmpeg cannot read the file" in str(err)
    assert "Invalid data found when processing input" in str(err)
    assert str(tmp_path) not in str(err)  # the reason does not echo the server's path


def test_text_file(tmp_path: Path, spy: PopenSpy) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the frames you are looking for\n" * 100)
    fails_fast(UndecodableMediaError, path)


def test_empty_file_is_refused_before_ffmpeg(tmp_path: Path, spy: PopenSpy) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    err = fails_fast(UndecodableMediaError, path)
    assert "empty" in str(err)
    assert spy.procs == []


def test_missing_file(tmp_path: Path, spy: PopenSpy) -> None:
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")
    assert spy.procs == []


def test_missing_file_at_decode(tmp_path: Path, spy: PopenSpy) -> None:
    path = make_video(tmp_path / "v.mp4", duration_s=1.0, size=(64, 48))
    info = probe(path)
    path.unlink()
    with pytest.raises(FileNotFoundError):
        decode_clips(path, info, plan_windows(info.duration_s))


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_not_a_regular_file(tmp_path: Path, spy: PopenSpy, kind: str) -> None:
    path = tmp_path / "thing.mp4"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)  # ffmpeg would block on it forever
    err = fails_fast(UndecodableMediaError, path)
    assert "not a regular file" in str(err)
    assert spy.procs == []


def test_audio_only(tmp_path: Path, spy: PopenSpy) -> None:
    err = fails_fast(NoVideoStreamError, make_audio(tmp_path / "a.m4a"))
    assert "audio (aac)" in str(err)


def test_audio_with_cover_art(tmp_path: Path, spy: PopenSpy) -> None:
    err = fails_fast(NoVideoStreamError, make_audio(tmp_path / "song.mp3", cover=True))
    assert "cover picture" in str(err)


def test_truncated_mp4_without_its_index(tmp_path: Path, spy: PopenSpy) -> None:
    # The moov atom (the index) is written last, so cutting the file loses it.
    whole = make_video(tmp_path / "whole.mp4", duration_s=3.0, size=(96, 64))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    err = fails_fast(UndecodableMediaError, cut)
    assert "moov atom not found" in str(err)


def test_truncated_mp4_with_its_index_first(tmp_path: Path, spy: PopenSpy) -> None:
    # With +faststart the index survives: the header promises 8 s, the data stops early.
    whole = make_video(
        tmp_path / "whole.mp4", duration_s=8.0, size=(96, 64), extra=["-movflags", "+faststart"]
    )
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    assert probe(cut).duration_s == pytest.approx(8.0, abs=0.1)
    err = fails_fast(UndecodableMediaError, cut)
    assert "truncated or damaged" in str(err) and "8.00 s video" in str(err)


def test_probe_time_out(tmp_path: Path, spy: PopenSpy) -> None:
    path = make_video(tmp_path / "v.mp4", duration_s=1.0, size=(64, 48))
    before = len(spy.procs)
    err = fails_fast(DecodeTimeoutError, path, MediaLimits(probe_timeout_s=0.001))
    assert "probe_timeout_s" in str(err)
    assert len(spy.procs) == before + 1 and spy.procs[-1].returncode == -9  # killed


def test_a_file_name_that_looks_like_an_option_or_a_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ["-y.mp4", "http:x.mp4", "concat:a.mp4"]:
        path = make_video(tmp_path / "src.mp4", duration_s=0.5, size=(64, 48))
        path.rename(tmp_path / name)
        info = probe(name)  # a relative path, exactly as a careless caller would pass it
        assert (info.width, info.height) == (64, 48)


def test_every_media_error_has_a_readable_message(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError) as err:
        probe(path)
    assert isinstance(err.value.message, str) and len(err.value.message) > 10
    assert err.value.path == str(path)


def test_generated_hls_with_a_real_local_stream_is_refused(tmp_path: Path, spy: PopenSpy) -> None:
    # A genuine HLS package made by ffmpeg itself: refused all the same.
    src = make_video(tmp_path / "src.mp4", duration_s=2.0, size=(64, 48))
    playlist = tmp_path / "stream.m3u8"
    ffmpeg_run(["-i", str(src), "-c", "copy", "-f", "hls", "-hls_time", "1", str(playlist)])
    fails_fast(FormatNotAllowedError, playlist)


def test_resolution_that_grows_after_the_header(tmp_path: Path, spy: PopenSpy) -> None:
    # A decompression bomb in miniature: a small picture in the header, a larger one later.
    path = tmp_path / "grow.h264"
    with path.open("wb") as f:
        for side in (64, 256):
            mp4 = make_video(tmp_path / f"s{side}.mp4", duration_s=1.0, size=(side, side))
            f.write(ffmpeg_run(["-i", str(mp4), "-c", "copy", "-f", "h264", "pipe:1"]))
    limits = MediaLimits(max_pixels=128 * 128)
    assert probe(path, limits).width == 64  # the header alone passes
    err = fails_fast(ResolutionTooLargeError, path, limits)
    assert "256x256" in str(err) and "max_pixels" in str(err)
