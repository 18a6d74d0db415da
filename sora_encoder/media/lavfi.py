"""Videos made from ffmpeg's synthetic (lavfi) sources: the demo's samples and the
synthetic training videos. Written atomically, so an interrupted run leaves no half file."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sora_encoder.media.binary import ffmpeg_exe


def write_lavfi_video(
    graph: str, path: str | Path, *, duration_s: float | None = None, timeout_s: float = 120.0
) -> Path:
    """Render the lavfi `graph` into `path` as H.264 (yuv420p) MP4, `duration_s` long when
    given (else the graph decides). The file appears only once ffmpeg succeeded:
    subprocess.CalledProcessError / TimeoutExpired otherwise, and nothing is left behind."""
    output = ["-t", f"{duration_s:g}"] if duration_s is not None else []
    return write_h264(["-f", "lavfi", "-i", graph], path, output=output, timeout_s=timeout_s)


def write_h264(
    inputs: list[str], path: str | Path, *, output: list[str] = (), timeout_s: float = 120.0
) -> Path:
    """Encode ffmpeg `inputs` (its input options) into `path` as H.264 (yuv420p) MP4, with
    `output` options (filters, frame count) before the file; atomic as write_lavfi_video."""
    path = Path(path)
    # Not a video suffix: a file left by a killed run is never taken for a video.
    tmp = path.with_name(path.name + ".tmp")
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *inputs]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", *output]
    try:
        subprocess.run(
            [*cmd, "-f", "mp4", str(tmp)], check=True, capture_output=True, timeout=timeout_s
        )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
