"""GPU placement: the searched copy lives on the GPU, the CPU index stays the truth."""

# ruff: noqa: E741
from __future__ import annotations

import numpy as np
import pytest

from services.index import VectorIndex, gpu_available
from tests.memory_vector_source import MemoryVectorSource, clustered_unit_vectors

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_available(), reason="needs faiss-gpu and a CUDA device"),
]


@pytest.mark.parametrize("threshold", [100_000, 1_000], ids=["exact", "ivf"])
def test_gpu_search_matches_cpu_and_follows_sync(tmp_path, threshold):
    src = MemoryVectorSource(64)
    xb = clustered_unit_vectors(20_000, 64, seed=0)
    ids = src.add("segment", "v1", xb)
    kw = dict(exact_threshold=threshold)
    gpu = VectorIndex("segment", "v1", 64, tmp_path / "g", src, use_gpu=True, **kw)
    cpu = VectorIndex("segment", "v1", 64, tmp_path / "c", src, use_gpu=False, **kw)
    gpu.load_or_build()
    cpu.load_or_build()
    D_g, I_g = gpu.search(xb[:100], 10)
    D_c, I_c = cpu.search(xb[:100], 10)
    assert (I_g[:, 0] == ids[:100]).mean() >= 0.99
    assert (I_g == I_c).mean() >= 0.95
    np.testing.assert_allclose(D_g[:, 0], D_c[:, 0], atol=1e-3)

    new = src.add("segment", "v1", xb[:5] * -1)  # unit, and far from everything else
    src.delete("segment", "v1", ids[:5])
    gpu.sync()
    _, I = gpu.search(-xb[:5], 1)
    np.testing.assert_array_equal(I[:, 0], new)
    assert gpu.ntotal == src.count("segment", "v1")
    gpu.save_snapshot()  # written from the CPU copy
