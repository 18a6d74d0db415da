"""Classifiers on the Sora vectors: train a head from labelled video ids, list, classify.

    train:    video ids -> their video vectors of the serving model version (SQL)
              -> train_head (holdout metrics) -> save_classifier(name, weights, metrics)
    classify: a video id (its video vector) or a raw vector (taken to be of the serving
              version) -> labels, most probable first

A classifier is tied to the model version of the vectors it was trained on. It answers
while that version is the one searches serve (through a reindex, until the new version
covers every video); after the switch it is FAILED_PRECONDITION: retrain it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select

from services.errors import ConflictError, InvalidArgumentError, NotFoundError
from services.store import (
    Classifier,
    Store,
    Video,
    VideoEmbedding,
    VideoStatus,
    get_classifier,
    get_video,
    get_video_embedding,
    list_classifiers,
    save_classifier,
)
from services.store.models import VectorLevel
from services.store.segments import stored_dim
from sora_encoder.heads.softmax import TrainedHead, train_head

from .call import Call
from .index_keeper import IndexKeeper

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 100_000
DEFAULT_HOLDOUT = 0.25


def _json_number(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _listed(ids: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


class ClassifierService:
    def __init__(self, store: Store, keeper: IndexKeeper) -> None:
        self.store = store
        self.keeper = keeper
        self._cache: dict[tuple[str, Any], TrainedHead] = {}  # (name, updated_at) -> head
        self._cache_lock = threading.Lock()

    def list(self) -> list[Classifier]:
        with self.store.ReadSession.begin() as s:
            return list_classifiers(s)

    def train(
        self,
        name: str,
        examples: Sequence[tuple[int, str]],
        *,
        holdout_fraction: float | None = None,
        seed: int = 0,
        call: Call | None = None,
    ) -> Classifier:
        call = call or Call()
        if not name or not name.strip():
            raise InvalidArgumentError("the classifier needs a name")
        if len(examples) > MAX_EXAMPLES:
            raise InvalidArgumentError(f"{len(examples)} examples: at most {MAX_EXAMPLES}")
        labels_by_video: dict[int, str] = {}
        for video_id, label in examples:
            if not label or not label.strip():
                raise InvalidArgumentError(f"video {video_id}: its label is empty")
            label = label.strip()
            if labels_by_video.setdefault(int(video_id), label) != label:
                raise InvalidArgumentError(
                    f"video {video_id} is labelled both {labels_by_video[video_id]!r} and "
                    f"{label!r}: give each video one label"
                )
        distinct = sorted(set(labels_by_video.values()))
        if len(distinct) < 2:
            raise InvalidArgumentError(
                f"a classifier needs examples of at least 2 labels, got {len(distinct)}"
                + (f" ({distinct[0]!r})" if distinct else "")
            )
        fraction = DEFAULT_HOLDOUT if not holdout_fraction else float(holdout_fraction)
        if not 0.0 < fraction < 1.0:
            raise InvalidArgumentError(f"holdout_fraction {fraction}: expected (0, 1); 0 = 0.25")
        version = self.keeper.model_version
        if version is None:
            raise ConflictError(
                "no video has vectors yet: ingest the examples and wait for their jobs"
            )
        video_ids = sorted(labels_by_video)
        xb = self._video_vectors(video_ids, version)  # (n, d)
        call.check()
        labels = [labels_by_video[v] for v in video_ids]
        try:
            head = train_head(xb, labels, holdout_fraction=fraction, seed=seed)
        except ValueError as exc:
            raise InvalidArgumentError(f"cannot train on these examples: {exc}") from None
        call.check()
        metrics = {k: _json_number(v) for k, v in dict(head.metrics).items()}
        with self.store.Session.begin() as s:
            row = save_classifier(
                s,
                name=name.strip(),
                labels=list(head.labels),
                weights=head.to_bytes(),
                model_version=version,
                metrics=metrics,
            )
        logger.info("classifier %r trained on %d videos: %s", name, len(video_ids), metrics)
        return row

    def _video_vectors(self, video_ids: list[int], version: str) -> np.ndarray:
        with self.store.ReadSession.begin() as s:
            videos = {
                v.id: v
                for v in s.scalars(select(Video).where(Video.id.in_(video_ids)))
                if v.status is not VideoStatus.DELETED
            }
            missing = [v for v in video_ids if v not in videos]
            if missing:
                raise NotFoundError(f"no such video(s): {_listed(missing)}")
            vectors = {
                e.video_id: e.as_array()
                for e in s.scalars(
                    select(VideoEmbedding).where(
                        VideoEmbedding.video_id.in_(video_ids),
                        VideoEmbedding.model_version == version,
                    )
                )
            }
        lacking = [v for v in video_ids if v not in vectors]
        if lacking:
            states = sorted({videos[v].status.value for v in lacking})
            raise ConflictError(
                f"video(s) {_listed(lacking)} have no vector of model version {version} yet "
                f"(status {', '.join(states)}); train once their jobs have SUCCEEDED, or "
                "leave them out"
            )
        return np.stack([vectors[v] for v in video_ids]).astype(np.float32)  # (n, d)

    def _head(self, row: Classifier) -> TrainedHead:
        key = (row.name, row.updated_at)
        with self._cache_lock:
            head = self._cache.get(key)
            if head is None:
                head = TrainedHead.from_bytes(row.weights)
                self._cache = {k: v for k, v in self._cache.items() if k[0] != row.name}
                self._cache[key] = head
            return head

    def _check_version(self, row: Classifier) -> None:
        serving = self.keeper.model_version
        if serving is not None and serving != row.model_version:
            raise ConflictError(
                f"classifier {row.name!r} was trained on vectors of model version "
                f"{row.model_version}, but the server now serves {serving}: retrain it "
                "(TrainClassifier) on the current vectors"
            )

    def classify_video(self, name: str, video_id: int) -> tuple[list[tuple[str, float]], str]:
        """The video's vector of the serving model version, which must be the classifier's."""
        with self.store.ReadSession.begin() as s:
            row = get_classifier(s, name)
            self._check_version(row)
            video = get_video(s, video_id)
            emb = get_video_embedding(s, video_id, row.model_version)
            if emb is None:
                raise ConflictError(
                    f"video {video_id} has no vector of model version {row.model_version} "
                    f"yet (status {video.status.value}); classify it once its job has SUCCEEDED"
                )
            x = emb.as_array()
        return self._predict(row, x), row.model_version

    def classify_vector(
        self, name: str, values: Sequence[float] | np.ndarray
    ) -> tuple[list[tuple[str, float]], str]:
        """A vector taken to be of the serving model version, which must be the classifier's."""
        x = np.asarray(values, dtype=np.float32).reshape(-1)
        with self.store.ReadSession.begin() as s:
            row = get_classifier(s, name)
            dim = stored_dim(s, VectorLevel.VIDEO, row.model_version)
        self._check_version(row)
        if x.size == 0 or (dim is not None and x.size != dim):
            raise InvalidArgumentError(
                f"the vector has {x.size} values; classifier {name!r} takes {dim}-d vectors"
            )
        if not np.all(np.isfinite(x)) or not np.any(x):
            raise InvalidArgumentError("the vector must be finite and not all zeros")
        return self._predict(row, x / np.linalg.norm(x)), row.model_version

    def _predict(self, row: Classifier, x: np.ndarray) -> list[tuple[str, float]]:
        head = self._head(row)
        try:
            proba = np.asarray(head.predict_proba(x[None, :].astype(np.float32)))[0]  # (L,)
        except ValueError as exc:
            raise InvalidArgumentError(f"classifier {row.name!r} cannot take it: {exc}") from None
        order = np.argsort(-proba, kind="stable")
        labels = list(head.labels)
        return [(labels[i], float(proba[i])) for i in order]
