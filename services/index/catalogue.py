"""The catalogue of servable videos: what search filters on and what its hits show, in
memory, so that no search call reads SQL to filter or to describe a hit.

    videos   video id -> VideoInfo (status, collection, tags, external id, user metadata,
             title, uri, probe facts, ...), READY videos only
    places   per level, vector id -> (video id, segment index, start_s, end_s): sorted id
             arrays (36 bytes a vector), looked up through an id table (id_positions.py)
    segments video id -> its segment vector ids (a dict of small arrays): which rows of
             the segment index make up a video, for placing video-level hits in memory
    filters  per collection / tags filter, a flag per video id it admits (filter_mask),
             and from those a bit per vector id (vector_bits) that FAISS tests as it scans

Kept current by the sync that catches the FAISS index up (IndexSet.sync ->
sync_catalogue), with the same two watermarks and one of its own:

    tombstones after tombstone_seq  -> drop those vector ids; their videos are re-read
    vector rows after the watermark -> add their places; their videos are read
    video changes after change_seq  -> their videos are re-read (a metadata-only edit:
                                       new tags, external id, user metadata; no vector moves)
    the videos read (under the lock) -> READY ones in, any other status out

A delete does not wait for that: the API calls remove_video() once DeleteVideo's
transaction has committed, before it returns. The lock makes the two orders safe: a sync
reads video rows and applies them while holding it, so a delete either lands after the
sync's read has already seen the row (and removes what it put in) or before it (and the
read sees DELETED).

Readers take no lock: the dict, the arrays and the filter masks are replaced whole, never
changed in place; the per-video segment ids dict is changed in place one entry at a time
(each a whole new array), which a reader of one entry survives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from services.index.id_positions import IdPositions, positions_for
from services.store import (
    LEVELS,
    Level,
    Store,
    VectorPlaces,
    Video,
    VideoStatus,
    ready_videos,
    vector_places,
    vector_source,
    video_changes,
    videos_by_ids,
)

logger = logging.getLogger(__name__)

PLACES_BATCH = 65_536  # vector rows read per query while catching up
MAX_FILTER_MASKS = 32  # filters whose admitted-video flags are kept (see filter_mask)


def flags_at(mask: np.ndarray, video_ids: np.ndarray) -> np.ndarray:
    """(n,) bool: mask[id] per id, False for ids outside it (-1, or newer than the mask)."""
    ids = np.asarray(video_ids, dtype=np.int64).reshape(-1)
    if len(mask) == 0:  # no video (all deleted, or none READY yet)
        return np.zeros(len(ids), bool)
    # as IdPositions.find: -1 wraps past the end in unsigned; an outside id reads an edge
    inside = ids.view(np.uint64) < len(mask)
    return inside & mask.take(ids, mode="clip")


def _with_entry(cache: dict, key: Hashable, value: Any, most: int) -> dict:
    """A copy of `cache` with key -> value, the oldest entry dropped to keep at most `most`:
    caches that searches read without a lock are replaced whole, never changed in place."""
    kept = dict(cache)
    if len(kept) >= most and key not in kept:
        kept.pop(next(iter(kept)))  # the oldest
    kept[key] = value
    return kept


@dataclass(frozen=True)
class VideoInfo:
    """A video as search serves it: the Video row's fields, frozen (no ORM, no session)."""

    id: int
    uri: str
    content_sha256: str
    size_bytes: int
    status: VideoStatus
    error: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    codec: str | None = None
    content_box: str | None = None
    title: str | None = None
    collection: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    external_id: str | None = None
    # (key, value) pairs sorted by key: hashable, like the rest of the frozen record
    metadata_items: tuple[tuple[str, str], ...] = ()
    original_name: str | None = None
    original_path: str | None = None

    @property
    def user_metadata(self) -> dict[str, str]:
        return dict(self.metadata_items)

    @classmethod
    def of(cls, v: Video) -> VideoInfo:
        return cls(
            id=v.id, uri=v.uri, content_sha256=v.content_sha256, size_bytes=v.size_bytes,
            status=v.status, error=v.error, duration_s=v.duration_s, fps=v.fps,
            width=v.width, height=v.height, rotation=v.rotation, codec=v.codec,
            content_box=v.content_box, title=v.title, collection=v.collection,
            tags=tuple(v.tags), created_at=v.created_at, external_id=v.external_id,
            metadata_items=tuple(sorted(v.user_metadata.items())),
            original_name=v.original_name, original_path=v.original_path,
        )  # fmt: skip


