"""The reconciler: no video is stranded by a lost message or a dead worker.

    RUNNING job, lease expired (its worker died)    -> back to QUEUED, re-sent
    QUEUED job, dispatched long ago, never claimed  -> re-sent (the broker lost it)

Several reconcilers may run (one per worker process): rows are claimed with SKIP LOCKED
on PostgreSQL, and a duplicate message is a no-op for the task (claims are idempotent).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from services.store import Store, expired_jobs, requeue_job, undispatched_jobs

from .dispatch import Dispatcher

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    requeued: list[int]  # RUNNING with an expired lease, put back to QUEUED
    resent: list[int]  # all jobs sent again (requeued ones included)


def reconcile_once(
    store: Store, dispatcher: Dispatcher, *, dispatch_timeout_s: float
) -> ReconcileReport:
    with store.Session.begin() as s:
        requeued = [requeue_job(s, job.id).id for job in expired_jobs(s)]
    with store.Session.begin() as s:
        stale = [job.id for job in undispatched_jobs(s, older_than_s=dispatch_timeout_s)]
    todo = sorted(set(requeued) | set(stale))
    resent = dispatcher.send(todo) if todo else []
    if todo:
        logger.info("reconciler: requeued %s, re-sent %s", requeued, resent)
    return ReconcileReport(requeued=requeued, resent=resent)


class ReconcilerThread(threading.Thread):
    """Runs `reconcile_once` every `interval_s` until `stop()`; errors are logged, not
    fatal (the database or broker may be down for a while)."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, *, interval_s: float, dispatch_timeout_s: float
    ) -> None:
        super().__init__(name="sora-reconciler", daemon=True)
        self.store, self.dispatcher = store, dispatcher
        self.interval_s, self.dispatch_timeout_s = interval_s, dispatch_timeout_s
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                reconcile_once(
                    self.store, self.dispatcher, dispatch_timeout_s=self.dispatch_timeout_s
                )
            except Exception:
                logger.exception("reconciler pass failed; retrying in %.0f s", self.interval_s)

    def stop(self) -> None:
        self._stopped.set()
