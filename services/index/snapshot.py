"""Index snapshots on disk: written atomically, verified on load.

    snapshot_dir/
      {level}-{model_version}.manifest.json          the commit point (JSON, see Manifest)
      {level}-{model_version}.{sha256[:16]}.faiss    the index it names (faiss.write_index;
                                                     a RefinedIndex: an npz with its codes)

Writing: the index goes to a temporary file in the same folder, is fsynced, hashed and
renamed to its content-addressed name; then the manifest is written the same way and
renamed over the old one; then the folder is fsynced and index files no manifest names are
deleted. A crash at any point leaves the previous manifest and the index it names intact.

Loading checks what can go wrong and raises SnapshotError with the reason: no manifest,
unreadable JSON, another format/level/model version/dimension/metric, a missing index file,
a sha256 mismatch (bit flips, truncation), an unreadable index, or an index whose ntotal or
dimension disagrees with the manifest. One writer per snapshot folder. Whether the snapshot
was made from THIS store (`source_id`, `sample`) is checked by VectorIndex, which has it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_args

import faiss

from services.index import faiss_index as fi
from services.index.factory import IndexKind

log = logging.getLogger(__name__)

FORMAT = 1
METRIC_NAME = "inner_product"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SnapshotError(Exception):
    """A snapshot that cannot be served; the message says why."""


@dataclass(frozen=True)
class Manifest:
    level: str
    model_version: str
    dim: int
    factory: str  # faiss index_factory string (METRIC_INNER_PRODUCT)
    kind: str  # IndexChoice.kind
    nlist: int  # 0 for exact
    search_params: dict[str, int]  # applied after load, e.g. {"nprobe": 32}; {} for exact
    watermark: int  # highest SQL row id held
    tombstone_seq: int  # highest tombstone sequence applied
    count: int  # vectors held (index.ntotal)
    n_at_build: int  # vectors when the index was built/trained
    recall_at_10: float  # against exact search, measured at build (1.0 for exact)
    built_at: str  # ISO time of the build
    faiss_version: str
    metric: str = METRIC_NAME
    index_file: str = ""  # file name in the snapshot folder; "" until saved
    sha256: str = ""  # of index_file; "" until saved
    created_at: str = ""  # ISO time the snapshot was written; "" until saved
    format: int = FORMAT
    extra: dict[str, Any] = field(default_factory=dict)
    # What the index was filled from (checked by VectorIndex, which has the source): the
    # store's identity, and sampled rows' digests {str(id): sha256(id, vector)[:16]}.
    source_id: str = ""
    sample: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("manifest is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        missing -= data.keys()
        if missing:
            raise ValueError(f"manifest lacks {sorted(missing)}")
        manifest = cls(**{key: value for key, value in data.items() if key in names})
        for key, kind in _FIELD_TYPES.items():
            value = getattr(manifest, key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"manifest {key} is {value!r}, not {kind}")
        if manifest.kind not in get_args(IndexKind):
            raise ValueError(f"manifest kind {manifest.kind!r} is not one of {get_args(IndexKind)}")
        for key, value in manifest.search_params.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"manifest search_params[{key!r}] is {value!r}, not an int")
        return manifest


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("level", "model_version", "factory", "kind", "index_file"), str),
    **dict.fromkeys(("sha256", "built_at", "faiss_version", "metric", "created_at"), str),
    "source_id": str,
    "sample": dict,
    **dict.fromkeys(("dim", "nlist", "watermark", "tombstone_seq", "count"), int),
    **dict.fromkeys(("n_at_build", "format"), int),
    "recall_at_10": (int, float),
    "search_params": dict,
    "extra": dict,
}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stem(level: str, model_version: str) -> str:
    for name, value in (("level", level), ("model_version", model_version)):
        if not _SAFE_NAME.match(value):
            raise ValueError(f"{name} {value!r} is not a safe file name part ([A-Za-z0-9._-])")
    return f"{level}-{model_version}"


def manifest_path(snapshot_dir: Path, level: str, model_version: str) -> Path:
    return Path(snapshot_dir) / f"{stem(level, model_version)}.manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    """Rename a fully written, fsynced temporary file into place and fsync the folder."""
    os.replace(tmp, final)
    _fsync_path(final.parent)


def _tmp_path(folder: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{prefix}.", suffix=".tmp", dir=folder)
    os.close(fd)
    return Path(name)


def save(
    snapshot_dir: Path | str, index: faiss.Index | bytes | memoryview, manifest: Manifest
) -> Manifest:
    """Write `index` (or its bytes, fi.serialize_index, taken by a caller that must hold
    off mutations while it copies) and its manifest atomically; returns the manifest."""
    folder = Path(snapshot_dir)
    folder.mkdir(parents=True, exist_ok=True)
    base = stem(manifest.level, manifest.model_version)
    if not isinstance(index, (bytes, memoryview)):
        if index.ntotal != manifest.count or index.d != manifest.dim:
            raise ValueError(
                f"index (ntotal={index.ntotal}, d={index.d}) disagrees with its manifest "
                f"(count={manifest.count}, dim={manifest.dim})"
            )
        index = fi.serialize_index(index)
    tmp_index = _tmp_path(folder, base)
    tmp_manifest: Path | None = None
    try:
        with open(tmp_index, "wb") as f:
            f.write(index)
        _fsync_path(tmp_index)
        digest = sha256_file(tmp_index)
        index_file = f"{base}.{digest[:16]}.faiss"
        _publish(tmp_index, folder / index_file)

        written = dataclasses.replace(
            manifest, index_file=index_file, sha256=digest, created_at=utc_now()
        )
        tmp_manifest = _tmp_path(folder, base)
        with open(tmp_manifest, "w", encoding="utf-8") as f:
            f.write(written.to_json())
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp_manifest, manifest_path(folder, manifest.level, manifest.model_version))
    finally:
        for tmp in (tmp_index, tmp_manifest):
            if tmp is not None and tmp.exists():
                tmp.unlink()
    for old in folder.glob(f"{base}.*.faiss"):
        if old.name != index_file:
            old.unlink(missing_ok=True)
    log.info("snapshot %s written: %d vectors, %s", index_file, written.count, written.factory)
    return written


def load(
    snapshot_dir: Path | str, level: str, model_version: str, dim: int
) -> tuple[faiss.Index, Manifest]:
    """Read and verify a snapshot; raises SnapshotError saying why it cannot be served.
    Read again once if the manifest changed meanwhile: another process (the snapshot
    writer of `sora serve --api-processes`) replaced the snapshot, unlinking the file
    being read, which would otherwise cost a rebuild from SQL."""
    path = manifest_path(Path(snapshot_dir), level, model_version)
    before = _text_or_none(path)
    try:
        return _load_once(snapshot_dir, level, model_version, dim)
    except SnapshotError:
        if before is None or _text_or_none(path) in (before, None):
            raise
        log.info("snapshot %s was replaced while being read: reading the new one", path.name)
        return _load_once(snapshot_dir, level, model_version, dim)


def _text_or_none(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _load_once(
    snapshot_dir: Path | str, level: str, model_version: str, dim: int
) -> tuple[faiss.Index, Manifest]:
    folder = Path(snapshot_dir)
    path = manifest_path(folder, level, model_version)
    if not path.exists():
        raise SnapshotError(f"no snapshot manifest at {path}")
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as e:
        raise SnapshotError(f"unreadable manifest {path}: {e}") from e
    expected = {
        "format": FORMAT,
        "level": level,
        "model_version": model_version,
        "dim": dim,
        "metric": METRIC_NAME,
    }
    for key, want in expected.items():
        got = getattr(manifest, key)
        if got != want:
            raise SnapshotError(f"manifest {key} is {got!r}, expected {want!r}")
    if not manifest.index_file or Path(manifest.index_file).name != manifest.index_file:
        raise SnapshotError(f"manifest names no valid index file: {manifest.index_file!r}")
    index_path = folder / manifest.index_file
    if not index_path.exists():
        raise SnapshotError(f"index file {index_path} is missing")
    digest = sha256_file(index_path)
    if digest != manifest.sha256:
        raise SnapshotError(f"sha256 of {index_path} is {digest}, manifest says {manifest.sha256}")
    try:
        index = fi.read_index(str(index_path))
    except (RuntimeError, OSError) as e:  # OSError: the file went (replaced meanwhile)
        raise SnapshotError(f"faiss cannot read {index_path}: {e}") from e
    if index.d != dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise SnapshotError(f"index has d={index.d}, metric={index.metric_type}; want {dim}, IP")
    if index.ntotal != manifest.count:
        raise SnapshotError(f"index holds {index.ntotal} vectors, manifest says {manifest.count}")
    nlist = _nlist(index)
    if nlist != manifest.nlist or (nlist == 0) != (manifest.kind == "exact"):
        raise SnapshotError(
            f"index has {nlist} lists, manifest says {manifest.kind} with {manifest.nlist}"
        )
    return index, manifest


def _nlist(index: faiss.Index) -> int:
    try:
        return int(fi.ivf_of(index).nlist)
    except RuntimeError:
        return 0
