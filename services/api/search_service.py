"""Similarity search over the serving model version's indexes.

query   a vector (d,)                                  -> xq = [v]
        a video id (its SQL vectors) / an uploaded clip (embedded here, same model)
                                                       -> Q (m, d) segments + video vector
stage 1 FAISS top-k' on the level's index (video: the video vector; segment: up to
        MAX_QUERY_ROWS of the query segments, evenly spaced, each id keeping its best
        score), then every id filtered through SQL (READY videos only, collection,
        tags, the query video) -- so a deleted video is gone from results at once.
        Over-fetch: k' = max(4 * wanted, 16), x4 per round until `wanted` hits pass the
        filters, the index is exhausted, the k'-th scores fall under min_score, or
        k' reaches MAX_FETCH.
stage 2 (a video id or a clip, alignment on) the first clamp(2 * top_k, 20, 200) candidate
        videos (stage 1 over-fetches for that many): align(Q, T_video) over their segment
        sequences (services.search.alignment); a candidate that aligns scores
            score = (first-stage score + alignment.score) / 2
        (alignment.score = mean similarity along the aligned path) and ranks above
        every candidate that does not align (those keep their first-stage score).
hits    video level: one per video with its best-matching segment (the aligned range,
        else the single most similar segment); segment level: one per segment.
        Times are seconds, from the segments' start/end.
stage 3 (a clip, video level, alignment on) the first REFINE_TOP aligned hits: their
        ranges placed to a fraction of a second by the clip's and the library file's
        frames (services.search.moments), when the library file is on this machine and
        its frames single out one offset; otherwise the segment-level range stays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from services.errors import ConflictError, InvalidArgumentError
from services.index import VectorIndex
from services.search.alignment import Alignment, adaptive_threshold, align
from services.search.copy_verdict import annotate_copies
from services.search.moments import refine_targets
from services.store import (
    Level,
    Segment,
    Store,
    Video,
    VideoEmbedding,
    VideoStatus,
    VideoTag,
    get_segments,
    get_video,
    get_video_embedding,
)
from sora_encoder.copy_score import CopyCalibration
from sora_encoder.media.thumbnails import Thumbnails, decode_thumbnails

from .call import Call
from .index_keeper import IndexKeeper
from .ingest_service import receive_file

logger = logging.getLogger(__name__)

MAX_TOP_K = 1000
OVER_FETCH = 4  # first round fetches this many times what is wanted, and grows by it
MIN_FETCH = 16
MAX_FETCH = 4096  # per query row
MAX_QUERY_ROWS = 32  # query segments used for stage 1 at segment level
RERANK_MIN, RERANK_MAX = 20, 200  # candidate videos aligned: clamp(2 * top_k)
SQL_CHUNK = 500  # ids per IN (...) list
SEGMENT_LOAD_CHUNK = 16  # videos whose segment vectors are loaded at once


class Embedder(Protocol):
    """What clip search needs of sora_encoder.VideoEmbedder."""

    model_version: str

    def embed(self, path: Any, *, on_batch: Callable[[int, int], None] | None = None) -> Any: ...

    def embed_regions(
        self, path: Any, *, on_batch: Callable[[int, int], None] | None = None
    ) -> list[Any]: ...


@dataclass(frozen=True)
class SearchOptions:
    level: Level = "video"
    top_k: int = 10
    collection: str | None = None
    tags: tuple[str, ...] = ()
    min_score: float | None = None
    exclude_query_video: bool = False
    alignment: bool = True
    # Clip queries: also search with the query's corner and centre regions (picture in
    # picture, split screens, heavy crops); 6x the embedding cost. See merge_variant_hits.
    regions: bool = False


@dataclass
class Hit:
    score: float
    video: Video
    segment_id: int | None = None
    target: tuple[float, float] | None = None  # seconds in the hit's video
    query: tuple[float, float] | None = None  # seconds in the query (sequence queries)
    alignment_score: float | None = None  # set when the candidate aligned
    first_stage_score: float = 0.0
    # Copy evidence (services/search/copy_verdict.py); None without a calibration.
    copy_score: float | None = None
    is_copy: bool | None = None


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model_version: str | None
    candidates: int  # ids the index returned before filters and re-ranking
    copy_threshold: float | None = None  # the verdicts' threshold; None: no calibration


@dataclass(frozen=True)
class Query:
    """A query in vectors. `segments`/`times` only for sequence queries (video id, clip)."""

    vector: np.ndarray  # (d,) unit
    segments: np.ndarray | None = None  # (m, d) unit, in time order
    times: list[tuple[float, float]] = field(default_factory=list)  # m (start_s, end_s)
    video_id: int | None = None  # the query video (video-id queries)


@dataclass
class _Candidate:
    vector_id: int
    video_id: int
    score: float
    query_row: int  # which query row gave the best score (index into the used rows)
    segment: tuple[int, float, float] | None = None  # (index, start_s, end_s), segment level


def _unit(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise InvalidArgumentError(f"{what} contains NaN or infinity")
    norm = float(np.linalg.norm(values))
    if norm == 0.0:
        raise InvalidArgumentError(f"{what} is all zeros")
    return (values / norm).astype(np.float32)


def _chunks(ids: Sequence[int], n: int = SQL_CHUNK) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), n):
        yield ids[i : i + n]


def _rank(hits: list[Hit]) -> list[Hit]:
    """Aligned hits first (re-ranked by the combined score), then the others, best first."""
    return sorted(hits, key=lambda h: (h.alignment_score is not None, h.score), reverse=True)


def _rows_unit(x: np.ndarray) -> np.ndarray:
    """Rows renormalised: stored vectors are unit within bf16 rounding, align() wants 1e-3."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class SearchService:
    def __init__(
        self,
        store: Store,
        keeper: IndexKeeper,
        *,
        embedder: Callable[[], Embedder] | None = None,
        clip_dir: Path | None = None,
        max_clip_bytes: int = 2 << 30,
        calibration: Callable[[str | None], CopyCalibration | None] | None = None,
    ) -> None:
        self.store = store
        self._calibration = calibration or (lambda version: None)
        self.keeper = keeper
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()  # loads it once
        self._embed_slot = threading.Semaphore(1)  # one clip at a time: the model uses every core
        self.clip_dir = clip_dir
        self.max_clip_bytes = max_clip_bytes

    # ------------------------------------------------------------------ queries
    def search_vector(
        self, values: Sequence[float] | np.ndarray, options: SearchOptions, call: Call | None = None
    ) -> SearchResult:
        opts = self._check_options(options)
        version, indexes = self._current()
        xq = np.asarray(values, dtype=np.float32).reshape(-1)
        if xq.size == 0:
            raise InvalidArgumentError("the query vector is empty")
        index = indexes.get(opts.level)
        if index is None:
            return SearchResult([], version, 0)  # nothing of this level is indexed yet
        if xq.size != index.dim:
            raise InvalidArgumentError(
                f"the query vector has {xq.size} values; model version {version} makes "
                f"{index.dim}-d vectors"
            )
        query = Query(vector=_unit(xq, "the query vector"))
        return self._search(query, opts, version, index, call or Call())

    def search_video(
        self, video_id: int, options: SearchOptions, call: Call | None = None
    ) -> SearchResult:
        opts = self._check_options(options)
        version, indexes = self._current()
        query, status = self._video_query(video_id, version)
        if query is None and status is VideoStatus.READY:
            # READY, but the keeper's sync has not seen its vectors yet (e.g. the first video
            # of a library): catch the index up once, here, and look again.
            self.keeper.catch_up()
            version, indexes = self.keeper.current()
            query, status = self._video_query(video_id, version)
        if query is None:
            raise ConflictError(
                f"video {video_id} has no vectors of the serving model version "
                f"{version} yet (status {status.value}); search again once its "
                "job has SUCCEEDED"
            )
        index = indexes.get(opts.level)
        if index is None:
            return SearchResult([], version, 0)
        return self._search(query, opts, version, index, call or Call())

    def search_clip(
        self,
        chunks: Iterable[bytes],
        options: SearchOptions,
        *,
        declared_size: int | None = None,
        call: Call | None = None,
    ) -> SearchResult:
        """Embed the uploaded clip with the configured model, then search as for a video.
        The clip is kept in a temporary file only while it is embedded."""
        call = call or Call()
        opts = self._check_options(options)
        if self.clip_dir is None or self._embedder_factory is None:
            raise ConflictError("search by clip is not enabled on this server")
        version, indexes = self._current()
        self._check_encoder(version)  # before a byte is received
        received = receive_file(
            chunks,
            self.clip_dir,
            cap=self.max_clip_bytes,
            call=call,
            declared_size=declared_size,
            what="the query clip",
        )
        try:
            embs = self._embed(received.path, call, regions=opts.regions)
            # the frames that place aligned matches to a fraction of a second (moments.py)
            # (video level: a segment-level hit is one segment by definition)
            refine = opts.alignment and opts.level == "video"
            thumbs = _query_thumbnails(received.path, embs[0]) if refine else None
        finally:
            received.path.unlink(missing_ok=True)
        for emb in embs:
            self._check_encoder(version, emb.model_version)
        if not embs[0].segments:
            raise InvalidArgumentError("the query clip gave no segments (is it empty?)")
        index = indexes.get(opts.level)
        if index is None:
            return SearchResult([], version, 0)
        results = [self._search(_clip_query(emb), opts, version, index, call) for emb in embs]
        result = (
            results[0] if len(results) == 1 else merge_variant_hits(results, opts.top_k, opts.level)
        )
        if thumbs is not None:
            call.check()
            refine_targets(result.hits, thumbs)
        return result

    # ------------------------------------------------------------------ stages
    def _current(self) -> tuple[str | None, dict[Level, VectorIndex]]:
        """The keeper's (version, indexes); when it serves nothing yet, it catches up once
        first, so the first READY video is found before the keeper's next sync."""
        version, indexes = self.keeper.current()
        if version is None:
            self.keeper.catch_up()
            version, indexes = self.keeper.current()
        return version, indexes

    def _video_query(self, video_id: int, version: str | None) -> tuple[Query | None, VideoStatus]:
        """The stored vectors of a video as a query (None when it has none of `version`),
        and its status. Raises NotFoundError for an unknown video."""
        with self.store.ReadSession.begin() as s:
            video = get_video(s, video_id)
            emb = get_video_embedding(s, video_id, version) if version else None
            segments = get_segments(s, video_id, version) if version else []
            if emb is None or not segments:
                return None, video.status
            query = Query(
                vector=emb.as_array(),
                segments=np.stack([g.as_array() for g in segments]),  # (m, d)
                times=[(g.start_s, g.end_s) for g in segments],
                video_id=video_id,
            )
            return query, video.status

    def _check_options(self, o: SearchOptions) -> SearchOptions:
        if o.level not in ("video", "segment"):
            raise InvalidArgumentError(f"level {o.level!r}: expected 'video' or 'segment'")
        if not 1 <= o.top_k <= MAX_TOP_K:
            raise InvalidArgumentError(f"top_k {o.top_k}: expected 1..{MAX_TOP_K}")
        if o.min_score is not None and not -1.0 <= o.min_score <= 1.0:
            raise InvalidArgumentError(f"min_score {o.min_score}: expected a cosine in [-1, 1]")
        tags = tuple(t.strip() for t in o.tags)
        if any(not t for t in tags):
            raise InvalidArgumentError("tags must be non-empty strings")
        return SearchOptions(
            o.level,
            o.top_k,
            o.collection,
            tags,
            o.min_score,
            o.exclude_query_video,
            o.alignment,
            o.regions,
        )

    def _search(
        self, query: Query, opts: SearchOptions, version: str | None, index: VectorIndex, call: Call
    ) -> SearchResult:
        if query.vector.shape[0] != index.dim:
            raise ConflictError(
                f"the query has {query.vector.shape[0]}-d vectors, the index {index.dim}-d"
            )
        sequence = query.segments is not None and len(query.segments) > 0
        rerank = sequence and opts.alignment
        depth = min(max(2 * opts.top_k, RERANK_MIN), RERANK_MAX) if rerank else opts.top_k
        if opts.level == "video" or not sequence:
            xq, rows = query.vector[None, :], [None]  # (1, d)
        else:
            assert query.segments is not None
            m = len(query.segments)
            picked = np.unique(np.linspace(0, m - 1, min(m, MAX_QUERY_ROWS)).round().astype(int))
            xq, rows = query.segments[picked], [int(i) for i in picked]  # (m', d)
        exclude = query.video_id if opts.exclude_query_video else None
        # One read transaction for the filters and the hits: one snapshot, one BEGIN.
        with self.store.ReadSession.begin() as s:
            cands, returned = self._retrieve(s, index, xq, opts, depth, exclude, call)
            call.check()
            if opts.level == "video":
                hits = self._video_hits(s, cands, query, opts, version, rerank, call)
            else:
                hits = self._segment_hits(s, cands, rows, query, opts, version, rerank, call)
        if opts.min_score is not None:
            hits = [h for h in hits if h.score >= opts.min_score]
        hits = hits[: opts.top_k]
        cal = self._calibration(version)
        if cal is not None and cal.dim == index.dim:
            # the segment rows the score is made of: the rows searched (segment level), or
            # every query segment when alignment mixed segment similarities in (video level)
            query_rows = xq if opts.level == "segment" and sequence else None
            if opts.level == "video" and rerank:
                query_rows = query.segments
            annotate_copies(
                hits, cal, level=opts.level, query_vector=query.vector, query_rows=query_rows
            )
            return SearchResult(hits, version, returned, copy_threshold=cal.threshold)
        return SearchResult(hits, version, returned)

    def _retrieve(
        self,
        s: Session,
        index: VectorIndex,
        xq: np.ndarray,
        opts: SearchOptions,
        wanted: int,
        exclude_video: int | None,
        call: Call,
    ) -> tuple[list[_Candidate], int]:
        """Stage 1 with over-fetch -> (candidates passing the filters, best first; how many
        distinct ids the index returned in the last round)."""
        ntotal = index.ntotal
        if ntotal == 0:
            return [], 0
        k = min(max(OVER_FETCH * wanted, MIN_FETCH), ntotal, MAX_FETCH)
        while True:
            call.check()
            D, I = index.search(xq, k)  # noqa: E741 - faiss's names; (m, k) each
            best: dict[int, tuple[float, int]] = {}
            for r in range(I.shape[0]):
                for score, i in zip(D[r].tolist(), I[r].tolist(), strict=True):
                    if i < 0:
                        continue
                    prev = best.get(i)
                    if prev is None or score > prev[0]:
                        best[i] = (score, r)
            ordered = sorted(best.items(), key=lambda kv: -kv[1][0])
            passing = self._filter(s, opts, [i for i, _ in ordered], exclude_video)
            cands = []
            for i, (score, r) in ordered:
                row = passing.get(i)
                if row is None or (opts.min_score is not None and score < opts.min_score):
                    continue
                cands.append(_Candidate(i, row[0], float(score), r, row[1]))
            found = len({c.video_id for c in cands}) if opts.level == "video" else len(cands)
            below_min = opts.min_score is not None and float(np.max(D[:, -1])) < opts.min_score
            if found >= wanted or k >= ntotal or k >= MAX_FETCH or below_min:
                return cands, len(best)
            k = min(k * OVER_FETCH, ntotal, MAX_FETCH)

    def _filter(
        self, s: Session, opts: SearchOptions, ids: Sequence[int], exclude_video: int | None
    ) -> dict[int, tuple[int, tuple[int, float, float] | None]]:
        """id -> (video id, segment (index, start, end) or None) for the ids whose video is
        READY and passes the filters.

        Two look-ups by key, the vector rows by id and then their videos by id, rather than
        one join: without planner statistics SQLite drove that join from the index on the
        videos' status, i.e. through every READY video (11 ms a search at 10^5 segments,
        growing with the library), where these stay a few index probes per id."""
        out: dict[int, tuple[int, tuple[int, float, float] | None]] = {}
        if not ids:
            return out
        segment = opts.level == "segment"
        model = Segment if segment else VideoEmbedding
        cols: list[Any] = [model.id, model.video_id]
        if segment:
            cols += [Segment.segment_index, Segment.start_s, Segment.end_s]
        where: list[Any] = [Video.status == VideoStatus.READY]
        if opts.collection:
            where.append(Video.collection == opts.collection)
        for tag in opts.tags:
            where.append(exists().where(VideoTag.video_id == Video.id, VideoTag.tag == tag))
        if exclude_video is not None:
            where.append(Video.id != exclude_video)
        rows: dict[int, Any] = {}
        for chunk in _chunks(list(ids)):
            rows.update((int(r[0]), r) for r in s.execute(select(*cols).where(model.id.in_(chunk))))
        passing: set[int] = set()
        for chunk in _chunks(sorted({int(r[1]) for r in rows.values()})):
            passing.update(s.scalars(select(Video.id).where(Video.id.in_(chunk), *where)))
        for i, row in rows.items():
            if int(row[1]) in passing:
                seg = (int(row[2]), float(row[3]), float(row[4])) if segment else None
                out[i] = (int(row[1]), seg)
        return out

    def _segments_of(
        self, s: Session, video_ids: Sequence[int], version: str | None
    ) -> dict[int, list[Segment]]:
        out: dict[int, list[Segment]] = {v: [] for v in video_ids}
        for chunk in _chunks(list(video_ids)):
            stmt = (
                select(Segment)
                .where(Segment.video_id.in_(chunk), Segment.model_version == version)
                .order_by(Segment.video_id, Segment.segment_index)
            )
            for seg in s.scalars(stmt):
                out[seg.video_id].append(seg)
        return out

    def _videos(self, s: Session, video_ids: Iterable[int]) -> dict[int, Video]:
        ids = sorted(set(video_ids))
        out: dict[int, Video] = {}
        for chunk in _chunks(ids):
            out.update({v.id: v for v in s.scalars(select(Video).where(Video.id.in_(chunk)))})
        return out

    def _align(self, query: Query, segments: list[Segment], threshold: float) -> Alignment | None:
        """align(Q, T) for one candidate video, or None when nothing aligns."""
        assert query.segments is not None
        T = np.stack([g.as_array() for g in segments])  # (n, d)
        return align(_rows_unit(query.segments), _rows_unit(T), threshold=threshold)

    def _threshold(self, query: Query, seg_lists: Iterable[list[Segment]]) -> float:
        """The query's alignment threshold, from its similarities to the first candidates'
        segments (mostly unrelated material): see `adaptive_threshold`."""
        assert query.segments is not None
        rows = [g.as_array() for its in seg_lists for g in its]
        if not rows:
            return adaptive_threshold(np.empty(0))
        return adaptive_threshold(_rows_unit(query.segments) @ _rows_unit(np.stack(rows)).T)

    def _query_range(self, query: Query, i0: int, i1: int) -> tuple[float, float]:
        return query.times[i0][0], query.times[i1][1]

    def _video_hits(
        self,
        s: Session,
        cands: list[_Candidate],
        query: Query,
        opts: SearchOptions,
        version: str | None,
        rerank: bool,
        call: Call,
    ) -> list[Hit]:
        depth = min(max(2 * opts.top_k, RERANK_MIN), RERANK_MAX) if rerank else opts.top_k
        cands = cands[: max(opts.top_k, depth)]
        videos = self._videos(s, [c.video_id for c in cands])
        hits = [Hit(c.score, videos[c.video_id], first_stage_score=c.score) for c in cands
                if c.video_id in videos]  # fmt: skip
        # Segment vectors a few videos at a time: a long video holds thousands.
        threshold: float | None = None
        for chunk in _chunks(hits[:depth], SEGMENT_LOAD_CHUNK):
            call.check()
            segs = self._segments_of(s, [h.video.id for h in chunk], version)
            if threshold is None and rerank:
                threshold = self._threshold(query, segs.values())
            for hit in chunk:
                its = segs.get(hit.video.id)
                if its:
                    self._place(hit, its, query, rerank, threshold)
        return _rank(hits)

    def _place(
        self, hit: Hit, its: list[Segment], query: Query, rerank: bool, threshold: float | None
    ) -> None:
        """Set a video-level hit's best segment and times (and its alignment)."""
        T = np.stack([g.as_array() for g in its])  # (n, d)
        if query.segments is not None:
            sims = query.segments @ T.T  # (m, n)
            qi, tj = np.unravel_index(int(np.argmax(sims)), sims.shape)
            hit.query = query.times[int(qi)]
        else:
            sims = (T @ query.vector)[None, :]  # (1, n)
            tj = int(np.argmax(sims[0]))
        best = its[int(tj)]
        hit.segment_id, hit.target = best.id, (best.start_s, best.end_s)
        if not rerank or threshold is None:
            return
        a = self._align(query, its, threshold)
        if a is None:
            return
        i0, i1 = (int(x) for x in a.query_range)
        j0, j1 = (int(x) for x in a.target_range)
        inside = sims[i0 : i1 + 1, j0 : j1 + 1]  # the aligned block
        _, tj = np.unravel_index(int(np.argmax(inside)), inside.shape)
        hit.segment_id = its[j0 + int(tj)].id
        hit.target = (its[j0].start_s, its[j1].end_s)
        hit.query = self._query_range(query, i0, i1)
        hit.alignment_score = float(a.score)
        hit.score = (hit.first_stage_score + float(a.score)) / 2.0

    def _segment_hits(
        self,
        s: Session,
        cands: list[_Candidate],
        rows: list[int | None],
        query: Query,
        opts: SearchOptions,
        version: str | None,
        rerank: bool,
        call: Call,
    ) -> list[Hit]:
        limit = min(max(2 * opts.top_k, RERANK_MIN), RERANK_MAX)
        cands = cands[: max(opts.top_k, limit if rerank else 0)]
        videos = self._videos(s, [c.video_id for c in cands])
        alignments: dict[int, Alignment | None] = {}
        if rerank:
            scope = list(dict.fromkeys(c.video_id for c in cands))[:limit]  # in rank order
            threshold: float | None = None
            for chunk in _chunks(scope, SEGMENT_LOAD_CHUNK):
                call.check()
                segs = self._segments_of(s, chunk, version)
                if threshold is None:
                    threshold = self._threshold(query, segs.values())
                for vid, its in segs.items():
                    if its:
                        alignments[vid] = self._align(query, its, threshold)
        hits: list[Hit] = []
        for c in cands:
            video = videos.get(c.video_id)
            if video is None or c.segment is None:
                continue
            index, start_s, end_s = c.segment
            hit = Hit(c.score, video, c.vector_id, (start_s, end_s), first_stage_score=c.score)
            row = rows[c.query_row] if c.query_row < len(rows) else None
            if row is not None:
                hit.query = query.times[row]
            a = alignments.get(c.video_id)
            if a is not None:
                j0, j1 = (int(x) for x in a.target_range)
                if j0 <= index <= j1:
                    hit.alignment_score = float(a.score)
                    hit.score = (c.score + float(a.score)) / 2.0
                    paired = [int(i) for i, j in a.path if int(j) == index]
                    if paired:
                        hit.query = self._query_range(query, min(paired), max(paired))
            hits.append(hit)
        return _rank(hits)

    # ------------------------------------------------------------------ clips
    def _get_embedder(self) -> Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                assert self._embedder_factory is not None
                logger.info("loading the encoder (configured model version, search by clip)")
                self._embedder = self._embedder_factory()
            return self._embedder

    def _check_encoder(self, serving: str | None, encoder: str | None = None) -> None:
        encoder = encoder or self.embedder_version()
        if serving is not None and encoder != serving:
            raise ConflictError(
                f"the server's encoder is model version {encoder} but the index serves "
                f"{serving} (a reindex is under way): search by clip works again once the "
                "reindex has finished"
            )

    def embedder_version(self) -> str | None:
        """The configured encoder's model version (loads the encoder once)."""
        if self._embedder_factory is None:
            return None
        return self._get_embedder().model_version

    def _embed(self, path: Path, call: Call, *, regions: bool = False) -> list[Any]:
        """[the clip's embedding] or, with `regions`, it and its regions' (embed_regions)."""
        from sora_encoder.media import MediaError

        embedder = self._get_embedder()
        while not self._embed_slot.acquire(timeout=0.1):  # one clip at a time
            call.check()
        try:
            call.check()
            try:
                check = lambda done, total: call.check()  # noqa: E731
                if regions:
                    return list(embedder.embed_regions(path, on_batch=check))
                return [embedder.embed(path, on_batch=check)]
            except MediaError as exc:
                raise InvalidArgumentError(f"the query clip cannot be used: {exc}") from None
        finally:
            self._embed_slot.release()


