"""Engine, sessionmaker and migrations: one `Store` per process.

    store = open_store(url)                 # engine + sessionmaker, migrated to head
    with store.Session.begin() as session:  # the caller owns the transaction
        video, job, created = register_video(session, uri=..., ...)

SQLite (the embedded default) is configured for concurrent use by several processes:
WAL journal, foreign keys on, a busy timeout, and transactions that start with
`BEGIN IMMEDIATE` so that two writers queue up on the write lock instead of failing with
"database is locked" when a read transaction later tries to write. Pure reads use
`store.ReadSession` (or `session.connection(execution_options=READ_ONLY)`): a deferred
BEGIN that does not wait for writers (WAL readers see the last committed state).

PostgreSQL runs at READ COMMITTED; functions lock the rows they update (SELECT ... FOR
UPDATE), and the writers of vector rows serialise on one transaction-level advisory lock
(see `lock_vector_log`).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# Environment variable naming the database; the default is a SQLite file under SORA_HOME.

# Execution option read by the SQLite "begin" hook: "IMMEDIATE" (default) or "DEFERRED".
SQLITE_BEGIN_OPTION = "sora_sqlite_begin"
READ_ONLY: dict[str, Any] = {SQLITE_BEGIN_OPTION: "DEFERRED"}

# Keys of PostgreSQL advisory locks (any constant int64; these spell "sora" + a suffix).
_VECTOR_LOG_LOCK = 0x736F7261_00000001
_MIGRATE_LOCK = 0x736F7261_00000002

_PACKAGE_MIGRATIONS = "services.store:migrations"


def make_engine(
    url: str | URL, *, echo: bool = False, sqlite_busy_timeout_s: float = 30.0, **kwargs: Any
) -> Engine:
    """One engine per process. Extra keyword arguments go to `create_engine`."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, echo=echo, **kwargs)
        _configure_sqlite(engine, busy_timeout_ms=int(sqlite_busy_timeout_s * 1000))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, echo=echo, **kwargs)


def _is_memory(engine: Engine) -> bool:
    database = engine.url.database
    return not database or database == ":memory:" or "mode=memory" in database


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    memory = _is_memory(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not emit its own BEGIN (it skips SELECTs and SAVEPOINTs);
        # the "begin" hook below does it. See SQLAlchemy's "Transactions with SQLite".
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"{SQLITE_BEGIN_OPTION}={mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Objects stay readable after the `with Session.begin()` block that loaded them."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def lock_vector_log(session: Session) -> None:
    """Serialise the writers of vector rows and tombstones until this transaction ends.

    The index catches up with "ids above my watermark", which is only safe if rows become
    visible in id order. PostgreSQL hands out sequence values at INSERT time, so two
    concurrent transactions could commit ids 101 then 100, and a reader between the two
    commits would skip 100 forever. Taking this lock before allocating ids makes id order
    commit order. SQLite needs nothing: its writers are serialised by the database lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(text(f"pg_advisory_xact_lock({_VECTOR_LOG_LOCK:d})")))


# --- migrations --------------------------------------------------------------------------


def alembic_config(url: str | URL | None = None) -> Any:
    """An Alembic Config pointing at the migrations shipped in this package.

    For developers: `command.revision(alembic_config(url), autogenerate=True, message=...)`
    writes a new migration into services/store/migrations/versions/.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _PACKAGE_MIGRATIONS)
    if url is not None:
        url_str = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
        cfg.set_main_option("sqlalchemy.url", url_str.replace("%", "%%"))
    return cfg


def migrate(target: str | URL | Engine, revision: str = "head") -> None:
    """Upgrade the database to `revision`. Idempotent and safe to run from several processes
    starting at once (PostgreSQL: an advisory lock; SQLite: BEGIN IMMEDIATE, and a retry:
    a new SQLite file's first connections can get "database is locked" at once, without
    the busy timeout, e.g. while switching it to WAL under another's migration)."""
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        deadline = time.monotonic() + SQLITE_MIGRATE_RETRY_S
        for attempt in itertools.count(1):
            try:
                return _migrate_once(engine, revision)
            except OperationalError as exc:
                locked = engine.dialect.name == "sqlite" and "locked" in str(exc)
                if not locked or time.monotonic() > deadline:
                    raise
                log.info("migrate: SQLite database locked; attempt %d again", attempt + 1)
                time.sleep(min(0.05 * attempt, 1.0))
    finally:
        if engine is not target:
            engine.dispose()


SQLITE_MIGRATE_RETRY_S = 60.0


def _migrate_once(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations copy and drop tables; with foreign keys on, dropping a
            # parent would cascade. The pragma only works outside a transaction.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATE_LOCK:d})"))
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, revision)
                if sqlite:
                    bad = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if bad:
                        raise RuntimeError(f"migration broke foreign keys: {bad[:5]}")
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys = ON")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found in the package"
    return head


@dataclass
class Store:
    """The process's engine and sessionmakers.

    `Session` is for work that writes (or reads then writes). `ReadSession` is for pure
    reads: on SQLite its transactions begin DEFERRED, so they neither take nor wait for
    the write lock; on PostgreSQL the two are the same.
    """

    engine: Engine
    Session: sessionmaker[Session]
    ReadSession: sessionmaker[Session]

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str | URL, *, run_migrations: bool = True, **engine_kw: Any) -> Store:
    """Engine + sessionmaker for `url` (the caller's: `Settings.database_url`), migrated to head
    unless `run_migrations=False` (e.g. a read replica whose schema another process owns)."""
    engine = make_engine(url, **engine_kw)
    if run_migrations:
        migrate(engine)
    return Store(
        engine=engine,
        Session=make_sessionmaker(engine),
        ReadSession=make_sessionmaker(engine.execution_options(**READ_ONLY)),
    )