class Places(NamedTuple):
    """Where some vector ids sit; video_id -1 for an id the catalogue does not know."""

    video_id: np.ndarray  # (n,) int64
    segment_index: np.ndarray  # (n,) int32
    start_s: np.ndarray  # (n,) float64
    end_s: np.ndarray  # (n,) float64


def _appended(
    buffers: tuple[np.ndarray, ...], held: int, more: VectorPlaces
) -> tuple[tuple[np.ndarray, ...], VectorPlaces]:
    """(the buffers, the places of their first held + len(more) rows) with `more` written
    after the first `held` rows: in place while the buffers have room, else into new
    buffers of twice the size. Readers hold views of the first `held` rows (or fewer),
    which neither way changes: so an ingest's sync no longer copies every array of 10^6
    rows to append a few (~25 ms of CPU a sync, GIL held)."""
    n = held + len(more)
    fits = all(np.can_cast(add.dtype, old.dtype, "safe")
               for old, add in zip(buffers, _fields(more), strict=True))  # fmt: skip
    if n > len(buffers[0]) or not fits:  # grown, in a dtype that holds both (as concatenate)
        grown = []
        for old, add in zip(buffers, _fields(more), strict=True):
            new = np.empty(max(n, 2 * len(old)), dtype=np.result_type(old.dtype, add.dtype))
            new[:held] = old[:held]
            grown.append(new)
        buffers = tuple(grown)
    for buffer, add in zip(buffers, _fields(more), strict=True):
        buffer[held:n] = add
    return buffers, VectorPlaces(*(buffer[:n] for buffer in buffers))


def _fields(p: VectorPlaces) -> tuple[np.ndarray, ...]:
    return (p.ids, p.video_ids, p.segment_index, p.start_s, p.end_s)


