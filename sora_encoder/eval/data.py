"""Evaluation data: manifests, and each file decoded once for every embedder.

    read_manifest(csv) / scan_folder(dir) -> [LabelledVideo(path, label, group)]
    embed_files(paths, embedders, views) -> Vectors
        for each file: probe -> 4-s windows -> decode_clips (ONE ffmpeg run) -> uint8 clips
            -> each view of the clips (e.g. frames in time order, and reversed)
            -> every embedder (embedders with equal keys are run once)
        segment vectors per (embedder, view, file); video vector = normalised mean

Decoding runs one file ahead in a thread while the embedders work; clips of several short
files are pooled into one batch so the encoder sees full batches, and are dropped once
embedded (memory holds one pool, not the collection).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sora_encoder.eval.splits import on_side
from sora_encoder.files import LabelledVideo, find_videos
from sora_encoder.media import (
    MediaError,
    MediaLimits,
    decode_clips,
    detect_content_box,
    plan_windows,
    probe,
)
from sora_encoder.media.borders import FULL
from sora_encoder.prefetch import prefetch
from sora_encoder.runtime import InputSpec
from sora_encoder.video_embedder import mean_vector

__all__ = [
    "FORWARD",
    "background_files",
    "REVERSED",
    "Vectors",
    "decode_file",
    "embed_files",
    "load_items",
    "read_manifest",
    "reverse_time",
    "scan_folder",
]

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_S = 4.0  # the service's segment length: video vector = mean of 4-s segments
POOL_CLIPS = 32  # clips pooled across files before the embedders run

View = Callable[[np.ndarray], np.ndarray]  # uint8 clips (n, T, S, S, 3) -> same shape


def reverse_time(clips: np.ndarray) -> np.ndarray:
    """The clips with their frames in reverse order: (n, T, S, S, 3), a copy."""
    return np.ascontiguousarray(clips[:, ::-1])


FORWARD: dict[str, View] = {"forward": lambda c: c}
REVERSED: dict[str, View] = {"reversed": reverse_time}


def read_manifest(
    path: str | os.PathLike, root: str | os.PathLike | None = None
) -> list[LabelledVideo]:
    """Items of a CSV with columns path,label,group[,duration_s]; relative paths are taken
    from `root` (default: the CSV's folder). ValueError for missing columns or empty groups;
    FileNotFoundError for a listed file that does not exist."""
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    items = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label", "group"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for n, row in enumerate(reader, start=2):
            file = base / row["path"]
            if not row["group"]:
                raise ValueError(f"{path}:{n}: empty group")
            if not file.is_file():
                raise FileNotFoundError(f"{path}:{n}: no such file {file}")
            dur = row.get("duration_s") or None
            items.append(
                LabelledVideo(
                    file.resolve(), row["label"], row["group"], float(dur) if dur else None
                )
            )
    return items


def scan_folder(root: str | os.PathLike) -> list[LabelledVideo]:
    """Every video file under `root` (by suffix), each its own group, unlabelled."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    base = root.resolve()
    return [LabelledVideo(p, "", p.relative_to(base).as_posix()) for p in find_videos([root])]


def load_items(
    root: str | os.PathLike, manifest: str | os.PathLike | None = None
) -> list[LabelledVideo]:
    """The videos of an evaluation folder: `manifest`'s rows if given, else those of
    root/MANIFEST.csv if present, else every video file under `root` (`scan_folder`)."""
    root = Path(root)
    found = Path(manifest) if manifest is not None else root / "MANIFEST.csv"
    if manifest is not None or found.is_file():
        return read_manifest(found, root=root)
    return scan_folder(root)


def background_files(
    manifest: str | os.PathLike | None,
    *,
    split: str = "train",
    folders: Sequence[str | os.PathLike] = (),
) -> list[tuple[Path, str]]:
    """(path, group) of a copy calibration's background videos: the manifest's rows on
    `split`'s side of the group split ("all": every row), then the videos under `folders`,
    each its own group."""
    files: list[tuple[Path, str]] = []
    if manifest is not None:
        files += [
            (item.path, item.group)
            for item in read_manifest(manifest)
            if on_side(item.group, split)
        ]
    files += [(p, f"file:{p}") for p in find_videos(folders)]
    return files


def decode_file(
    path: str | os.PathLike,
    spec: InputSpec,
    *,
    segment_s: float = DEFAULT_SEGMENT_S,
    limits: MediaLimits | None = None,
    borders: bool = True,
) -> np.ndarray:
    """uint8 (n_segments, T, S, S, 3): the clips the service would embed for this file
    (borders cut off as the service does; `borders=False` keeps the whole frame)."""
    limits = limits or MediaLimits()
    info = probe(path, limits)
    windows = plan_windows(info.duration_s, segment_s)
    box = detect_content_box(path, info, limits) if borders else FULL
    return decode_clips(
        path, info, windows, frames_per_clip=spec.frames, size=spec.size, limits=limits, box=box
    )


@dataclass
class Vectors:
    """Segment vectors by (embedder name, view), one (n_segments, D) array per file."""

    paths: list[Path]
    segments: dict[tuple[str, str], list[np.ndarray | None]] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)  # file -> reason it was skipped
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, per embedder

    def ok(self) -> list[int]:
        """Indices of the files that decoded."""
        return [i for i, p in enumerate(self.paths) if p not in self.failed]

    def videos(self, embedder: str, view: str = "forward", idx: Sequence[int] | None = None):
        """(n, D) float32 video vectors (normalised mean of segments) of files `idx`."""
        segs = self.segments[(embedder, view)]
        idx = self.ok() if idx is None else idx
        return np.stack([mean_vector(segs[i]) for i in idx]).astype(np.float32)


