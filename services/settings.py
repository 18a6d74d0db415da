"""Process settings, read from the environment once, shared by the API, workers and CLI.

Embedded default (nothing set): everything under $SORA_HOME (~/.sora) — a SQLite database,
a SQLite-backed Celery broker (kombu's SQLAlchemy transport) and the index snapshots.
Production: set SORA_DATABASE_URL (PostgreSQL) and SORA_BROKER_URL (redis://...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"${name} must be a number of seconds, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    home: Path  # where the embedded database, broker and index snapshots live
    database_url: str
    broker_url: str
    checkpoint: str | None = None  # None: the encoder's default (see sora_encoder)
    variant: str | None = None  # with no checkpoint: a seed-initialised model of this variant
    precision: str = "auto"  # encoder precision: auto (measured per machine), fp32 or bf16
    segment_s: float = 4.0  # window length: one vector per segment
    # A task running longer than this is killed by Celery; the broker's visibility time-out
    # is set above it, so a message is never handed to a second worker while the first
    # could still be working on it.
    task_time_limit_s: float = 3600.0
    # A worker renews its job lease after every batch; a lease that runs out means the
    # worker died, and the reconciler re-sends the job. Short, so a kill is noticed fast.
    lease_s: float = 60.0
    # A job QUEUED this long without being claimed is re-sent (its message may have been
    # lost with a broker restart); duplicates are harmless (claims are idempotent).
    dispatch_timeout_s: float = 600.0
    reconcile_interval_s: float = 15.0

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "index"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("SORA_HOME") or Path.home() / ".sora")
        return cls(
            home=home,
            database_url=os.environ.get("SORA_DATABASE_URL") or f"sqlite:///{home / 'sora.db'}",
            broker_url=os.environ.get("SORA_BROKER_URL") or f"sqla+sqlite:///{home / 'broker.db'}",
            checkpoint=os.environ.get("SORA_CHECKPOINT") or None,
            variant=os.environ.get("SORA_VARIANT") or None,
            precision=os.environ.get("SORA_PRECISION") or "auto",
            segment_s=_env_float("SORA_SEGMENT_SECONDS", 4.0),
            task_time_limit_s=_env_float("SORA_TASK_TIME_LIMIT", 3600.0),
            lease_s=_env_float("SORA_LEASE_SECONDS", 60.0),
            dispatch_timeout_s=_env_float("SORA_DISPATCH_TIMEOUT", 600.0),
            reconcile_interval_s=_env_float("SORA_RECONCILE_INTERVAL", 15.0),
        )

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
