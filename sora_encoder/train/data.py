"""Training data: video files -> decoded windows cached on disk -> a dataset of windows.

    files (find_videos, or a MANIFEST.csv split by group)
      -> ClipCache.load(path)   sha256 of the bytes + decode spec -> cache key
           hit:  <cache>/<key[:2]>/<key>.npy memory-mapped, no ffmpeg
           miss: probe, plan_windows(span), ONE ffmpeg pass (iter_clips) writing straight
                 into the .npy, then <key>.json (the entry is complete once the JSON exists)
      -> CachedVideo   frames uint8 (W, F, S, S, 3): W windows of F frames over `span_s`
      -> WindowDataset one item per window; `batch(indices)` -> uint8 (B, F, S, S, 3)

The key covers the file's content and every decode parameter, so a moved or renamed file
is still a hit and a changed frame count or size is a miss. A file's sha256 is remembered by
(path, size, mtime), so later runs do not hash an unchanged library again. Entries are written to a
temporary name and renamed, so concurrent or interrupted runs never leave a half entry.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sora_encoder.eval.splits import split_of
from sora_encoder.files import LabelledVideo, find_videos
from sora_encoder.media import MediaLimits, iter_clips, plan_windows, probe

logger = logging.getLogger(__name__)

CACHE_FORMAT = "sora-train-cache/1"
SPLITS = ("train", "test", "all")


# -- choosing files -------------------------------------------------------------------------------
def read_manifest(csv_path: str | os.PathLike) -> list[LabelledVideo]:
    """Rows of a MANIFEST.csv with at least `path` and `group` columns (`label` optional)."""
    csv_path = Path(csv_path)
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "group"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {sorted(missing)}")
        return [
            LabelledVideo((csv_path.parent / r["path"]).resolve(), r.get("label") or "", r["group"])
            for r in reader
        ]


def group_split(group: str, test_fraction: float = 0.2) -> str:
    """'test' for a `test_fraction` of groups, else 'train': the evaluation's split
    (`sora_encoder.eval.splits.split_of`), so training never sees a group that `sora eval`
    tests on. One definition: a hash of the group name alone, stable across machines."""
    return split_of(group, test_fraction=test_fraction)


def select_files(
    paths: Sequence[str | os.PathLike],
    *,
    manifest: str | os.PathLike | None = None,
    split: str = "all",
    test_fraction: float = 0.2,
    max_files: int | None = None,
    extra: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """The training files: `paths` (files or folders), or with a manifest its rows in
    `split` (restricted to `paths` when any are given); then the videos under `extra`,
    which no split applies to (e.g. synthetic videos). `max_files` keeps the first N."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if manifest is None:
        if split != "all":
            raise ValueError("--split needs a --manifest (groups decide the split)")
        files = find_videos(paths)
    else:
        rows = [
            r
            for r in read_manifest(manifest)
            if split == "all" or group_split(r.group, test_fraction) == split
        ]
        files = sorted({r.path for r in rows})
        if paths:
            allowed = set(find_videos(paths))
            files = [f for f in files if f in allowed]
    if extra:
        known = set(files)
        files += [f for f in find_videos(extra) if f not in known]
    return files[:max_files] if max_files is not None else files


# -- the cache ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeSpec:
    """What one cached window holds: `frames` frames of `size` x `size` over `span_s`."""

    frames: int  # F, e.g. 2T: room for the speed and offset augmentations
    size: int  # S_cache, a little above the model's input for random crops
    span_s: float  # window length; a video shorter than this is one shorter window


