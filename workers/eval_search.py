"""`sora@service`: the service's own search path, as a matcher for `sora eval neardup`.

    database files --register_video + run_ingest_job (the worker's code, its embedder)-->
        SQLite in a temporary folder: segment vectors + video vector per video
    IndexKeeper.sync_once --> the FAISS indexes the server would build (its factory choice)
    each query file --SearchService.search_clip (what gRPC SearchByClip answers: FAISS
        first stage, SQL filter, alignment re-ranking)--> hits {video id: score}
    scores (nq, nb): a hit's score; a database video not among the hits: -inf (not found)

Why: the eval's `sora` column is exact search over mean video vectors; users get what the
API returns. This runs the same model through the code the service runs, so the two
columns side by side show what segment vectors, the index and re-ranking add or cost.

It lives in `workers` because it needs both halves: the worker's ingest and the API's
search. `workers` is the lowest package that may import both (`services` never imports
`workers`, `sora_encoder` never imports either; docs/ARCHITECTURE.md); the CLI imports it
only when `--embedders` asks for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from services.api.index_keeper import IndexKeeper
from services.api.search_service import MAX_TOP_K, SearchOptions, SearchService
from services.errors import ConflictError, InvalidArgumentError
from services.search.copy_verdict import CalibrationSource
from services.search.types import RegionMode
from services.store import open_store, register_video
from sora_encoder import VideoEmbedder
from sora_encoder.eval.anchors import AnchorError
from sora_encoder.media import MediaError
from workers.ingest_job import run_ingest_job

__all__ = ["ServiceSearchMatcher"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per upload chunk, as the client streams a clip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


class ServiceSearchMatcher:
    """A file matcher (`sora_encoder.eval.anchors.FileMatcher`) over an in-process service.

    `hash_file` only checks the file is there; `score_matrix(queries, database)` ingests the
    database files and searches with each query, in a fresh store under a temporary folder
    (removed afterwards). Video level, alignment on, top_k = every database video (at most
    the API's MAX_TOP_K), so recall@10 and mAP see as deep a ranking as the service gives.
    """

    def __init__(
        self,
        embedder: VideoEmbedder,
        *,
        name: str = "sora@service",
        checkpoint: str | os.PathLike | None = None,
        regions: RegionMode = "auto",
    ) -> None:
        self.embedder = embedder
        self.name = name
        self.regions = regions
        self.key = f"service:{embedder.model_version}:video+align+regions-{regions}"
        # queries of the last score_matrix that also searched their regions (the cost of
        # "auto": each costs 6 embeddings instead of 1)
        self.queries_with_regions = 0
        self.dim = 0
        # The service's copy verdicts: hits are scored by their copy score and the eval
        # reports precision/recall at its threshold (None: the model has no calibration).
        self.calibration = CalibrationSource(checkpoint)
        cal = self.calibration(embedder.model_version)
        self.copy_threshold: float | None = cal.threshold if cal is not None else None
        self.timings: dict[str, float] = {}
        # per query of the last score_matrix: (database column, start_s, end_s) of its top
        # hit's matched range, or None (no hit, a failed query): the eval's boundary error
        self.top_ranges: list[tuple[int, float, float] | None] = []

    def hash_file(self, path: Path) -> Path:
        path = Path(path)
        if not path.is_file():
            raise AnchorError(f"no such file: {path}")
        return path

    def score_matrix(self, xq: Sequence[Path], xb: Sequence[Path]) -> np.ndarray:
        D = np.full((len(xq), len(xb)), -np.inf)  # (nq, nb)
        self.top_ranges = [None] * len(xq)
        self.queries_with_regions = 0
        with tempfile.TemporaryDirectory(prefix="sora-eval-service-") as tmp:
            root = Path(tmp)
            store = open_store(f"sqlite:///{root / 'eval.db'}")
            try:
                column = self._ingest(store, xb, D)
                keeper = IndexKeeper(
                    store, root / "index", configured_version=self.embedder.model_version
                )
                keeper.sync_once()
                clip_dir = root / "clips"
                clip_dir.mkdir()
                svc = SearchService(
                    store, keeper, embedder=lambda: self.embedder, clip_dir=clip_dir,
                    calibration=self.calibration,
                )  # fmt: skip
                opts = SearchOptions(
                    level="video", top_k=max(1, min(MAX_TOP_K, len(column))), regions=self.regions
                )
                for i, q in enumerate(xq):
                    try:
                        result = svc.search_clip(_chunks(q), opts)
                    except (MediaError, InvalidArgumentError, ConflictError) as exc:
                        log.warning("%s: query %s failed: %s", self.name, q, exc)
                        D[i] = np.nan
                        continue
                    self.queries_with_regions += result.regions_searched
                    for hit in result.hits:
                        score = hit.copy_score if hit.copy_score is not None else hit.score
                        for j in column.get(hit.video.id, ()):
                            D[i, j] = score
                    top = result.hits[0] if result.hits else None
                    if top is not None and top.target and column.get(top.video.id):
                        self.top_ranges[i] = (column[top.video.id][0], *top.target)
            finally:
                store.dispose()
        log.info("%s: %d of %d queries also searched their regions (regions=%s)",
                 self.name, self.queries_with_regions, len(xq), self.regions)  # fmt: skip
        return D

    def _ingest(self, store, xb: Sequence[Path], D: np.ndarray) -> dict[int, list[int]]:
        """Register and ingest every database file -> {video id: its columns}; a file the
        worker fails on gets a NaN column (never found)."""
        column: dict[int, list[int]] = {}
        for j, p in enumerate(xb):
            with store.Session.begin() as s:
                video, job, _ = register_video(
                    s, uri=str(p), content_sha256=_sha256(p), size_bytes=p.stat().st_size
                )
                video_id, job_id = video.id, job.id if job is not None else None
            if job_id is not None:
                out = run_ingest_job(store, self.embedder, job_id, owner="eval", lease_s=3600)
                if out.status != "succeeded":
                    log.warning("%s: ingest of %s %s: %s", self.name, p, out.status, out.reason)
                    D[:, j] = np.nan
                    continue
            column.setdefault(video_id, []).append(j)
        return column
