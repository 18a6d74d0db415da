"""Similarity search: the RPCs' service class, a thin layer over the stages of
services.search (the pipeline module's docstring draws them):

    search_vector / search_vectors   vectors                  -> Query(vector)
    search_video / search_videos     stored vectors of videos -> Query(vector, segments)
    search_clip                      an upload, embedded here -> Query per variant
        -> options checked -> pipeline.run (retrieve, filter, re-rank, verdicts)
        -> clips: moments placed by frames (the query's thumbnails decoded only then)

What this class owns: the serving (version, indexes, catalogue) taken once per call, the
reads that are not in memory (the stored vectors of a query video, the candidates'
segment vectors), the query clip's file (kept until the search no longer needs it), and
the encoder (shared with the index keeper).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.errors import ConflictError, InvalidArgumentError, NotFoundError
from services.search import packed, pipeline
from services.search.moments import query_thumbnails, refine_targets
from services.search.options import (
    MAX_BATCH,
    MAX_TOP_K,
    check_batch_size,
    check_options,
    query_matrix,
    query_vector,
)
from services.search.packed import HitColumns
from services.search.pipeline import merge_variant_hits, wants_regions
from services.search.segments import held_segment_block, held_segment_rows
from services.search.types import Hit, Query, SearchOptions, SearchResult
from services.store import (
    SegmentRows,
    Store,
    VideoStatus,
    segment_rows,
    video_vectors,
    videos_by_ids,
)
from sora_encoder.copy_score import CopyCalibration

from .call import Call
from .coalesce import Coalescer
from .encoder import Embedder, EncoderHolder
from .index_keeper import IndexKeeper, Serving
from .ingest_service import receive_file

__all__ = ["MAX_BATCH", "MAX_TOP_K", "Embedder", "Hit", "SearchOptions", "SearchResult",
           "SearchService", "merge_variant_hits"]  # fmt: skip

logger = logging.getLogger(__name__)


class SearchService:
    def __init__(
        self,
        store: Store,
        keeper: IndexKeeper,
        *,
        encoder: EncoderHolder | None = None,
        embedder: Callable[[], Embedder] | None = None,
        clip_dir: Path | None = None,
        max_clip_bytes: int = 2 << 30,
        calibration: Callable[[str | None], CopyCalibration | None] | None = None,
    ) -> None:
        """encoder: the server's shared one; else one is made of `embedder` (a factory)."""
        self.store = store
        self.keeper = keeper
        self.encoder = encoder if encoder is not None else EncoderHolder(embedder)
        self.clip_dir = clip_dir
        self.max_clip_bytes = max_clip_bytes
        self._calibration = calibration or (lambda version: None)
        self._coalescer = Coalescer(self._segment_batch)

    # ------------------------------------------------------------------ queries
    def search_vector(
        self, values: Sequence[float] | np.ndarray, options: SearchOptions, call: Call | None = None
    ) -> SearchResult:
        opts, serving = check_options(options), self._serving()
        index = serving.indexes.get(opts.level)
        xq = query_vector(values, index.dim if index else None, serving.version)
        if index is not None and serving.catalogue is not None:
            (call or Call()).check()
            # with others arriving meanwhile, one batch (coalesce.py); alone, at once
            # the options a vector query uses (alignment, regions and exclude_query_video
            # do nothing here, so they do not split batches), and the serving state (a
            # Serving is made per call: its parts say whether two calls read the same)
            key = (opts.level, opts.top_k, opts.collection, opts.tags, opts.min_score,
                   opts.external_ids, opts.metadata_items,
                   serving.version, id(index), id(serving.catalogue))  # fmt: skip
            return self._coalescer.submit(key, (Query(vector=xq), serving, opts), call)
        return self._run([Query(vector=xq)], opts, serving, call)[0]

    def search_vectors(
        self, batch: Sequence[Sequence[float] | np.ndarray], options: SearchOptions,
        call: Call | None = None,
    ) -> list[SearchResult]:  # fmt: skip
        """SearchBatch by vectors: one result per vector, in order; one FAISS search."""
        queries, opts, serving = self._vector_batch(batch, options)
        return self._run(queries, opts, serving, call)

    def search_vectors_packed(
        self, batch: Sequence[Sequence[float] | np.ndarray], options: SearchOptions,
        call: Call | None = None,
    ) -> HitColumns:  # fmt: skip
        """search_vectors' hits as columns (SearchBatch with `packed`), by array code."""
        queries, opts, serving = self._vector_batch(batch, options)
        return self._run_packed(queries, opts, serving, call)

    def search_video(
        self, video_id: int, options: SearchOptions, call: Call | None = None
    ) -> SearchResult:
        return self.search_videos([video_id], options, call)[0]

    def search_videos(
        self, video_ids: Sequence[int], options: SearchOptions, call: Call | None = None
    ) -> list[SearchResult]:
        """By stored videos (SearchBatch by video ids): one result per id, in order."""
        queries, opts, serving = self._video_batch(video_ids, options)
        return self._run(queries, opts, serving, call)

    def search_videos_packed(
        self, video_ids: Sequence[int], options: SearchOptions, call: Call | None = None
    ) -> HitColumns:
        """search_videos' hits as columns (SearchBatch with `packed`)."""
        queries, opts, serving = self._video_batch(video_ids, options)
        return self._run_packed(queries, opts, serving, call)

    def _vector_batch(
        self, batch: Sequence[Sequence[float] | np.ndarray], options: SearchOptions
    ) -> tuple[list[Query], SearchOptions, Serving]:
        opts, serving = check_options(options), self._serving()
        index = serving.indexes.get(opts.level)
        X = query_matrix(batch, index.dim if index else None, serving.version)  # (n, d)
        return [Query(vector=x) for x in X], opts, serving

    def _video_batch(
        self, video_ids: Sequence[int], options: SearchOptions
    ) -> tuple[list[Query], SearchOptions, Serving]:
        """The stored videos as queries, once the serving indexes hold them."""
        opts = check_options(options)
        check_batch_size(len(video_ids), "video ids")
        serving = self._serving()
        queries, waiting = self._video_queries(video_ids, serving.version)
        if any(status is VideoStatus.READY for _, status in waiting):
            # READY, but the keeper's sync has not seen its vectors yet (e.g. the first video
            # of a library): catch the index up once, here, and look again.
            self.keeper.catch_up()
            serving = self.keeper.serving()
            queries, waiting = self._video_queries(video_ids, serving.version)
        if waiting:
            video_id, status = waiting[0]
            raise ConflictError(
                f"video {video_id} has no vectors of the serving model version "
                f"{serving.version} yet (status {status.value}); search again once its "
                "job has SUCCEEDED"
            )
        return queries, opts, serving

    def search_clip(
        self,
        chunks: Iterable[bytes],
        options: SearchOptions,
        *,
        declared_size: int | None = None,
        call: Call | None = None,
    ) -> SearchResult:
        """Embed the uploaded clip with the configured model, then search as for a video.
        The clip stays in a temporary file until the search no longer needs it."""
        call = call or Call()
        opts = check_options(options)
        if self.clip_dir is None or not self.encoder.enabled:
            raise ConflictError("search by clip is not enabled on this server")
        serving = self._serving()
        self._check_encoder(serving.version, self.encoder.version())  # before a byte comes
        path = receive_file(chunks, self.clip_dir, cap=self.max_clip_bytes, call=call,
                            declared_size=declared_size, what="the query clip").path  # fmt: skip
        try:
            whole = self.encoder.embed(path, call)
            self._check_encoder(serving.version, whole.model_version)
            if not whole.segments:
                raise InvalidArgumentError("the query clip gave no segments (is it empty?)")
            [result] = self._run([Query.of_embedding(whole)], opts, serving, call)
            if wants_regions(opts.regions, result):
                regions = self.encoder.embed_regions(path, call)
                more = self._run([Query.of_embedding(e) for e in regions], opts, serving, call)
                result = merge_variant_hits([result, *more], opts.top_k, opts.level)
            if opts.alignment and opts.level == "video":  # a segment hit is one segment
                call.check()
                refine_targets(result.hits, lambda: query_thumbnails(path, whole))
            return result
        finally:
            path.unlink(missing_ok=True)

    def embedder_version(self) -> str | None:
        """The configured encoder's model version (loads the encoder once)."""
        return self.encoder.version()

    def serving(self) -> Serving:
        """What searches serve now (the first READY video caught up, as for a search)."""
        return self._serving()

    def copy_calibration(self, version: str | None) -> CopyCalibration | None:
        """The copy calibration of a model version (None: hits carry no verdict)."""
        return self._calibration(version)

    # ------------------------------------------------------------------ internals
    def _serving(self) -> Serving:
        """The keeper's serving; when it serves nothing yet, it catches up once first, so
        the first READY video is found before the keeper's next sync."""
        serving = self.keeper.serving()
        if serving.version is None:
            self.keeper.catch_up()
            serving = self.keeper.serving()
        return serving

    def _segment_batch(
        self, key: tuple, items: Sequence[tuple[Query, Serving, SearchOptions]]
    ) -> list[SearchResult]:
        """Coalesced vector searches of one options and serving: the packed path's array
        code over them all, then hits, video-level ones placed on their best segments (the
        same hits as pipeline.run's)."""
        _, serving, opts = items[0]  # the key's: every item's, as far as vectors go
        queries = [q for q, _, _ in items]
        if opts.level == "segment":  # a few queries: loops over lists (packed.run_rows)
            return self._stages(packed.run_rows, lambda results: results, queries, opts,
                                serving, None)  # fmt: skip
        cols = self._run_packed(queries, opts, serving, None)
        assert serving.catalogue is not None  # checked by search_vector
        results = packed.to_results(cols, serving.catalogue.video, placed=opts.level == "segment")
        if opts.level == "video":
            segment_index = serving.indexes.get("segment")  # its held vectors, by one block
            packed.place_video_hits(
                results, queries, lambda ids: self._segments(ids, serving),
                held=lambda ids: held_segment_block(serving.catalogue, segment_index, ids),  # type: ignore[arg-type]
            )  # fmt: skip
        return results

    def _run(
        self, queries: list[Query], opts: SearchOptions, serving: Serving, call: Call | None
    ) -> list[SearchResult]:
        return self._stages(pipeline.run, lambda results: results, queries, opts, serving, call)

    def _run_packed(
        self, queries: list[Query], opts: SearchOptions, serving: Serving, call: Call | None
    ) -> HitColumns:
        def as_columns(results: list[SearchResult]) -> HitColumns:
            return packed.of_results(results, serving.version)

        return self._stages(packed.run_packed, as_columns, queries, opts, serving, call)

    def _stages(
        self, run: Callable[..., Any], nothing: Callable[[list[SearchResult]], Any],
        queries: list[Query], opts: SearchOptions, serving: Serving, call: Call | None,
    ) -> Any:  # fmt: skip
        """`run` (pipeline.run or packed.run_packed) over what this call serves; with
        nothing of the level indexed yet, `nothing` of an empty result per query."""
        index = serving.indexes.get(opts.level)
        if index is None or serving.catalogue is None:  # nothing of this level indexed yet
            return nothing([SearchResult([], serving.version, 0) for _ in queries])
        return run(
            queries, opts, index=index, catalogue=serving.catalogue,
            load=lambda video_ids: self._segments(video_ids, serving),
            version=serving.version, calibration=self._calibration(serving.version),
            check=(call or Call()).check,
        )  # fmt: skip

    def _segments(self, video_ids: Sequence[int], serving: Serving) -> Mapping[int, SegmentRows]:
        """The videos' segment rows: from memory where the serving indexes hold them,
        the rest from SQL (services.search.segments)."""
        held, missing = {}, list(video_ids)
        if serving.catalogue is not None:
            index = serving.indexes.get("segment")
            held, missing = held_segment_rows(serving.catalogue, index, video_ids)
        if missing:
            with self.store.ReadSession.begin() as s:
                held.update(segment_rows(s, missing, serving.version))
        return held

    def _video_queries(
        self, video_ids: Sequence[int], version: str | None
    ) -> tuple[list[Query], list[tuple[int, VideoStatus]]]:
        """The stored vectors of each video as a query, and (id, status) of those without
        vectors of `version`. NotFoundError for an unknown video. Three reads for the whole
        batch (videos, video vectors, segments), not three per video."""
        queries, waiting = [], []
        with self.store.ReadSession.begin() as s:
            videos = {v.id: v for v in videos_by_ids(s, video_ids)}
            vectors = video_vectors(s, video_ids, version) if version else {}
            segments = segment_rows(s, video_ids, version) if version else {}
        for video_id in video_ids:
            video = videos.get(video_id)
            if video is None or video.status is VideoStatus.DELETED:
                raise NotFoundError(f"video {video_id} not found")
            rows = segments.get(video_id)
            if video_id not in vectors or rows is None or len(rows.ids) == 0:
                waiting.append((video_id, video.status))
                continue
            queries.append(Query(
                vector=vectors[video_id],
                segments=rows.xb,  # (m, d), in time order
                times=[(float(a), float(b)) for a, b in zip(rows.start_s, rows.end_s,
                                                            strict=True)],
                video_id=video_id,
            ))  # fmt: skip
        return queries, waiting

    def _check_encoder(self, serving: str | None, encoder: str | None) -> None:
        if serving is not None and encoder != serving:
            raise ConflictError(
                f"the server's encoder is model version {encoder} but the index serves "
                f"{serving} (a reindex is under way): search by clip works again once the "
                "reindex has finished"
            )
