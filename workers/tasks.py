"""Celery tasks. Thin: ids in, `run_ingest_job` does the work, transient faults retry.

Registered with `shared_task`, so importing this module builds no app: the worker's app
(`workers.app.worker_app`) loads it by name, and senders name INGEST_TASK without it."""

from __future__ import annotations

import logging

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, OperationalError

from services.errors import LeaseLostError
from services.jobs import INGEST_TASK

from . import resources
from .ingest_job import run_ingest_job

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
# Faults that pass: the database or the broker restarting, a connection dropped.
TRANSIENT = (OperationalError, BrokerError, ConnectionError, TimeoutError)


def backoff_s(retries: int) -> float:
    """1, 2, 4 ... seconds, capped at a minute."""
    return float(min(2**retries, 60))


@shared_task(name=INGEST_TASK, bind=True, max_retries=MAX_RETRIES)
def ingest_video(self, job_id: int) -> str:
    try:
        outcome = run_ingest_job(
            resources.store(),
            resources.embedder(),
            int(job_id),
            owner=resources.owner_name(self.request.id or "local"),
            lease_s=resources.settings().lease_s,
        )
    except LeaseLostError as exc:
        # Another worker took the job over (our lease had expired); it finishes the job.
        logger.warning("job %s: %s; leaving it to the new owner", job_id, exc)
        return "lease-lost"
    except TRANSIENT as exc:
        logger.warning("job %s: transient fault (%s); retry %d", job_id, exc, self.request.retries)
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
        raise
    return outcome.status
