"""Generate small test videos with ffmpeg's lavfi sources (no sample files in the repo).

    make_video(tmp_path / "a.mp4", duration_s=2, fps=25, size=(160, 120))
    make_video(tmp_path / "p.webm", codec="libvpx-vp9", size=(120, 160), rotation=90)
    make_audio(tmp_path / "a.m4a")
    make_counter_video(tmp_path / "c.mp4", fps=12)   # frame n shows n: read_counter(clip)

The container follows the file suffix. `rotation` is clockwise degrees, the convention of
`VideoInfo.rotation`: the file stores the picture as generated and asks players to turn it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sora_encoder.media import ffmpeg_exe, ffmpeg_version, probe

_TIMEOUT_S = 120

# Fast settings per encoder: tests want small files quickly, not quality.
_CODEC_ARGS: dict[str, list[str]] = {
    "libx264": ["-preset", "ultrafast"],
    "libx265": ["-preset", "ultrafast", "-x265-params", "log-level=error"],
    "mpeg4": ["-q:v", "5"],
    "libvpx-vp9": ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "0", "-crf", "40"],
    "libvpx": ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
    "mjpeg": ["-q:v", "5"],
    "ffv1": [],
}
_AUDIO_CODEC = {".webm": "libopus", ".ogg": "libvorbis", ".avi": "libmp3lame"}


def make_video(
    path: str | Path,
    *,
    duration_s: float = 2.0,
    fps: float | str | Fraction = 25,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    rotation: int | None = None,
    source: str = "testsrc2",
    audio: bool = False,
    vf: str | None = None,
    pix_fmt: str | None = None,
    extra: Sequence[str] = (),
    variable_rate: bool = False,
) -> Path:
    """Write a `duration_s` video of lavfi `source` at `size` (w, h) and `fps` to `path`.

    `fps` may be a string such as "30000/1001". `vf` is a filter chain applied to the
    source (e.g. a `geq` pattern); `extra` are more output options (e.g. "-qp", "0").
    `variable_rate` writes the frames with the timestamps `vf` gave them (no duplicates).
    """
    path = Path(path)
    w, h = size
    rate = str(fps)
    if pix_fmt is None:
        # 4:2:0 needs even sides; odd sizes keep full chroma so the encoders accept them.
        pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if w % 2 or h % 2:
            pix_fmt = "yuvj444p" if codec == "mjpeg" else "yuv444p"
    sep = ":" if "=" in source else "="  # "color=c=red" already has options
    args = ["-f", "lavfi", "-t", f"{duration_s}", "-i", f"{source}{sep}size={w}x{h}:rate={rate}"]
    if audio:
        args += ["-f", "lavfi", "-t", f"{duration_s}", "-i", "sine=frequency=440:sample_rate=48000"]
    # Most sources round odd sizes down to even ones; scale back to exactly what was asked.
    filters = [f"scale={w}:{h},setsar=1"] if w % 2 or h % 2 else []
    filters += [vf] if vf else []
    if filters:
        args += ["-vf", ",".join(filters)]
    args += ["-c:v", codec, *_CODEC_ARGS.get(codec, []), "-pix_fmt", pix_fmt, *extra]
    if variable_rate:  # keep the timestamps that `vf` made; some releases default to CFR
        args += ["-fps_mode", "vfr"] if ffmpeg_version() >= (5, 1) else ["-vsync", "vfr"]
    if audio:
        args += ["-c:a", _AUDIO_CODEC.get(path.suffix, "aac"), "-shortest"]
    if not rotation:
        _ffmpeg([*args, str(path)])
        return path
    plain = path.with_name(path.stem + ".unrotated" + path.suffix)
    _ffmpeg([*args, str(plain)])
    set_rotation(plain, path, rotation)
    plain.unlink()
    return path


COUNTER_BITS = 8
_BAND = f"floor(Y*{COUNTER_BITS}/H)"
# Luma 235 in band b when bit b of the frame number N is set, else 16.
COUNTER_FILTER = f"format=yuv420p,geq=lum='16+219*mod(floor(N/pow(2\\,{_BAND}))\\,2)':cb=128:cr=128"


def make_counter_video(
    path: str | Path,
    *,
    duration_s: float = 2.0,
    fps: float | str | Fraction = 25,
    codec: str = "libx264",
    side: int = 128,
    rotation: int | None = None,
    then: str | None = None,
) -> Path:
    """A square video whose frame n shows n (mod 256) in binary: 8 horizontal bands, band b
    (from the top) white when bit b is set. Survives lossy codecs and scaling, so a test
    can tell exactly which frame a decoder returned (`read_counter`). `then` is a filter
    chain applied after the counter is drawn (e.g. a `select` that makes the rate variable).
    """
    return make_video(
        path,
        duration_s=duration_s,
        fps=fps,
        size=(side, side),
        codec=codec,
        source="color=c=black",
        vf=COUNTER_FILTER + (f",{then}" if then else ""),
        rotation=rotation,
        variable_rate=then is not None,
    )


def read_counter(frames: np.ndarray) -> np.ndarray:
    """Frame numbers shown by counter frames of shape (..., S, S, 3) -> (...) ints."""
    side = frames.shape[-2]
    rows = [int((b + 0.5) * side / COUNTER_BITS) for b in range(COUNTER_BITS)]
    bits = frames[..., rows, side // 2, 1] > 128  # green: grey is equal in R, G, B
    return (bits * (1 << np.arange(COUNTER_BITS))).sum(axis=-1)


def set_rotation(src: str | Path, dst: str | Path, rotation: int) -> Path:
    """Copy `src` to `dst` with a display rotation of `rotation` degrees clockwise."""
    if ffmpeg_version() >= (6, 0):
        # -display_rotation is counter-clockwise, hence the minus.
        _ffmpeg(["-display_rotation", str(-rotation), "-i", str(src), "-c", "copy", str(dst)])
    else:
        # Older ffmpeg writes the display matrix from the legacy `rotate` tag, but some
        # releases (4.2) store the opposite angle: write it, read it back, flip if needed.
        for angle in (rotation, -rotation):
            tag = f"rotate={angle % 360}"
            _ffmpeg(["-i", str(src), "-c", "copy", "-metadata:s:v:0", tag, str(dst)])
            if probe(dst).rotation == rotation % 360:
                break
    return Path(dst)


def make_audio(path: str | Path, *, duration_s: float = 1.0, cover: bool = False) -> Path:
    """An audio-only file; with `cover`, an MJPEG cover picture (an "attached pic") too."""
    path = Path(path)
    args = ["-f", "lavfi", "-t", f"{duration_s}", "-i", "sine=frequency=440:sample_rate=44100"]
    if cover:
        args += ["-f", "lavfi", "-i", "color=c=red:size=64x64:duration=0.04"]
        args += ["-map", "0", "-map", "1", "-c:v", "mjpeg", "-disposition:v", "attached_pic"]
    codec = {".mp3": "libmp3lame", ".ogg": "libvorbis", ".wav": "pcm_s16le"}.get(path.suffix, "aac")
    _ffmpeg([*args, "-c:a", codec, str(path)])
    return path


class PopenSpy:
    """Records every process started through subprocess.Popen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Install the spy for one test; `monkeypatch` undoes it."""
        self.procs: list[subprocess.Popen[bytes]] = []
        real = subprocess.Popen
        spy = self

        class Recording(real):  # type: ignore[valid-type, misc]
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[arg-type]
                spy.procs.append(self)

        monkeypatch.setattr(subprocess, "Popen", Recording)

    def all_reaped(self) -> bool:
        return all(p.returncode is not None for p in self.procs)


def ffmpeg_run(args: Sequence[str], *, timeout: float = _TIMEOUT_S) -> bytes:
    """Run ffmpeg with `args` (no executable); returns stdout, raises with stderr on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr!r}")
    return done.stdout


def _ffmpeg(args: Sequence[str]) -> None:
    ffmpeg_run(args)
