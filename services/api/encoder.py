"""The API's encoder, loaded once on first use and shared: SearchService embeds query clips
with it, and IndexKeeper asks it which model version the server is configured for (and so
which version searches serve mid-reindex)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from services.errors import InvalidArgumentError

from .call import Call

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the API needs of sora_encoder.VideoEmbedder."""

    model_version: str

    def embed(self, path: Any, *, on_batch: Callable[[int, int], None] | None = None) -> Any: ...

    def embed_regions(
        self, path: Any, *, whole: bool = True, on_batch: Callable[[int, int], None] | None = None
    ) -> list[Any]: ...


class EncoderHolder:
    """`factory` builds the embedder (loading a checkpoint); None: no encoder configured."""

    def __init__(self, factory: Callable[[], Embedder] | None) -> None:
        self._factory = factory
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()  # loads it once
        self._slot = threading.Semaphore(1)  # one clip at a time: the model uses every core

    @property
    def enabled(self) -> bool:
        return self._factory is not None

    def get(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                if self._factory is None:
                    raise RuntimeError("no encoder is configured")
                logger.info("loading the encoder (configured model version)")
                self._embedder = self._factory()
            return self._embedder

    def version(self) -> str | None:
        """The configured encoder's model version (loads it once); None without one."""
        return self.get().model_version if self.enabled else None

    def embed(self, path: Path, call: Call) -> Any:
        """The clip's embedding. Undecodable media is INVALID_ARGUMENT."""
        return self._run(call, lambda e, check: e.embed(path, on_batch=check))

    def embed_regions(self, path: Path, call: Call) -> list[Any]:
        """The embeddings of the clip's regions (not of its whole picture: `embed`)."""
        return self._run(
            call, lambda e, check: list(e.embed_regions(path, whole=False, on_batch=check))
        )

    def _run(self, call: Call, work: Callable[[Embedder, Callable], Any]) -> Any:
        from sora_encoder.media import MediaError

        embedder = self.get()
        while not self._slot.acquire(timeout=0.1):  # one clip at a time
            call.check()
        try:
            call.check()
            check = lambda done, total: call.check()  # noqa: E731
            try:
                return work(embedder, check)
            except MediaError as exc:
                raise InvalidArgumentError(f"the query clip cannot be used: {exc}") from None
        finally:
            self._slot.release()
