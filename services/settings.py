"""Process settings, read from the environment once, shared by the API, workers and CLI.

Embedded default (nothing set): everything under $SORA_HOME (~/.sora) — a SQLite database,
a SQLite-backed Celery broker (kombu's SQLAlchemy transport) and the index snapshots.
Production: set SORA_DATABASE_URL (PostgreSQL) and SORA_BROKER_URL (redis://...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20


def home_of(environ: Mapping[str, str]) -> Path:
    """$SORA_HOME, else ~/.sora: the one place its default is written."""
    return Path(environ.get("SORA_HOME") or Path.home() / ".sora")


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"${name} must be a number of seconds, got {raw!r}") from exc


def _env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"${name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ValueError(f"${name} must be >= {minimum}, got {value}")
    return value


def _env_list(env: Mapping[str, str], name: str, sep: str | None) -> tuple[str, ...]:
    """Items separated by `sep` (None: commas or white space)."""
    raw = env.get(name) or ""
    items = raw.replace(",", " ").split() if sep is None else raw.split(sep)
    return tuple(item.strip() for item in items if item.strip())


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


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

    # ---- the gRPC API (services/api) -------------------------------------------------
    api_address: str = "127.0.0.1:50051"  # where `sora serve` listens by default
    # Folders whose files may be ingested by server-side path (realpath must fall inside
    # one, symlinks followed). Empty: ingest by path is refused (PERMISSION_DENIED).
    allowed_roots: tuple[Path, ...] = ()
    # http(s) URLs ingestible by the API (comma- or space-separated): a URL must match one
    # prefix's scheme, host and port exactly and lie under its path. Empty: no URLs.
    allowed_url_prefixes: tuple[str, ...] = ()
    max_upload_bytes: int = 2 * GIB  # an upload, a downloaded URL, a query clip
    url_timeout_s: float = 60.0  # a URL download must finish within this (and the call's deadline)
    # A URL server sending fewer bytes per second than this, measured over each window of
    # url_rate_window_s, is dropped (UNAVAILABLE) before the deadline: a slow drip would
    # otherwise hold a thread for all of url_timeout_s. 0: no minimum.
    url_min_rate: int = 16 * 1024
    url_rate_window_s: float = 10.0
    # Threads answering calls (each open call holds one while it runs; a stream for as long
    # as it is open). The pool makes threads only as calls need them, so idle room is free;
    # 64 clients searching at once were served at the same QPS by 72 threads as 30 were by
    # 32 (bench_search, 10^5 vectors), so the default lets that many in.
    max_workers: int = 80
    # Calls (health checks excepted) beyond this many at once are refused with
    # RESOURCE_EXHAUSTED, and none below it. Kept below max_workers, so that every call
    # let in has a thread at once (never queued behind stalled streams), health checks
    # always find one, and gRPC's own count (max_workers; it frees a call a moment after
    # the handler ends) never refuses first.
    max_concurrent_rpcs: int = 64
    # A client stream (UploadVideo, SearchByClip) that sends nothing for this long is
    # cancelled, freeing its thread; a client that stalls would otherwise hold it forever.
    stream_idle_s: float = 30.0
    # The longest an upload may stream (2 GiB at ~1 MB/s fits); also the age after which a
    # partial upload file (a killed server's) is swept at start-up.
    upload_time_limit_s: float = 3600.0
    max_message_bytes: int = 16 * MIB  # one message, both directions (uploads are chunked)
    tls_cert: Path | None = None  # PEM certificate chain; TLS when both cert and key are set
    tls_key: Path | None = None
    # Bearer token every call but health must carry. None: the API binds to loopback only.
    api_token: str | None = field(default=None, repr=False)
    index_sync_interval_s: float = 1.0  # the API's index catches up with SQL this often
    # A sync that found nothing new skips counting the store's rows (the check that the
    # index holds all of them) for this long after a count that matched: at 10^6 vectors
    # on SQLite the counts of an idle sync took 0.23 s of CPU every second.
    index_recount_idle_s: float = 30.0
    # API processes serving one port on this host (`sora serve --api-processes N`; each
    # process is told its index). With more than one: the port is shared (SO_REUSEPORT),
    # only process 0 writes index snapshots, and a delete through one process is seen by
    # the others' next search (services/api/change_signal.py).
    api_processes: int = 1
    api_process_index: int = 0

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "index"

    @property
    def change_signal_path(self) -> Path:
        """The counter the API processes of this home share (api_processes > 1)."""
        return self.home / "api-changes.bin"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: this process's environment). A caller that
        starts a process with other settings builds that process's environment and reads
        it here; nobody writes os.environ to pass settings on."""
        env = os.environ if environ is None else environ
        home = home_of(env)
        return cls(
            home=home,
            database_url=env.get("SORA_DATABASE_URL") or f"sqlite:///{home / 'sora.db'}",
            broker_url=env.get("SORA_BROKER_URL") or f"sqla+sqlite:///{home / 'broker.db'}",
            checkpoint=env.get("SORA_CHECKPOINT") or None,
            variant=env.get("SORA_VARIANT") or None,
            precision=env.get("SORA_PRECISION") or "auto",
            segment_s=_env_float(env, "SORA_SEGMENT_SECONDS", 4.0),
            task_time_limit_s=_env_float(env, "SORA_TASK_TIME_LIMIT", 3600.0),
            lease_s=_env_float(env, "SORA_LEASE_SECONDS", 60.0),
            dispatch_timeout_s=_env_float(env, "SORA_DISPATCH_TIMEOUT", 600.0),
            reconcile_interval_s=_env_float(env, "SORA_RECONCILE_INTERVAL", 15.0),
            api_address=env.get("SORA_API_ADDRESS") or "127.0.0.1:50051",
            allowed_roots=tuple(Path(p) for p in _env_list(env, "SORA_ALLOWED_ROOTS", os.pathsep)),
            allowed_url_prefixes=_env_list(env, "SORA_ALLOWED_URL_PREFIXES", None),
            max_upload_bytes=_env_int(env, "SORA_MAX_UPLOAD_BYTES", 2 * GIB),
            url_timeout_s=_env_float(env, "SORA_URL_TIMEOUT", 60.0),
            url_min_rate=_env_int(env, "SORA_URL_MIN_RATE", 16 * 1024, minimum=0),
            url_rate_window_s=_env_float(env, "SORA_URL_RATE_WINDOW", 10.0),
            max_workers=_env_int(env, "SORA_API_WORKERS", 80),
            max_concurrent_rpcs=_env_int(env, "SORA_MAX_CONCURRENT_RPCS", 64),
            stream_idle_s=_env_float(env, "SORA_STREAM_IDLE_TIMEOUT", 30.0),
            upload_time_limit_s=_env_float(env, "SORA_UPLOAD_TIME_LIMIT", 3600.0),
            max_message_bytes=_env_int(env, "SORA_MAX_MESSAGE_BYTES", 16 * MIB, minimum=4096),
            tls_cert=_env_path(env, "SORA_TLS_CERT"),
            tls_key=_env_path(env, "SORA_TLS_KEY"),
            api_token=env.get("SORA_API_TOKEN") or None,
            index_sync_interval_s=_env_float(env, "SORA_INDEX_SYNC_INTERVAL", 1.0),
            index_recount_idle_s=_env_float(env, "SORA_INDEX_RECOUNT_INTERVAL", 30.0),
            api_processes=_env_int(env, "SORA_API_PROCESSES", 1),
            api_process_index=_env_int(env, "SORA_API_PROCESS_INDEX", 0, minimum=0),
        )

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
