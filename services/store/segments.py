"""Vector rows: segments and video embeddings, their bytes, and their tombstones.

    vector (d,) float32 --encode_vector--> little-endian bytes --decode_vector--> (d,) float32

Removing a vector row always appends a tombstone in the same transaction, so that every
FAISS copy can catch up with deletions (see services/index/source.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import numpy as np
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, defer

from services.errors import InvalidArgumentError

from .db import lock_vector_log
from .models import (
    MODEL_VERSION_LEN,
    Segment,
    VectorLevel,
    VectorTombstone,
    VideoEmbedding,
    utcnow,
)

# Vectors are unit-norm (the index searches by inner product); tolerance for bf16 rounding.
NORM_TOLERANCE = 1e-2


class SegmentVector(NamedTuple):
    """One window of a video and its vector; a plain (index, start_s, end_s, vector) tuple
    is accepted wherever this is."""

    index: int
    start_s: float
    end_s: float
    vector: np.ndarray  # (d,) float32, unit norm


def check_model_version(model_version: str) -> str:
    if not isinstance(model_version, str) or not model_version.strip():
        raise InvalidArgumentError("model_version must be a non-empty string")
    if len(model_version) > MODEL_VERSION_LEN:
        raise InvalidArgumentError(f"model_version longer than {MODEL_VERSION_LEN} characters")
    return model_version


def check_vector(vector: np.ndarray, *, name: str = "vector") -> np.ndarray:
    """A (d,) float32 unit vector, or TypeError / InvalidArgumentError saying what is wrong."""
    if not isinstance(vector, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(vector).__name__}")
    if vector.dtype != np.float32:
        raise TypeError(f"{name}: expected float32, got {vector.dtype}")
    if vector.ndim != 1 or vector.shape[0] == 0:
        raise InvalidArgumentError(f"{name}: expected shape (d,), got {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise InvalidArgumentError(f"{name}: contains NaN or inf")
    norm = float(np.linalg.norm(vector))
    if abs(norm - 1.0) > NORM_TOLERANCE:
        raise InvalidArgumentError(f"{name}: expected unit norm, got {norm:.4f}")
    return vector


def encode_vector(vector: np.ndarray) -> bytes:
    """(d,) float32 -> little-endian float32 bytes (the storage format on every platform)."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(data: bytes | memoryview) -> np.ndarray:
    """Bytes of one vector -> (d,) float32."""
    return np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)


