"""Copy scores: background normalisation, the leave-one-group-out threshold, the file."""

from __future__ import annotations

import numpy as np
import pytest

from sora_encoder.copy_score import (
    CALIBRATION_NAME,
    CopyCalibration,
    build_calibration,
    load_calibration,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _background(n: int = 40, d: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    videos = _unit(rng.normal(size=(n, d)))
    segments = [_unit(v + 0.1 * rng.normal(size=(3, d))) for v in videos]
    return videos, segments, [f"g{i // 2}" for i in range(n)]  # pairs share a group


def test_reference_is_the_mean_of_the_k_best_background_cosines():
    bg = _unit(np.eye(4, dtype=np.float32))
    cal = CopyCalibration("v", {"video": bg, "segment": bg}, k=2)
    xq = _unit(np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], np.float32))
    ref = cal.reference(xq)
    assert ref == pytest.approx([np.sqrt(0.5), 0.5], abs=1e-6)  # (0.707+0.707)/2, (1+0)/2
    scores = cal.copy_scores(np.array([[0.9, 0.2], [0.9, 0.2]]), ref)
    assert scores[0] == pytest.approx([0.9 - np.sqrt(0.5), 0.2 - np.sqrt(0.5)], abs=1e-6)
    with pytest.raises(ValueError):
        cal.reference(np.ones((1, 3), np.float32))


def test_a_crowded_query_is_lowered_more_than_a_distinctive_one():
    rng = np.random.default_rng(1)
    centre = _unit(rng.normal(size=16))
    crowd = _unit(centre + 0.2 * rng.normal(size=(30, 16)))  # generic footage, all alike
    bg = np.concatenate([crowd, _unit(rng.normal(size=(30, 16)))])
    cal = CopyCalibration("v", {"video": bg, "segment": bg})
    generic = _unit(centre + 0.2 * rng.normal(size=(1, 16)))
    distinctive = _unit(rng.normal(size=(1, 16)))
    assert cal.reference(generic)[0] > cal.reference(distinctive)[0] + 0.3


def test_threshold_separates_copies_from_non_copies_on_held_out_vectors():
    videos, segments, groups = _background()
    cal = build_calibration("sora-t-1", videos, segments, groups, k=5, quantile=0.95)
    rng = np.random.default_rng(7)
    library = _unit(rng.normal(size=(50, 16)))
    copies = _unit(library[:10] + 0.05 * rng.normal(size=(10, 16)))
    strangers = _unit(rng.normal(size=(40, 16)))
    for queries, want in ((copies, True), (strangers, False)):
        sims = queries @ library.T
        best = cal.copy_scores(sims.max(axis=1), cal.reference(queries))
        share = np.mean(cal.is_copy(best))
        assert share >= 0.9 if want else share <= 0.15
    assert cal.meta["videos"] == 40 and cal.meta["groups"] == 20


def test_build_refuses_too_few_groups_and_mismatched_inputs():
    videos, segments, groups = _background(6)
    with pytest.raises(ValueError, match="3 groups"):
        build_calibration("v", videos, segments, ["a", "a", "a", "b", "b", "b"])
    with pytest.raises(ValueError, match="segment arrays"):
        build_calibration("v", videos, segments[:-1], groups)


def test_file_round_trip_and_a_calibration_of_another_model_is_ignored(tmp_path):
    videos, segments, groups = _background()
    cal = build_calibration("sora-t-1", videos, segments, groups)
    cal.save(tmp_path)
    assert (tmp_path / CALIBRATION_NAME).is_file()
    back = load_calibration(tmp_path, "sora-t-1")
    assert back is not None and back.threshold == pytest.approx(cal.threshold)
    assert back.k == cal.k and back.background["segment"].shape == (120, 16)
    xq = videos[:3]
    np.testing.assert_allclose(back.reference(xq), cal.reference(xq), atol=2e-3)  # fp16
    assert load_calibration(tmp_path, "sora-t-2") is None
    assert load_calibration(tmp_path / "nowhere") is None
