"""The worker's Celery app: the sending side's app (`services.jobs.make_celery`) with this
package's tasks loaded. A function, not a module-level app, so importing it does nothing."""

from __future__ import annotations

from celery import Celery

from services.jobs import make_celery
from services.settings import Settings

TASK_MODULES = ("workers.tasks",)


def worker_app(settings: Settings) -> Celery:
    return make_celery(settings, include=TASK_MODULES)
