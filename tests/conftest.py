"""Shared pytest fixtures. Each block is owned by one part of the project; append new
blocks below rather than editing another's."""

from __future__ import annotations

# ===== services.store: database fixtures (owned by the storage layer) =====================
#
#   store_backend   module-scoped, parametrized: "sqlite" and "postgresql"
#   store           a migrated Store (engine + sessionmaker) per module and backend
#   db              `store`, emptied before each test (the usual fixture for store tests)
#   empty_db_url    a brand-new, never-migrated database URL per test (for migration tests)
#   postgres_url    the server URL, or the test is skipped with the reason
#
# PostgreSQL: $SORA_TEST_POSTGRES_URL, default postgresql+psycopg2://postgres@127.0.0.1:5432/test.
# Each database is a fresh schema (search_path set in the URL), dropped afterwards, so runs
# are isolated and repeatable. SQLite: a file in pytest's tmp dir.
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

STORE_BACKENDS = ("sqlite", "postgresql")
POSTGRES_URL_ENV = "SORA_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    shown = make_url(url).render_as_string(hide_password=True)
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except OperationalError as e:
        reason = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        message = f"PostgreSQL unreachable at {shown} (set ${POSTGRES_URL_ENV}): {reason}"
        if os.environ.get("SORA_REQUIRE_SERVERS"):  # CI: a missing server is a failure
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@contextmanager
def _empty_database(backend: str, tmp_dir: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"sora_test_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir / (name + '.db')}"
        return
    base = request.getfixturevalue("postgres_url")
    admin = create_engine(base, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        url = make_url(base).update_query_dict({"options": f"-csearch_path={name}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="module", params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_db_url(store_backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    with _empty_database(store_backend, tmp_path, request) as url:
        yield url


@pytest.fixture(scope="module")
def store(store_backend: str, tmp_path_factory: pytest.TempPathFactory, request):
    from services.store import open_store

    with _empty_database(store_backend, tmp_path_factory.mktemp("store"), request) as url:
        st = open_store(url)
        try:
            yield st
        finally:
            st.dispose()


@pytest.fixture
def db(store):
    """The module's store, with every table emptied first."""
    from services.store.models import Base

    with store.Session.begin() as session:
        # DELETE, not TRUNCATE: on tables this small it is several times faster.
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    return store


# ===== end of services.store fixtures =====================================================