class Catalogue:
    """The servable videos and the places of one model version's vectors (see above)."""

    def __init__(self, model_version: str) -> None:
        self.model_version = model_version
        self.lock = threading.Lock()  # writers: a sync's apply, the API's deletes
        self._videos: dict[int, VideoInfo] = {}
        self._servable = np.zeros(0, bool)  # [video id]: in _videos (see servable)
        self._places: dict[Level, VectorPlaces] = {lv: VectorPlaces.empty() for lv in LEVELS}
        # what _places' arrays are views of, with room to append (a writer's, locked)
        self._buffers = {lv: _fields(self._places[lv]) for lv in LEVELS}
        self._positions: dict[Level, IdPositions | None] = {lv: None for lv in LEVELS}
        self._segments: dict[int, np.ndarray] = {}  # video id -> segment vector ids, sorted
        # filter key -> (predicate, flags per video id): replaced whole, never changed
        self._filter_masks: dict[Hashable, tuple[Callable[[VideoInfo], bool], np.ndarray]] = {}
        self._masks_lock = threading.Lock()  # a new mask's caching vs the writers' updates
        self._generation = 0  # changes of the videos so far (see filter_mask)
        # (level, filter key) -> (places, flags, servable it was made of, bits): see vector_bits
        self._vector_bits: dict[tuple[Level, Hashable], tuple] = {}
        self.watermarks: dict[Level, int] = {lv: 0 for lv in LEVELS}
        self.tombstone_seq = 0
        self.change_seq = 0  # the video_changes log read so far
        self.loaded = False  # a first full read of the READY videos is done

    # ------------------------------------------------------------------ reads
    def __len__(self) -> int:
        return len(self._videos)

    def video(self, video_id: int) -> VideoInfo | None:
        """The servable video, or None (unknown, not READY, deleted)."""
        return self._videos.get(int(video_id))

    def servable(self, video_ids: np.ndarray) -> np.ndarray:
        """(n,) bool: which of these video ids the catalogue serves (the filter's array
        path: no Python call per id)."""
        return flags_at(self._servable, video_ids)

    def servable_count(self) -> int:
        return len(self._videos)

    def places(self, level: Level, ids: np.ndarray) -> Places:
        """Where the vector ids (n,) sit; video_id -1 where unknown."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        t, pos, found = self.lookup(level, ids)  # one read of the table (a sync replaces it)
        if len(t) == 0 or len(ids) == 0:
            n = len(ids)
            return Places(np.full(n, -1, np.int64), np.full(n, -1, np.int32),
                          np.zeros(n), np.zeros(n))  # fmt: skip
        p = Places(t.video_ids[pos], t.segment_index[pos].astype(np.int32, copy=False),
                   t.start_s[pos], t.end_s[pos])  # fmt: skip
        if found.all():  # the usual case (every id FAISS returned is synced)
            return p
        return Places(
            np.where(found, p.video_id, -1),
            np.where(found, p.segment_index, -1).astype(np.int32),
            np.where(found, p.start_s, 0.0),
            np.where(found, p.end_s, 0.0),
        )

    def lookup(self, level: Level, ids: np.ndarray) -> tuple[VectorPlaces, np.ndarray, np.ndarray]:
        """(the level's places table, positions, found) of vector ids (any shape): the
        table's rows at `positions` wherever found. For a caller that reads a few columns
        of a few rows (packed.run_rows), where places() gathers four of each."""
        t = self._places[level]
        # one IdPositions per places array, made by the first search after a change (a
        # racing second one makes the same); taken from t itself, so never a stale one
        positions = self._positions[level] = positions_for(self._positions[level], t.ids)
        pos, found = positions.find(ids)
        return t, pos, found

    def segment_ids(self, video_id: int) -> np.ndarray:
        """A video's segment vector ids (n,), in id order (empty when none is held)."""
        ids = self._segments.get(int(video_id))
        return ids if ids is not None else np.zeros(0, np.int64)

    def segments_of(self, video_id: int) -> tuple[np.ndarray, Places]:
        """A video's segment vector ids (n,) in time order, and their places; empty when
        the catalogue holds none (not synced yet, or no segments of this version)."""
        ids = self.segment_ids(video_id)
        p = self.places("segment", ids)
        if len(ids) > 1 and (np.diff(p.segment_index) < 0).any():  # ids not in time order
            order = np.argsort(p.segment_index, kind="stable")
            ids, p = ids[order], Places(*(x[order] for x in p))
        return ids, p

    def videos(self, collection: str | None = None) -> list[VideoInfo]:
        """The servable videos (of a collection), in id order."""
        held = self._videos  # replaced whole by writers: one consistent view
        return [held[v] for v in sorted(held)
                if collection is None or held[v].collection == collection]  # fmt: skip

    def vector_count(self, level: Level) -> int:
        return len(self._places[level])

    # ------------------------------------------------------------------ writes
    def add_places(self, level: Level, places: VectorPlaces) -> None:
        """Append vector rows with ids above every id held (the sync's watermark order)."""
        if len(places) == 0:
            return
        t = self._places[level]
        if len(t) and int(places.ids[0]) <= int(t.ids[-1]):
            raise ValueError(
                f"{level} places must come in id order: {int(places.ids[0])} after {int(t.ids[-1])}"
            )
        self._buffers[level], self._places[level] = _appended(self._buffers[level], len(t), places)
        cached = self._positions[level]
        if cached is not None and cached.ids is t.ids:  # the ids grew: the table too
            self._positions[level] = cached.extended(self._places[level].ids)
        self.watermarks[level] = max(self.watermarks[level], int(places.ids[-1]))
        if level == "segment":
            self._index_segments(places)

    def _index_segments(self, places: VectorPlaces) -> None:
        """Add a batch of segment places (ids above every id held) to `_segments`."""
        order = np.argsort(places.video_ids, kind="stable")  # ids stay sorted per video
        vids, ids = places.video_ids[order], places.ids[order]
        cuts = np.flatnonzero(np.diff(vids)) + 1
        for v, part in zip(vids[np.r_[0, cuts]].tolist(), np.split(ids, cuts), strict=True):
            held = self._segments.get(v)
            self._segments[v] = part if held is None else np.concatenate([held, part])

    def drop_vectors(self, level: Level, ids: np.ndarray) -> set[int]:
        """Forget these vector ids -> the videos they belonged to."""
        t = self._places[level]
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0 or len(t) == 0:
            return set()
        gone = np.isin(t.ids, ids)
        if not gone.any():
            return set()
        touched = {int(v) for v in np.unique(t.video_ids[gone])}
        keep = ~gone
        if level == "segment":
            self._unindex_segments(t.ids[gone], t.video_ids[gone])
        self._places[level] = VectorPlaces(*(x[keep] for x in _fields(t)))
        self._buffers[level] = _fields(self._places[level])  # new arrays, no room yet
        return touched

    def _unindex_segments(self, ids: np.ndarray, video_ids: np.ndarray) -> None:
        """Take dropped segment ids out of `_segments`, each video tested against its own
        dropped ids only (a tombstone batch of a whole re-embedding spans many videos)."""
        order = np.argsort(video_ids, kind="stable")
        vids, ids = video_ids[order], ids[order]
        cuts = np.flatnonzero(np.diff(vids)) + 1
        for v, gone in zip(vids[np.r_[0, cuts]].tolist(), np.split(ids, cuts), strict=True):
            left = self.segment_ids(v)
            left = left[~np.isin(left, gone)]
            if len(left):
                self._segments[v] = left
            else:
                self._segments.pop(v, None)

    def apply_videos(self, rows: Iterable[VideoInfo], touched: Iterable[int] = ()) -> None:
        """READY rows in, rows of any other status out, and the `touched` ids without a row
        out. Hold `lock` around the read of the rows and this call (see the module doc)."""
        videos = dict(self._videos)
        changed = {int(v) for v in touched}
        for vid in changed:
            videos.pop(vid, None)
        for info in rows:
            changed.add(info.id)
            if info.status is VideoStatus.READY:
                videos[info.id] = info
            else:
                videos.pop(info.id, None)
        self._set_videos(videos, changed)

    def _set_videos(self, videos: dict[int, VideoInfo], changed: set[int]) -> None:
        """Replace the videos (`changed`: the ids whose entry may differ). A reader may see
        the new flags with the old dict for a moment, which a search survives: the filter
        admits by the flags, the hits are described through video(), and a video without
        both is dropped."""
        keys = np.fromiter(videos.keys(), np.int64, len(videos))
        # a flag per id up to the largest (ids are dense SQL ids): one load per look-up,
        # where a search in a sorted array of 10^5 ids costs a cache miss per step
        mask = np.zeros(int(keys.max()) + 1 if len(keys) else 0, bool)
        mask[keys] = True
        with self._masks_lock:  # one step for a new mask's caching (see filter_mask)
            masks = self._updated_filter_masks(videos, changed, len(mask))
            self._servable = mask  # before the dict: a video is served only with its info
            self._videos = videos
            self._filter_masks = masks
            self._generation += 1

    def filter_mask(self, key: Hashable, predicate: Callable[[VideoInfo], bool]) -> np.ndarray:
        """A flag per video id (as `servable`): the videos `predicate` admits, for a filter
        named by `key`. Built on a filter's first search (a pass over every video, on the
        caller's thread, without the writers' lock), then kept current by every change of
        a video (only the changed ones re-tested, on a copy: readers never see a mask
        change under them), so a filtered search tests no video in Python. AND it with
        `servable`: a delete clears that first. At most MAX_FILTER_MASKS are kept."""
        held = self._filter_masks.get(key)
        if held is not None:
            return held[1]
        generation, videos = self._generation, self._videos
        mask = np.zeros(len(self._servable), bool)
        admitted = [v for v, info in videos.items() if predicate(info)]
        mask[np.asarray(admitted, dtype=np.int64)] = True
        with self._masks_lock:
            if generation == self._generation:  # no change of videos since the pass
                self._filter_masks = _with_entry(
                    self._filter_masks, key, (predicate, mask), MAX_FILTER_MASKS
                )
        return mask  # (not kept when videos changed meanwhile: the next search builds it)

    def vector_bits(
        self, level: Level, key: Hashable, predicate: Callable[[VideoInfo], bool]
    ) -> np.ndarray:
        """The vector ids of `level` whose video the filter admits and the catalogue
        serves, as bits (uint8; id i is bit i % 8 of byte i // 8: faiss_index.search's
        `admitted`). Made from filter_mask and the places, and made again on the first
        search after either changes (a sync that adds vectors, a delete, an edit): at
        10^6 vectors ~10 ms, once a sync, against a 4-8x over-fetch on every search.
        Ids the catalogue does not place (not synced yet, deleted) are refused, as the
        filter stage refuses them. A search racing a change may use the bits of the state
        before it; the filter stage still tests each hit against the state after."""
        places, servable = self._places[level], self._servable
        flags = self.filter_mask(key, predicate)
        held = self._vector_bits.get((level, key))
        if held is not None and held[0] is places and held[1] is flags and held[2] is servable:
            return held[3]
        admitted = flags_at(flags, places.video_ids) & flags_at(servable, places.video_ids)
        per_id = np.zeros(int(places.ids[-1]) + 1 if len(places) else 0, bool)
        per_id[places.ids[admitted]] = True
        bits = np.packbits(per_id, bitorder="little")
        with self._masks_lock:  # bounded as the masks (a filter's bits at each level)
            self._vector_bits = _with_entry(
                self._vector_bits, (level, key), (places, flags, servable, bits),
                2 * MAX_FILTER_MASKS,
            )  # fmt: skip
        return bits

    def _updated_filter_masks(
        self, videos: dict[int, VideoInfo], changed: set[int], size: int
    ) -> dict[Hashable, tuple[Callable[[VideoInfo], bool], np.ndarray]]:
        """Copies of the masks with the changed videos re-tested (a writer's, locked)."""
        masks = {}
        for key, (predicate, old) in self._filter_masks.items():
            mask = np.zeros(max(size, len(old)), bool)
            mask[: len(old)] = old
            for v in changed:
                if v < len(mask):
                    info = videos.get(v)
                    mask[v] = info is not None and predicate(info)
            masks[key] = (predicate, mask)
        return masks

    def vector_ids_of(self, level: Level, video_id: int) -> np.ndarray:
        """The vector ids (n,) the catalogue places in this video (a scan: for deletes)."""
        t = self._places[level]
        return t.ids[t.video_ids == int(video_id)]

    def remove_video(self, video_id: int) -> None:
        """Make a deleted video unservable now (the API, once its delete has committed)."""
        with self.lock:
            if int(video_id) in self._videos:
                videos = dict(self._videos)
                del videos[int(video_id)]
                self._set_videos(videos, {int(video_id)})


@dataclass(frozen=True)
class CatalogueSync:
    added: int  # vector places added
    removed: int  # vector places dropped (tombstones)
    videos: int  # servable videos after the sync


def sync_catalogue(catalogue: Catalogue, store: Store) -> CatalogueSync:
    """Catch the catalogue up with SQL (see the module docstring). One caller at a time
    (the index keeper's sync)."""
    version = catalogue.model_version
    source = vector_source(store)
    touched: set[int] = set()
    removed = 0
    seqs = []
    for level in LEVELS:
        tomb = source.tombstones(level, version, after_seq=catalogue.tombstone_seq)
        before = catalogue.vector_count(level)
        touched |= catalogue.drop_vectors(level, tomb.ids)
        removed += before - catalogue.vector_count(level)
        seqs.append(tomb.last_seq)
    # each read bounds itself by the log's head at that moment: the smaller one skips
    # nothing (a tombstone read twice is dropped twice, harmlessly)
    catalogue.tombstone_seq = min(seqs)
    with store.ReadSession.begin() as s:
        changed, catalogue.change_seq = video_changes(s, after_seq=catalogue.change_seq)
    touched |= changed
    added = 0
    for level in LEVELS:
        while True:
            with store.ReadSession.begin() as s:
                batch = vector_places(
                    s, level, version, after_id=catalogue.watermarks[level], limit=PLACES_BATCH
                )
            catalogue.add_places(level, batch)
            touched.update(int(v) for v in np.unique(batch.video_ids))
            added += len(batch)
            if len(batch) < PLACES_BATCH:
                break
    if catalogue.loaded and not touched:
        return CatalogueSync(added, removed, len(catalogue))
    with catalogue.lock, store.ReadSession.begin() as s:
        if not catalogue.loaded:
            rows = [VideoInfo.of(v) for v in ready_videos(s)]
            catalogue.apply_videos(rows)
        else:
            rows = [VideoInfo.of(v) for v in videos_by_ids(s, touched)]
            catalogue.apply_videos(rows, touched)
    catalogue.loaded = True
    if added or removed:
        logger.info(
            "catalogue %s: +%d -%d vectors, %d videos", version, added, removed, len(catalogue)
        )
    return CatalogueSync(added, removed, len(catalogue))
