"""Shared pieces of the API tests (no tests here): a recording dispatcher, vectors written
straight into SQL (no worker needed), and a real server on 127.0.0.1:0 with a client.

Import the fixtures into a test module with `from tests.test_api_harness import *`.
Tests using `db` run on SQLite and on PostgreSQL (skipped, saying so, when no server runs
at 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from services.api.client import NO_RETRIES, SoraClient
from services.api.server import SoraServer, create_server
from services.settings import Settings
from services.store import Store, complete_ingest, register_video

MODEL = "test-v1"
DIM = 16
TOKEN = "s3cret-token"

__all__ = [
    "DIM",
    "MODEL",
    "TOKEN",
    "Api",
    "RecordingDispatcher",
    "add_video",
    "api",
    "make_api",
    "store_backend",
    "unit",
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_backend(request) -> str:
    return request.param


class RecordingDispatcher:
    """Stands in for the broker: records the job ids it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def send(self, job_ids):
        ids = [int(j) for j in job_ids]
        self.sent.extend(ids)
        return ids


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


_sha_counter = iter(range(1, 1 << 30))


def add_video(
    store: Store,
    segments: Sequence[np.ndarray] | np.ndarray,
    *,
    collection: str | None = None,
    tags: Sequence[str] = (),
    title: str | None = None,
    model_version: str = MODEL,
    segment_s: float = 4.0,
    external_id: str | None = None,
) -> int:
    """Register a video and complete its ingest with these segment vectors (unit rows);
    the video vector is their normalised mean, as the workers write it."""
    xb = unit(np.asarray(segments, dtype=np.float32))  # (n, d)
    n = next(_sha_counter)
    with store.Session.begin() as s:
        video, job, _ = register_video(
            s,
            uri=f"/videos/{n}.mp4",
            content_sha256=f"{n:064x}",
            size_bytes=1000 + n,
            title=title or f"video {n}",
            collection=collection,
            tags=tuple(tags),
            external_id=external_id,
        )
        complete_ingest(
            s,
            job.id,
            video.id,
            model_version=model_version,
            segments=[(i, i * segment_s, (i + 1) * segment_s, xb[i]) for i in range(len(xb))],
            video_vector=unit(xb.mean(axis=0)),
        )
        return video.id


@dataclass
class Api:
    server: SoraServer
    port: int
    client: SoraClient
    store: Store
    settings: Settings
    dispatcher: RecordingDispatcher
    roots: list[Path] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def sync(self) -> None:
        """Bring the server's index up to date with SQL now."""
        self.server.keeper.sync_once()

    def client_with(self, token: str | None) -> SoraClient:
        return SoraClient(self.address, token=token, timeout=10, retry=NO_RETRIES)


def make_api(
    store: Store,
    tmp_path: Path,
    *,
    embedder=None,
    start: bool = True,
    model_version: str | None = MODEL,
    **overrides,
) -> Api:
    allowed = tmp_path / "allowed"
    allowed.mkdir(exist_ok=True)
    options = {
        "home": tmp_path / "home",
        "database_url": "unused://",
        "broker_url": "unused://",
        "api_token": TOKEN,
        "allowed_roots": (allowed,),
        "index_sync_interval_s": 0.2,
    }
    options.update(overrides)
    settings = Settings(**options)
    dispatcher = RecordingDispatcher()
    server, port = create_server(
        "127.0.0.1:0",
        settings=settings,
        store=store,
        dispatcher=dispatcher,
        embedder=embedder,
        model_version=model_version,
    )
    if start:
        server.start()
        assert server.keeper.wait_ready(10), "the index did not load"
    client = SoraClient(f"127.0.0.1:{port}", token=settings.api_token, timeout=10, retry=NO_RETRIES)
    return Api(server, port, client, store, settings, dispatcher, [allowed])


@pytest.fixture
def api(db, tmp_path) -> Iterator[Api]:
    a = make_api(db, tmp_path)
    try:
        yield a
    finally:
        a.client.close()
        a.server.stop(0).wait(10)
