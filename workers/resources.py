"""Per-process resources of a worker, built once on first use: the store (one engine per
process) and the embedder (loading a model is seconds; tasks must not pay it each time)."""

from __future__ import annotations

import functools
import os
import socket

from services.settings import Settings
from services.store import Store, open_store
from sora_encoder import VideoEmbedder, load_embedder


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def store() -> Store:
    return open_store(settings().database_url)


@functools.cache
def embedder() -> VideoEmbedder:
    s = settings()
    return load_embedder(
        s.checkpoint, variant=s.variant, precision=s.precision, segment_s=s.segment_s
    )


def owner_name(task_id: str) -> str:
    """Who holds a job lease: stable across a task's retries in this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{task_id}"
