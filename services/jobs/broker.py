"""The Celery app, as the sending side sees it: at-least-once delivery, idempotent tasks.

    producer (CLI / API) --send_task("sora.ingest_video", [job_id])--> broker --> worker
    broker: redis://... in production, sqla+sqlite:///... (kombu's SQLAlchemy transport)
            for the embedded default, chosen by $SORA_BROKER_URL alone.

Messages carry job ids only (JSON); the task re-reads everything else from SQL. Senders
name the task (INGEST_TASK) and never import it: the task's code is `workers.tasks`, which
a worker loads by passing `include=["workers.tasks"]` (`workers.app.worker_app`). Nothing
here runs at import; an app exists once someone calls `make_celery`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from celery import Celery
from kombu import Exchange, Queue

from services.settings import Settings

INGEST_TASK = "sora.ingest_video"
QUEUE = "sora"


def transport_options(broker_url: str, hard_limit_s: float) -> dict:
    """Per-broker options (kombu's SQLAlchemy transport hands them all to create_engine, so
    options for another transport must not leak into it)."""
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        # Redis re-delivers an unacknowledged message after this; it must exceed the hard
        # limit or a slow-but-alive task would be run twice at once.
        return {"visibility_timeout": int(hard_limit_s * 2)}
    return {}


def make_celery(settings: Settings, *, include: Sequence[str] = ()) -> Celery:
    """An app on `settings.broker_url`; `include` names task modules (a worker's)."""
    settings.ensure_home()  # the embedded broker's SQLite file lives there
    app = Celery("sora", broker=settings.broker_url, include=list(include))
    hard = settings.task_time_limit_s
    app.conf.update(
        # At-least-once: acknowledge after the task ran; a worker process that dies mid-task
        # gets its message re-delivered instead of dropped.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message at a time per worker: a long video never holds others hostage.
        worker_prefetch_multiplier=1,
        task_time_limit=hard,
        task_soft_time_limit=max(hard - 30.0, hard * 0.9),
        broker_transport_options=transport_options(settings.broker_url, hard),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,  # no task waits on another; state lives in SQL
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def declare_queue(app: Celery, *, attempts: int = 5) -> None:
    """Create the task queue on the broker before any process races to do it.

    kombu's SQLAlchemy transport creates a queue's row on first use with a plain INSERT, so
    a worker starting while a producer sends its first task can fail on the UNIQUE
    constraint and exit. Declaring once, up front, with retries, removes the race."""
    queue = Queue(QUEUE, Exchange(QUEUE, type="direct"), routing_key=QUEUE)
    for attempt in range(1, attempts + 1):
        try:
            with app.connection_for_write() as conn:
                queue(conn.default_channel).declare()
            return
        except Exception:  # the other process won the race, or the broker is starting
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