def _query_thumbnails(path: Path, emb: Any) -> Thumbnails | None:
    """The query clip's thumbnails inside its borders; None when they cannot be decoded
    (the search then keeps segment-level ranges)."""
    from sora_encoder.media import MediaError
    from sora_encoder.media.borders import FULL

    info = getattr(emb, "info", None)
    if info is None:  # an embedder that does not say what it decoded
        return None
    try:
        return decode_thumbnails(path, info, box=getattr(emb, "box", FULL))
    except (MediaError, OSError) as exc:
        logger.info("no query thumbnails for moment refinement: %s", exc)
        return None


def _clip_query(emb: Any) -> Query:
    return Query(
        vector=np.asarray(emb.vector, dtype=np.float32),
        segments=np.stack([np.asarray(g.vector, dtype=np.float32) for g in emb.segments]),
        times=[(float(g.start_s), float(g.end_s)) for g in emb.segments],
    )


def merge_variant_hits(results: Sequence[SearchResult], top_k: int, level: Level) -> SearchResult:
    """One result from the searches of a query's variants (whole picture, regions): per
    video (video level) or segment (segment level) the variant hit with the best evidence,
    best first. Evidence is the copy score when the model is calibrated (each variant is
    normalised by its own background similarity, so they compare), else the score."""

    def evidence(h: Hit) -> float:
        return h.copy_score if h.copy_score is not None else h.score

    best: dict[int, Hit] = {}
    for r in results:
        for h in r.hits:
            key = h.video.id if level == "video" else (h.segment_id or 0)
            if key not in best or evidence(h) > evidence(best[key]):
                best[key] = h
    hits = sorted(best.values(), key=evidence, reverse=True)[:top_k]
    first = results[0]
    return SearchResult(
        hits, first.model_version, sum(r.candidates for r in results), first.copy_threshold
    )
