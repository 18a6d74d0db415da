"""Scratch PostgreSQL databases for the benchmarks.

A library is loaded once into a cache database and cloned for each run: CREATE DATABASE
... TEMPLATE copies files (seconds for a 10^6-segment library, where loading it again
through INSERTs takes minutes), and a run's ingest writes into its own clone, never into
the cache. Clones are dropped after the run (WITH (FORCE): a server process that was
killed may leave a connection behind).
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"  # as the tests' default


def database_url(base: str, name: str) -> str:
    """`base` (any database of the server) pointed at database `name`."""
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def _admin(base: str) -> Engine:
    # CREATE/DROP DATABASE cannot run inside a transaction block
    return create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def exists(base: str, name: str) -> bool:
    engine = _admin(base)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
        return found is not None
    finally:
        engine.dispose()


def create(base: str, name: str, template: str | None = None) -> str:
    """A new empty database `name` (a copy of `template` if given), replacing any of that
    name -> its URL."""
    engine = _admin(base)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            copy = f' TEMPLATE "{template}"' if template else ""
            conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        engine.dispose()
    return database_url(base, name)


def drop(base: str, name: str) -> None:
    engine = _admin(base)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def advance_sequences(url: str, tables: tuple[str, ...]) -> None:
    """Move each table's id sequence past the rows inserted with explicit ids (bulk loads
    give ids 1..n), so that later INSERTs (a run's ingest) do not collide with them."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for table in tables:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
                    )
                )
    finally:
        engine.dispose()
