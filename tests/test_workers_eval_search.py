"""`sora@service`: the worker's ingest and the search service, in-process, as an eval
matcher: a copy finds its original through SearchService, a file the worker cannot ingest
is never found, and the temporary store is gone afterwards."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from sora_encoder import load_embedder
from tests.media_factory import make_video
from workers.eval_search import ServiceSearchMatcher

pytestmark = pytest.mark.slow


def test_service_search_finds_the_copy_and_never_the_broken_file(tmp_path: Path) -> None:
    def video(name: str, source: str, **kw) -> Path:
        return make_video(tmp_path / name, duration_s=4, fps=8, size=(96, 72), source=source, **kw)

    a, b = video("a.mp4", "testsrc2"), video("b.mp4", "mandelbrot")
    copy = video("a_copy.mp4", "testsrc2", codec="mpeg4")  # a, re-encoded
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    m = ServiceSearchMatcher(load_embedder(variant="sora-t", precision="fp32"))
    assert m.copy_threshold is None and m.key.startswith("service:sora-t")
    xq = [m.hash_file(p) for p in (copy, b)]
    tmp_root = Path(tempfile.gettempdir())
    before = set(tmp_root.glob("sora-eval-service-*"))
    D = m.score_matrix(xq, [a, b, broken])  # (2 queries, 3 database files)
    assert D.shape == (2, 3)
    assert np.isnan(D[:, 2]).all()  # the worker failed it: never found
    assert np.argmax(D[0, :2]) == 0 and np.argmax(D[1, :2]) == 1  # each finds its own
    assert np.isfinite(D[:, :2]).all()  # top_k covers the whole database
    # each query's top hit says where it matched: its own source, inside its 4 s
    assert [t[0] for t in m.top_ranges] == [0, 1]
    assert all(0.0 <= t[1] < t[2] <= 4.0 + 1e-6 for t in m.top_ranges)
    assert set(tmp_root.glob("sora-eval-service-*")) <= before  # the store is removed
