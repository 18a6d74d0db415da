"""Model change: `sora reindex` re-embeds in the background; searches serve the old version
until the new one covers every video, then switch. Real workers, embedded stack."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.index import IndexSet
from services.store import Segment, open_store, serving_model_version
from tests.media_factory import make_video
from tests.workers_harness import IngestEnv

pytestmark = pytest.mark.slow


def test_reindex_switches_only_when_complete(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for i, src in enumerate(("testsrc2", "mandelbrot", "smptebars")):
        make_video(lib / f"v{i}.mp4", duration_s=5.0, source=src, size=(128, 96))
    home = tmp_path / "home"
    home.mkdir()
    env = IngestEnv(home, f"sqlite:///{home / 'sora.db'}", f"sqla+sqlite:///{home / 'broker.db'}")
    store = open_store(env.database_url)
    try:
        env.extra_env = {"SORA_VARIANT": "sora-t"}
        env.start_worker()
        res = env.sora("ingest", "--direct", str(lib), "--wait", "--timeout", "120")
        assert res.returncode == 0, res.stdout + res.stderr + env.worker_logs()
        with store.ReadSession.begin() as s:
            (old,) = set(s.scalars(select(Segment.model_version)))
            assert old.startswith("sora-t-")
            assert serving_model_version(s, old) == old
        env.stop_workers()

        # The configured model changes. Queue the reindex before any new worker runs:
        # nothing is re-embedded yet, so searches must still be served by the old version.
        env.extra_env = {"SORA_VARIANT": "sora-s"}
        res = env.sora("reindex")
        assert res.returncode == 0, res.stderr
        assert "3 job(s) queued, 3 video(s) to re-embed" in res.stdout
        new = res.stdout.split()[1].rstrip(":")
        assert new.startswith("sora-s-") and new != old
        with store.ReadSession.begin() as s:
            assert serving_model_version(s, new) == old

        env.start_worker()
        res = env.sora("reindex", "--wait", "--timeout", "120")
        assert res.returncode == 0, res.stdout + res.stderr + env.worker_logs()
        assert f"serving {new}" in res.stdout.splitlines()[-1]
        with store.ReadSession.begin() as s:
            assert serving_model_version(s, new) == new
        # One index per version, never mixed: each holds exactly its own version's vectors.
        for version, dim in ((old, 64), (new, 256)):
            indexes = IndexSet(store, version, home / "index")
            for st in indexes.sync():
                assert st.ntotal == st.sql_count == (6 if st.level == "segment" else 3), st
            assert {index.dim for index in indexes.indexes.values()} == {dim}
            assert len(indexes.indexes) == 2
    finally:
        env.stop_workers()
        store.dispose()