def _decoded(fn: Callable[[Path], np.ndarray], paths: Sequence[Path]) -> Iterator[tuple]:
    """(path, clips or the MediaError / FileNotFoundError it raised, seconds) per path."""
    for p in paths:
        t0 = time.perf_counter()
        try:
            out: object = fn(p)
        except (MediaError, FileNotFoundError) as exc:
            out = exc
        yield p, out, time.perf_counter() - t0


def embed_files(
    paths: Sequence[str | os.PathLike],
    embedders: Sequence,
    *,
    views: Mapping[str, View] | None = None,
    segment_s: float = DEFAULT_SEGMENT_S,
    limits: MediaLimits | None = None,
    pool_clips: int = POOL_CLIPS,
    progress: Callable[[int, int], None] | None = None,
) -> Vectors:
    """Decode every file once and run every embedder on every view of its clips.

    All embedders must want the same input spec. A file that cannot be decoded (a
    MediaError) is recorded in `Vectors.failed` and skipped; its entries stay None.
    """
    if not embedders:
        raise ValueError("no embedders")
    spec = embedders[0].input_spec
    if any(e.input_spec != spec for e in embedders):
        wanted = ", ".join(f"{e.name} {e.input_spec}" for e in embedders)
        raise ValueError(f"embedders want different input specs: {wanted}")
    views = dict(views or FORWARD)
    paths = [Path(p) for p in paths]
    if len(set(paths)) != len(paths):
        raise ValueError("paths must be distinct")
    vec = Vectors(paths=paths)
    unique: dict[str, object] = {}  # key -> the embedder that computes it
    for e in embedders:
        unique.setdefault(e.key, e)
    by_key: dict[tuple[str, str], list[np.ndarray | None]] = {
        (k, v): [None] * len(paths) for k in unique for v in views
    }
    for e in embedders:
        for v in views:
            vec.segments[(e.name, v)] = by_key[(e.key, v)]  # shared lists for shared keys
    timings = {"decode_s": 0.0, **{f"embed_{unique[k].name}_s": 0.0 for k in unique}}
    index = {p: i for i, p in enumerate(paths)}
    pool: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pool:
            return
        clips = np.concatenate([c for _, c in pool])  # (n, T, S, S, 3)
        counts = [len(c) for _, c in pool]
        for v, view in views.items():
            viewed = view(clips)
            for k, e in unique.items():
                t0 = time.perf_counter()
                out = e.embed_clips(viewed)  # (n, D)
                timings[f"embed_{e.name}_s"] += time.perf_counter() - t0
                for (i, _), part in zip(pool, np.split(out, np.cumsum(counts)[:-1]), strict=True):
                    by_key[(k, v)][i] = part
        pool.clear()

    decode = lambda p: decode_file(p, spec, segment_s=segment_s, limits=limits)  # noqa: E731
    for n, (p, out, dt) in enumerate(
        prefetch(lambda: _decoded(decode, paths), name="eval-decode"), start=1
    ):
        timings["decode_s"] += dt
        if isinstance(out, BaseException):
            log.warning("skipping %s: %s", p, out)
            vec.failed[p] = str(out)
        else:
            pool.append((index[p], out))
            if sum(len(c) for _, c in pool) >= pool_clips:
                flush()
        if progress is not None:
            progress(n, len(paths))
    flush()
    vec.timings = timings
    return vec