@dataclass(frozen=True)
class CachedVideo:
    path: str
    key: str
    windows: list[tuple[float, float]]  # (start_s, end_s) of each window
    npy: Path  # the cache file of the frames
    shape: tuple[int, ...]  # (W, F, S, S, 3)

    @property
    def frames(self) -> np.ndarray:
        """uint8 (W, F, S, S, 3), memory-mapped afresh on each access: a dataset of 10^5
        videos must not hold 10^5 maps open (Linux allows ~65k per process)."""
        return np.load(self.npy, mmap_mode="r")


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ClipCache:
    """Decoded training windows on disk, keyed by content hash and decode spec."""

    def __init__(
        self, root: str | os.PathLike, spec: DecodeSpec, *, limits: MediaLimits | None = None
    ) -> None:
        self.root = Path(root)
        self.spec = spec
        self.limits = limits or MediaLimits()
        self.decoded = 0  # entries this object decoded (misses), for reports and tests
        self._lock = threading.Lock()

    def content_hash(self, path: str | os.PathLike) -> str:
        """sha256 of the file, remembered under <cache>/sha256/ by (absolute path, size,
        mtime) so that a later run over a large library does not read every byte again."""
        st = os.stat(path)
        ident = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}"
        memo = self.root / "sha256" / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".txt")
        try:
            known = memo.read_text("ascii").strip()
            if len(known) == 64:
                return known
        except OSError:
            pass
        digest = file_sha256(path)
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(digest, "ascii")
        os.replace(tmp, memo)
        return digest

    def key(self, sha256: str) -> str:
        spec = json.dumps({"format": CACHE_FORMAT, **asdict(self.spec)}, sort_keys=True)
        return hashlib.sha256(f"{sha256}\0{spec}".encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.npy", d / f"{key}.json"

    def load(self, path: str | os.PathLike) -> CachedVideo:
        """The cached windows of `path`, decoding them first on a miss. Raises the media
        errors of `probe` / `iter_clips` for a file that cannot be used."""
        key = self.key(self.content_hash(path))
        npy, meta_file = self._paths(key)
        entry = self._read(path, key, npy, meta_file)
        if entry is None:
            self._decode(path, key, npy, meta_file)
            with self._lock:
                self.decoded += 1
            entry = self._read(path, key, npy, meta_file)
            assert entry is not None, f"cache entry {key} unreadable right after writing it"
        return entry

    def _read(self, path, key: str, npy: Path, meta_file: Path) -> CachedVideo | None:
        try:
            meta = json.loads(meta_file.read_text("utf-8"))
            frames = np.load(npy, mmap_mode="r")
        except (OSError, ValueError):
            return None  # a miss (or a damaged entry: decode it again)
        s = self.spec
        windows = [tuple(w) for w in meta["windows"]]
        if frames.dtype != np.uint8 or frames.shape != (len(windows), s.frames, s.size, s.size, 3):
            logger.warning("cache entry %s has shape %s; decoding again", npy, frames.shape)
            return None
        return CachedVideo(str(path), key, windows, npy, frames.shape)

    def _decode(self, path, key: str, npy: Path, meta_file: Path) -> None:
        s = self.spec
        info = probe(path, self.limits)
        # A remainder under half a span joins the window before it (at most 1.5 spans long).
        windows = plan_windows(info.duration_s, s.span_s, min_last_s=s.span_s / 2)
        npy.parent.mkdir(parents=True, exist_ok=True)
        tmp = npy.with_name(f"{npy.stem}.{uuid.uuid4().hex}.tmp.npy")
        try:
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(windows), s.frames, s.size, s.size, 3)
            )
            clips = iter_clips(
                path, info, windows, frames_per_clip=s.frames, size=s.size, limits=self.limits
            )
            for i, clip in enumerate(clips):
                out[i] = clip  # (F, S, S, 3)
            out.flush()
            del out
            os.replace(tmp, npy)
        finally:
            tmp.unlink(missing_ok=True)
        meta = {
            "format": CACHE_FORMAT,
            "spec": asdict(s),
            "source": str(path),
            "duration_s": info.duration_s,
            "windows": [[w.start_s, w.end_s] for w in windows],
        }
        tmp_meta = meta_file.with_name(f"{meta_file.name}.{uuid.uuid4().hex}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=1), "utf-8")
        os.replace(tmp_meta, meta_file)

    def load_many(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        workers: int = 2,
        on_file: Callable[[int, int, str, Exception | None], None] | None = None,
    ) -> tuple[list[CachedVideo], list[tuple[str, Exception]]]:
        """(entries in the order of `paths`, [(path, error)] for files that failed), with
        up to `workers` decodes at once (each is its own ffmpeg process).
        `on_file(done, total, path, error)` runs after each file."""
        from sora_encoder.media import MediaError

        def one(p) -> CachedVideo | Exception:
            try:
                return self.load(p)
            except (MediaError, OSError) as e:
                return e

        entries, failed = [], []
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for done, (p, got) in enumerate(zip(paths, pool.map(one, paths), strict=True), start=1):
                if isinstance(got, Exception):
                    failed.append((str(p), got))
                    logger.warning("skipping %s: %s", p, got)
                else:
                    entries.append(got)
                if on_file is not None:
                    on_file(done, len(paths), str(p), got if isinstance(got, Exception) else None)
        return entries, failed


# -- the dataset ----------------------------------------------------------------------------------
class WindowDataset(torch.utils.data.Dataset):
    """One item per cached window: uint8 frames (F, S, S, 3)."""

    def __init__(self, videos: Sequence[CachedVideo]) -> None:
        self.videos = list(videos)
        self.index = [
            (v, w) for v in range(len(self.videos)) for w in range(len(self.videos[v].windows))
        ]
        shapes = {v.shape[1:] for v in self.videos}
        assert len(shapes) <= 1, f"cached windows of different shapes: {shapes}"
        self.window_shape = shapes.pop() if shapes else (0, 0, 0, 3)  # (F, S, S, 3)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        v, w = self.index[i]
        return torch.from_numpy(np.array(self.videos[v].frames[w]))  # (F, S, S, 3) uint8

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 (B, F, S, S, 3): the windows `indices`, copied out of the memory maps."""
        assert len(self) > 0, "empty dataset"
        out = np.empty((len(indices), *self.window_shape), np.uint8)
        by_video: dict[int, list[tuple[int, int]]] = {}
        for k, i in enumerate(indices):
            v, w = self.index[i]
            by_video.setdefault(v, []).append((k, w))
        for v, items in by_video.items():  # one map per video and batch
            frames = self.videos[v].frames
            for k, w in items:
                out[k] = frames[w]
        return torch.from_numpy(out)

    def fingerprint(self) -> str:
        """A hash of the cache keys in order: the same files and decode spec give the same
        fingerprint, which `--resume` checks."""
        return hashlib.sha256("\n".join(v.key for v in self.videos).encode()).hexdigest()[:16]

    def seconds(self) -> float:
        return sum(e - s for v in self.videos for s, e in v.windows)
