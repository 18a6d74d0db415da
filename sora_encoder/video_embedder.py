"""Video file -> Sora vectors: the pipeline shared by `sora embed` and the ingest workers.

    path --probe--> VideoInfo --plan_windows--> [Window]            (media, no model)
         --detect_content_box--> ContentBox     letterbox / frame borders (keyframes only)
         --iter_clips (one ffmpeg process, in a thread, borders cut)--> clips (T,S,S,3) uint8
         --batches of `batch_size`--> EncoderRuntime.encode_clips --> (N, D) segment vectors
    video vector = L2-normalised mean of the segment vectors

Decoding runs in a background thread so ffmpeg fills the next batch while the
encoder works on the current one; the queue is bounded so a fast decoder cannot
run ahead and hold a whole long video in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .media import (
    ContentBox,
    MediaLimits,
    VideoInfo,
    Window,
    detect_content_box,
    iter_clips,
    plan_windows,
    probe,
)
from .media.borders import FULL, QUERY_REGIONS
from .prefetch import prefetch
from .runtime import EncoderRuntime

__all__ = ["SegmentEmbedding", "VideoEmbedding", "VideoEmbedder"]


@dataclass(frozen=True)
class SegmentEmbedding:
    index: int
    start_s: float
    end_s: float
    vector: np.ndarray  # (D,) float32, unit norm


@dataclass(frozen=True)
class VideoEmbedding:
    info: VideoInfo
    model_version: str
    vector: np.ndarray  # (D,) float32, unit norm: normalised mean of the segment vectors
    segments: list[SegmentEmbedding] = field(default_factory=list)
    # The picture inside letterbox / frame borders that was embedded (FULL: the whole frame).
    box: ContentBox = FULL
    # Seconds: `encode_s` in the model; `decode_wait_s` the encoder waited for ffmpeg (the
    # decoding that overlap did not hide); `total_s` probe to last vector.
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self, file: str) -> dict[str, Any]:
        """The JSON of `sora embed --json` (which `sora search --vector-file` reads back):
        the video vector and each segment's, rounded to 6 decimals."""
        return {
            "file": file,
            "model_version": self.model_version,
            "duration_s": round(self.info.duration_s, 3),
            "dim": int(self.vector.shape[0]),
            "vector": [round(float(x), 6) for x in self.vector],
            "segments": [
                {
                    "index": s.index,
                    "start_s": round(s.start_s, 3),
                    "end_s": round(s.end_s, 3),
                    "vector": [round(float(x), 6) for x in s.vector],
                }
                for s in self.segments
            ],
        }


