"""Embeddings out to files: what `sora export` writes from ListEmbeddings pages.

    client.iter_embeddings(...) -> pb.Embeddings (video metadata + vectors), page by page
      -> rows: one per segment (level "segment"), or one per video (level "video")
      -> parquet   one file: metadata columns + `vector` (fixed_size_list<float32>[d]),
                   written a row group per page (memory holds one page)
      -> npy       PATH.npy: (n, d) float32, row i = line i of PATH.rows.jsonl (JSON Lines,
                   one object of metadata per row: lists and maps need no escaping rules,
                   unlike CSV); vectors go to a temporary raw file first, as n is only
                   known at the end

Columns (parquet) / keys (jsonl): video_id, external_id, uri, title, original_name,
original_path, collection, tags (list), user_metadata (map), model_version, level,
segment_id, segment_index, start_s, end_s (segment rows; a video row has segment_id and
segment_index -1, start_s 0 and end_s its duration).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from services.api.gen.sora.v1 import sora_pb2 as pb

Format = Literal["parquet", "npy"]
Level = Literal["segment", "video"]
FORMATS: tuple[Format, ...] = ("parquet", "npy")
ROWS_PER_GROUP = 8192  # parquet row group (and write batch) size


@dataclass(frozen=True)
class ExportSummary:
    rows: int
    videos: int
    dim: int
    files: tuple[Path, ...]
    model_version: str


def sidecar_path(out: Path) -> Path:
    """The rows file beside a .npy: emb.npy -> emb.rows.jsonl."""
    return out.with_suffix(".rows.jsonl")


def _rows(item: pb.Embeddings, level: Level) -> Iterator[tuple[dict[str, Any], Any]]:
    v = item.video
    meta = {
        "video_id": item.video_id,
        "external_id": v.external_id,
        "uri": v.uri,
        "title": v.title,
        "original_name": v.original_name,
        "original_path": v.original_path,
        "collection": v.collection,
        "tags": list(v.tags),
        "user_metadata": dict(sorted(v.user_metadata.items())),
        "model_version": item.model_version,
        "level": level,
    }
    if level == "video":
        if item.video_vector:
            yield {**meta, "segment_id": -1, "segment_index": -1, "start_s": 0.0,
                   "end_s": v.duration_s}, item.video_vector  # fmt: skip
        return
    for s in item.segments:
        yield {**meta, "segment_id": s.segment_id, "segment_index": s.index,
               "start_s": s.start_s, "end_s": s.end_s}, s.vector  # fmt: skip


def _batches(
    items: Iterable[pb.Embeddings], level: Level, versions: set[str], videos: list[int]
) -> Iterator[tuple[list[dict[str, Any]], np.ndarray]]:
    """(row metadata, (n, d) float32 vectors) in batches of about ROWS_PER_GROUP."""
    meta: list[dict[str, Any]] = []
    vecs: list[Any] = []
    for item in items:
        versions.add(item.model_version)
        if len(versions) > 1:
            raise ValueError(f"model versions mix in one export: {sorted(versions)}")
        videos.append(item.video_id)
        for m, vec in _rows(item, level):
            meta.append(m)
            vecs.append(vec)
        if len(meta) >= ROWS_PER_GROUP:
            yield meta, np.asarray(vecs, dtype=np.float32)  # (n, d)
            meta, vecs = [], []
    if meta:
        yield meta, np.asarray(vecs, dtype=np.float32)


def export_embeddings(
    items: Iterable[pb.Embeddings], out: str | os.PathLike, *, fmt: Format, level: Level
) -> ExportSummary:
    """Write every row of `items` to `out` (see the module docstring) -> what was written.
    ValueError when nothing matched (no file is left) or model versions mix."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {FORMATS}")
    if level not in ("segment", "video"):
        raise ValueError(f"level {level!r}: expected 'segment' or 'video'")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    versions: set[str] = set()
    videos: list[int] = []
    batches = _batches(items, level, versions, videos)
    if fmt == "parquet":
        rows, dim, files = _write_parquet(batches, out)
    else:
        rows, dim, files = _write_npy(batches, out)
    return ExportSummary(rows, len(videos), dim, files, next(iter(versions), ""))


def _write_parquet(
    batches: Iterator[tuple[list[dict[str, Any]], np.ndarray]], out: Path
) -> tuple[int, int, tuple[Path, ...]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows, dim = 0, 0
    tmp = out.with_name(out.name + ".part")
    try:
        for meta, xb in batches:
            dim = xb.shape[1]
            table = pa.Table.from_pylist(meta, schema=_schema(pa, dim, with_vector=False))
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(xb.reshape(-1)), dim)
            table = table.append_column("vector", vectors)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table, row_group_size=ROWS_PER_GROUP)
            rows += len(meta)
        if writer is None:
            raise ValueError("nothing to export: no READY video with vectors matches")
        writer.close()
        os.replace(tmp, out)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows, dim, (out,)


def _schema(pa: Any, dim: int, *, with_vector: bool) -> Any:
    fields = [
        ("video_id", pa.int64()), ("external_id", pa.string()), ("uri", pa.string()),
        ("title", pa.string()), ("original_name", pa.string()),
        ("original_path", pa.string()), ("collection", pa.string()),
        ("tags", pa.list_(pa.string())), ("user_metadata", pa.map_(pa.string(), pa.string())),
        ("model_version", pa.string()), ("level", pa.string()), ("segment_id", pa.int64()),
        ("segment_index", pa.int32()), ("start_s", pa.float64()), ("end_s", pa.float64()),
    ]  # fmt: skip
    if with_vector:
        fields.append(("vector", pa.list_(pa.float32(), dim)))
    return pa.schema(fields)


def _write_npy(
    batches: Iterator[tuple[list[dict[str, Any]], np.ndarray]], out: Path
) -> tuple[int, int, tuple[Path, ...]]:
    sidecar = sidecar_path(out)
    rows, dim = 0, 0
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp_dir:
        raw_path = Path(tmp_dir) / "vectors.raw"
        jsonl_tmp = Path(tmp_dir) / "rows.jsonl"
        with open(raw_path, "wb") as raw, open(jsonl_tmp, "w", encoding="utf-8") as lines:
            for meta, xb in batches:
                if dim and xb.shape[1] != dim:
                    raise ValueError(f"vector dimensions differ: {dim} and {xb.shape[1]}")
                dim = xb.shape[1]
                raw.write(np.ascontiguousarray(xb, dtype="<f4").tobytes())
                for m in meta:
                    lines.write(json.dumps(m, ensure_ascii=False) + "\n")
                rows += len(meta)
        if rows == 0:
            raise ValueError("nothing to export: no READY video with vectors matches")
        npy_tmp = Path(tmp_dir) / "vectors.npy"
        xb_out = np.lib.format.open_memmap(npy_tmp, mode="w+", dtype="<f4", shape=(rows, dim))
        xb_out[:] = np.memmap(raw_path, dtype="<f4", mode="r", shape=(rows, dim))  # (n, d)
        xb_out.flush()
        del xb_out
        os.replace(npy_tmp, out)
        os.replace(jsonl_tmp, sidecar)
    return rows, dim, (out, sidecar)
