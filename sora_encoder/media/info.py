"""VideoInfo: the probe facts of one video file. Its own module because both the prober
(`probe`, which fills it) and the limits (`limits.check_video`, which judge it) need it, and
the prober needs the limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoInfo:
    """Probe facts of one video file (its first real video stream)."""

    path: str
    duration_s: float  # container duration, or measured when the header has none
    fps: float  # average frame rate; 0.0 when ffmpeg prints none
    width: int  # display size in pixels after rotation: the size of decoded frames
    height: int
    rotation: int  # clockwise degrees a player turns the stored picture (0, 90, 180, 270)
    codec: str  # ffmpeg decoder name, e.g. "h264"
    n_video_streams: int  # real video streams (cover art not counted)
    has_audio: bool
    size_bytes: int
    format_name: str = ""  # ffmpeg demuxer names, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    sample_aspect_ratio: float = 1.0  # pixel aspect after rotation; display = width * sar
    video_index: int = 0  # which video stream is decoded: the K in `-map 0:v:K`

    @property
    def display_aspect(self) -> float:
        """Width / height as shown to a viewer (rotation and non-square pixels applied)."""
        return self.width * self.sample_aspect_ratio / self.height