class VideoEmbedder:
    """Turns one video file into segment vectors and a video vector."""

    def __init__(
        self,
        runtime: EncoderRuntime,
        *,
        segment_s: float = 4.0,
        batch_size: int = 8,
        limits: MediaLimits | None = None,
        prefetch_batches: int = 2,
        remove_borders: bool = True,
    ) -> None:
        assert segment_s > 0, f"segment_s must be positive, got {segment_s}"
        assert batch_size > 0, f"batch_size must be positive, got {batch_size}"
        self.runtime = runtime
        self.segment_s = segment_s
        self.batch_size = batch_size
        self.limits = limits or MediaLimits()
        self.prefetch_batches = prefetch_batches
        # Cut letterbox / frame borders off before embedding (media/borders.py): a copy
        # with bars then shows the model the same picture as its original.
        self.remove_borders = remove_borders

    @property
    def model_version(self) -> str:
        return self.runtime.model_version

    def embed(
        self, path: str | Path, *, on_batch: Callable[[int, int], None] | None = None
    ) -> VideoEmbedding:
        """Embed one file. `on_batch(done, total)` runs after each encoded batch (the ingest
        worker renews its job lease and reports progress there); if it raises, work stops."""
        t0 = time.perf_counter()
        info = probe(path, self.limits)
        box, borders_s = self._content_box(path, info)
        emb = self._embed_box(path, info, box, on_batch)
        emb.timings.update(borders_s=borders_s, total_s=time.perf_counter() - t0)
        return emb

    def embed_regions(
        self,
        path: str | Path,
        regions: Sequence[ContentBox] = QUERY_REGIONS,
        *,
        whole: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> list[VideoEmbedding]:
        """The whole picture (unless `whole` is False), then each of `regions` (fractions of
        the picture inside the borders) embedded on its own: a query that may hold a library
        video as a part of its frame (picture in picture, split screen, a heavy crop). One
        decode and one encoder pass per region, so it costs (1 + len(regions)) x `embed`."""
        info = probe(path, self.limits)
        box, _ = self._content_box(path, info)
        boxes = [box] if whole else []
        return [
            self._embed_box(path, info, b, on_batch) for b in (*boxes, *map(box.inner, regions))
        ]

    def _content_box(self, path: str | Path, info: VideoInfo) -> tuple[ContentBox, float]:
        t0 = time.perf_counter()
        box = detect_content_box(path, info, self.limits) if self.remove_borders else FULL
        return box, time.perf_counter() - t0

    def _embed_box(
        self,
        path: str | Path,
        info: VideoInfo,
        box: ContentBox,
        on_batch: Callable[[int, int], None] | None,
    ) -> VideoEmbedding:
        t0 = time.perf_counter()
        windows = plan_windows(info.duration_s, self.segment_s)
        vectors: list[np.ndarray] = []
        encode_s = wait_s = 0.0
        batches = self._decoded_batches(path, info, windows, box)
        try:
            while True:
                t_wait = time.perf_counter()
                batch = next(batches, None)
                t_enc = time.perf_counter()
                wait_s += t_enc - t_wait
                if batch is None:
                    break
                vectors.append(self.runtime.encode_clips(batch))
                encode_s += time.perf_counter() - t_enc
                if on_batch is not None:
                    on_batch(sum(len(v) for v in vectors), len(windows))
        finally:
            batches.close()  # stops the decoding thread when we stop early
        xb = np.concatenate(vectors, axis=0)  # (N, D)
        assert xb.shape[0] == len(windows), (
            f"decoded {xb.shape[0]} clips for {len(windows)} windows of {path}"
        )
        segments = [
            SegmentEmbedding(w.index, w.start_s, w.end_s, xb[i]) for i, w in enumerate(windows)
        ]
        return VideoEmbedding(
            info=info,
            model_version=self.runtime.model_version,
            vector=mean_vector(xb),
            segments=segments,
            box=box,
            timings={
                "encode_s": encode_s,
                "decode_wait_s": wait_s,
                "total_s": time.perf_counter() - t0,
            },
        )

    def _decoded_batches(
        self, path: str | Path, info: VideoInfo, windows: list[Window], box: ContentBox
    ) -> Iterator[np.ndarray]:
        """Batches of (n<=batch_size, T, S, S, 3) uint8 clips, decoded in a background thread."""
        spec = self.runtime.input_spec

        def batches() -> Iterator[np.ndarray]:
            batch: list[np.ndarray] = []
            clips = iter_clips(
                path, info, windows, frames_per_clip=spec.frames, size=spec.size,
                limits=self.limits, box=box,
            )  # fmt: skip
            for clip in clips:
                batch.append(clip)
                if len(batch) == self.batch_size:
                    yield np.stack(batch)  # (n, T, S, S, 3)
                    batch = []
            if batch:
                yield np.stack(batch)

        return prefetch(batches, depth=self.prefetch_batches, name="sora-decode")


def mean_vector(xb: np.ndarray) -> np.ndarray:
    """L2-normalised mean of row vectors (N, D) -> (D,)."""
    assert xb.ndim == 2 and xb.shape[0] > 0, f"expected (N>0, D) vectors, got {xb.shape}"
    m = xb.astype(np.float64).mean(axis=0)
    n = np.linalg.norm(m)
    # Opposite segment vectors can cancel; fall back to the first segment, still unit norm.
    return (m / n).astype(np.float32) if n > 1e-12 else xb[0].astype(np.float32)
