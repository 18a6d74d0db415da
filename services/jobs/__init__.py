"""The sending side of background jobs: the Celery app factory, dispatch, reconciliation.

    make_celery(settings) -> app      the broker connection (no tasks: senders name them)
    declare_queue(app)                create the queue before processes race to
    Dispatcher(app, store).send(ids)  hand committed jobs to the broker, mark them sent
    reconcile_once / ReconcilerThread re-send jobs a lost message or a dead worker stranded
    register_files / enqueue_reindex  make the jobs (SQL rows) that the above send

The task side (what a worker runs) is `workers/`, which imports this package; this package
never imports `workers` (it names the task by string, INGEST_TASK).
"""

from .broker import INGEST_TASK, QUEUE, declare_queue, make_celery, transport_options
from .dispatch import Dispatcher
from .reconcile import ReconcileReport, ReconcilerThread, reconcile_once
from .reindex import enqueue_reindex
from .submit import Submission, register_files, sha256_file

__all__ = [
    "INGEST_TASK",
    "QUEUE",
    "Dispatcher",
    "ReconcileReport",
    "ReconcilerThread",
    "Submission",
    "declare_queue",
    "enqueue_reindex",
    "make_celery",
    "reconcile_once",
    "register_files",
    "sha256_file",
    "transport_options",
]
