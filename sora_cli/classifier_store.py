"""`sora train classifier --store NAME`: a trained head saved in the service's SQL store,
where the API's classify call reads it. The wiring between the library's head
(`sora_encoder.heads`) and the store (`services.store`), kept out of both."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from services.store import Store, open_store, save_classifier, serving_model_version
from sora_encoder.heads import TrainedHead
from sora_encoder.heads.offline import head_model_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    classifier_id: int
    name: str
    model_version: str
    # The version the library's searches serve (most READY videos covered), None when no
    # video has vectors: the API's classify refuses the head while the two differ.
    serving_version: str | None


def open_classifier_store(database_url: str) -> Store:
    """`open_store(database_url)` (migrated), creating a SQLite file's folder first (the
    embedded default lives in $SORA_HOME, which may not exist yet). The caller disposes it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return open_store(database_url)


def store_head(database_url: str, name: str, head: TrainedHead) -> Stored:
    """Save (or replace) classifier `name` in the service's SQL store, keyed by the head's
    model version; the API's classify call reads it from there."""
    version = head_model_version(head)
    store = open_classifier_store(database_url)
    try:
        with store.Session.begin() as s:
            row = save_classifier(
                s,
                name=name,
                labels=list(head.labels),
                weights=head.to_bytes(),
                model_version=version,
                metrics=dict(head.metrics),
            )
            stored = Stored(row.id, row.name, version, serving_model_version(s, version))
    finally:
        store.dispose()
    log.info("classifier %r stored for model %s", name, version)
    return stored
