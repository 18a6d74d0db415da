"""Handing jobs to the broker. Sent only after the job's row is committed, so a worker
never receives a job id it cannot find; a send that fails leaves the job undispatched and
the reconciler sends it later."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import Celery

from services.store import Store, mark_dispatched

from .broker import INGEST_TASK, QUEUE

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, app: Celery, store: Store) -> None:
        self.app = app
        self.store = store

    def send(self, job_ids: Iterable[int]) -> list[int]:
        """Send each job; returns the ids sent. Broker errors are logged, not raised: the
        job stays in SQL and the reconciler re-sends it."""
        sent = []
        for job_id in job_ids:
            try:
                self.app.send_task(INGEST_TASK, args=[int(job_id)], queue=QUEUE, retry=False)
            except Exception as exc:  # kombu raises several types for an unreachable broker
                logger.warning("job %s not sent (%s); the reconciler will retry", job_id, exc)
                continue
            sent.append(int(job_id))
        if sent:
            with self.store.Session.begin() as s:
                for job_id in sent:
                    mark_dispatched(s, job_id)
        return sent