def decode_vectors(blobs: Sequence[bytes | memoryview]) -> np.ndarray:
    """Bytes of n vectors of one dimension -> (n, d) float32, writable, one copy."""
    n = len(blobs)
    if n == 0:
        return np.empty((0, 0), dtype=np.float32)
    nbytes = len(blobs[0])
    if nbytes == 0 or nbytes % 4 or any(len(b) != nbytes for b in blobs):
        lengths = sorted({len(b) for b in blobs})
        raise ValueError(f"stored vectors have mixed or invalid byte lengths {lengths[:5]}")
    buffer = bytearray().join(blobs)  # bytearray: the array below is writable
    xb = np.frombuffer(buffer, dtype="<f4").reshape(n, nbytes // 4)  # (n, d)
    return xb.astype(np.float32, copy=False)


def stored_dim(session: Session, level: VectorLevel, model_version: str) -> int | None:
    """The dimension of the stored vectors of this level and model version (None: none)."""
    model = Segment if level is VectorLevel.SEGMENT else VideoEmbedding
    nbytes = session.scalar(
        select(func.length(model.vector)).where(model.model_version == model_version).limit(1)
    )
    return None if nbytes is None else int(nbytes) // 4


def _tombstone(
    session: Session, level: VectorLevel, model_version_by_id: dict[int, str], now: datetime
) -> None:
    if model_version_by_id:
        session.execute(
            insert(VectorTombstone),
            [
                {"level": level, "vector_id": i, "model_version": mv, "deleted_at": now}
                for i, mv in sorted(model_version_by_id.items())
            ],
        )


def delete_vectors(
    session: Session,
    video_id: int,
    *,
    model_version: str | None = None,
    now: datetime | None = None,
) -> int:
    """Remove the video's segment and video vectors (of one model version, or all) and
    tombstone their ids -> how many rows were removed. The caller holds the video row
    (SELECT ... FOR UPDATE), as delete_video and complete_ingest do."""
    now = now or utcnow()
    lock_vector_log(session)
    removed = 0
    for level, model in ((VectorLevel.SEGMENT, Segment), (VectorLevel.VIDEO, VideoEmbedding)):
        where = [model.video_id == video_id]
        if model_version is not None:
            where.append(model.model_version == model_version)
        rows = session.execute(select(model.id, model.model_version).where(*where)).all()
        if not rows:
            continue
        ids = dict(rows)
        # The same WHERE as the SELECT: the caller holds the video row, so no row of this
        # video appears in between, and a long video does not become a huge IN list.
        session.execute(
            delete(model).where(*where), execution_options={"synchronize_session": "fetch"}
        )
        _tombstone(session, level, ids, now)
        removed += len(ids)
    return removed


def write_vectors(
    session: Session,
    video_id: int,
    *,
    model_version: str,
    segments: Sequence[SegmentVector | tuple[int, float, float, np.ndarray]],
    video_vector: np.ndarray | None,
    now: datetime | None = None,
) -> tuple[list[int], int | None]:
    """Replace the video's vectors of `model_version` with these: old rows are deleted and
    tombstoned, new rows get new (larger) ids, so an index sees a delete and an add.
    Returns (segment ids in segment order, video vector id)."""
    check_model_version(model_version)
    rows = check_segments(segments)
    dims = {len(r.vector) for r in rows}
    if video_vector is not None:
        check_vector(video_vector, name="video_vector")
        dims.add(len(video_vector))
    if len(dims) > 1:
        raise InvalidArgumentError(f"vectors of one model version differ in dimension: {dims}")
    now = now or utcnow()
    lock_vector_log(session)
    for level, written in (
        (VectorLevel.SEGMENT, bool(rows)),
        (VectorLevel.VIDEO, video_vector is not None),
    ):
        d = stored_dim(session, level, model_version) if written else None
        if d is not None and d not in dims:
            raise InvalidArgumentError(
                f"stored {level.value} vectors of model version {model_version!r} have "
                f"d={d}, got d={min(dims)}"
            )
    delete_vectors(session, video_id, model_version=model_version, now=now)
    segment_ids: list[int] = []
    if rows:
        segment_ids = list(
            session.scalars(
                insert(Segment).returning(Segment.id, sort_by_parameter_order=True),
                [
                    {
                        "video_id": video_id,
                        "segment_index": r.index,
                        "start_s": r.start_s,
                        "end_s": r.end_s,
                        "vector": encode_vector(r.vector),
                        "model_version": model_version,
                    }
                    for r in rows
                ],
            )
        )
    video_vector_id = None
    if video_vector is not None:
        video_vector_id = session.scalar(
            insert(VideoEmbedding)
            .values(
                video_id=video_id,
                model_version=model_version,
                vector=encode_vector(video_vector),
            )
            .returning(VideoEmbedding.id)
        )
    return segment_ids, video_vector_id


def check_segments(
    segments: Iterable[SegmentVector | tuple[int, float, float, np.ndarray]],
) -> list[SegmentVector]:
    """Validate and sort by index: unique non-negative indexes, 0 <= start < end, unit
    float32 vectors of one dimension."""
    rows = [
        SegmentVector(
            _as_index(s[0]), float(s[1]), float(s[2]), check_vector(s[3], name=f"segment {s[0]}")
        )
        for s in segments
    ]
    rows.sort(key=lambda r: r.index)
    seen: set[int] = set()
    for r in rows:
        if r.index in seen:
            raise InvalidArgumentError(f"segment index {r.index} given twice")
        seen.add(r.index)
        if not (0.0 <= r.start_s < r.end_s) or not np.isfinite(r.end_s):
            raise InvalidArgumentError(f"segment {r.index}: bad times {r.start_s}..{r.end_s}")
    if len({len(r.vector) for r in rows}) > 1:
        raise InvalidArgumentError("segment vectors differ in dimension")
    return rows


def _as_index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidArgumentError(f"segment index {value!r}: expected an integer >= 0")
    return int(value)


def get_segments(session: Session, video_id: int, model_version: str) -> list[Segment]:
    """The video's segments of this model version, in time order (empty when none)."""
    return list(
        session.scalars(
            select(Segment)
            .where(Segment.video_id == video_id, Segment.model_version == model_version)
            .order_by(Segment.segment_index)
        )
    )


def get_video_embedding(
    session: Session, video_id: int, model_version: str
) -> VideoEmbedding | None:
    return session.scalar(
        select(VideoEmbedding).where(
            VideoEmbedding.video_id == video_id, VideoEmbedding.model_version == model_version
        )
    )


def segments_by_ids(
    session: Session, ids: Iterable[int], *, with_vectors: bool = False
) -> dict[int, Segment]:
    """Segment rows for FAISS ids (search hits -> video id, start/end). Missing ids (deleted
    since the index saw them) are absent from the result."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    stmt = select(Segment).where(Segment.id.in_(wanted))
    if not with_vectors:
        stmt = stmt.options(defer(Segment.vector, raiseload=True))
    return {s.id: s for s in session.scalars(stmt)}


def video_embeddings_by_ids(
    session: Session, ids: Iterable[int], *, with_vectors: bool = False
) -> dict[int, VideoEmbedding]:
    """Video-vector rows for FAISS ids at video level; missing ids are absent."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    stmt = select(VideoEmbedding).where(VideoEmbedding.id.in_(wanted))
    if not with_vectors:
        stmt = stmt.options(defer(VideoEmbedding.vector, raiseload=True))
    return {e.id: e for e in session.scalars(stmt)}
