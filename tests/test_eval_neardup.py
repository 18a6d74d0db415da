"""Retrieval metrics on hand-made cases, the protocol's selection, decode-once embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sora_encoder.eval import data
from sora_encoder.eval.data import embed_files, read_manifest, scan_folder
from sora_encoder.eval.neardup import (
    _boundary_metrics,
    average_precision,
    default_non_copies,
    ranking_metrics,
    relevant_ranks,
    retrieval_metrics,
    select,
)
from sora_encoder.eval.splits import split_of
from sora_encoder.eval.transforms import get_family
from sora_encoder.files import LabelledVideo
from sora_encoder.runtime import InputSpec


def test_ranks_are_pessimistic_on_ties_and_skip_junk() -> None:
    scores = np.array([0.9, 0.5, 0.8, 0.8, 0.1])
    rel = np.array([False, False, True, False, False])
    assert relevant_ranks(scores, rel).tolist() == [3.0]  # 0.9 and the tied 0.8 go first
    junk = np.array([True, False, False, False, False])
    assert relevant_ranks(scores, rel, junk).tolist() == [2.0]
    both = np.array([False, True, True, False, False])
    assert relevant_ranks(scores, both).tolist() == [3.0, 4.0]


def test_average_precision() -> None:
    assert average_precision(np.array([1.0])) == 1.0
    assert average_precision(np.array([4.0])) == 0.25
    assert average_precision(np.array([1.0, 3.0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([np.inf])) == 0.0
    with pytest.raises(ValueError):
        average_precision(np.array([]))


def test_retrieval_metrics_on_a_hand_made_case() -> None:
    # Database: 12 unit vectors at angles 0, 10, ..., 110 degrees.
    angles = np.deg2rad(np.arange(12) * 10.0)
    xb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    xq = np.stack(
        [
            xb[0],  # finds item 0 first
            np.array([np.cos(np.deg2rad(52)), np.sin(np.deg2rad(52))]),  # nearest 5, 6, 4 ...
            np.full(2, np.nan),  # a failed query: a miss
        ]
    )
    relevant = np.zeros((3, 12), bool)
    relevant[0, 0] = True  # rank 1
    relevant[1, 4] = True  # rank 3 (after 5 at 2 deg and 6 at 8 deg)
    relevant[2, 7] = True  # never found
    junk = np.zeros_like(relevant)
    m = retrieval_metrics(xq, xb, relevant, ks=(1, 2, 10))
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["mAP"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["queries"] == 3
    junk[1, 5] = True  # item 5 is junk for query 1: item 4 moves up to rank 2
    m = retrieval_metrics(xq, xb, relevant, junk, ks=(2,))
    assert m["recall@2"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no relevant"):
        retrieval_metrics(xq[:1], xb, np.zeros((1, 12), bool))


def _items(n_groups: int, per_group: int) -> list[LabelledVideo]:
    return [
        LabelledVideo(Path(f"/v/g{g}_{k}.mp4"), "x", f"g{g}")
        for g in range(n_groups)
        for k in range(per_group)
    ]


def test_select_takes_one_clip_per_test_group() -> None:
    items = _items(40, 3)
    s = select(items)
    test_groups = {it.group for it in items if split_of(it.group) == "test"}
    assert {o.group for o in s.originals} == test_groups
    assert len(s.originals) == len(test_groups)  # one per group
    assert all(o.path.name.endswith("_0.mp4") for o in s.originals)  # the first by path
    side = [it for it in s.database if it.group in test_groups]
    assert len(side) == 3 * len(test_groups)  # the whole test side
    assert len(s.database) - len(side) == s.distractors == 120 - len(side)
    limited = select(items, limit=2, distractors=5)
    assert len(limited.originals) == 2 and limited.distractors == 5
    assert select(items, limit=2).originals == limited.originals  # deterministic
    assert {o.group for o in limited.originals} <= test_groups
    with pytest.raises(ValueError, match="no group"):
        select(items[:3], test_fraction=0.0)


def test_non_copies_hold_their_whole_group_out_of_the_database() -> None:
    items = _items(40, 3)
    full = select(items)
    s = select(items, non_copies=2)
    held = {it.group for it in s.non_copies}
    assert len(s.non_copies) == 2 and len(held) == 2
    assert not held & {it.group for it in s.database}  # no clip of a held-out group
    assert not held & {o.group for o in s.originals}
    assert len(s.originals) == len(full.originals) - 2
    assert len(s.database) == len(full.database) - 2 * 3
    assert select(items, non_copies=2, limit=1).non_copies == s.non_copies  # limit: copies only
    n_side = len(full.originals)
    assert len(select(items, non_copies=None).non_copies) == default_non_copies(n_side)
    assert default_non_copies(14) == 3 and default_non_copies(3) == 0
    with pytest.raises(ValueError, match="no copy queries"):
        select(items, non_copies=n_side)


def test_ranking_metrics_take_any_scores() -> None:
    D = np.array([[0.1, 0.9, 0.5], [0.8, np.nan, 0.2]])  # query 1's source (item 1) failed
    R = np.array([[False, True, False], [False, True, False]])
    m = ranking_metrics(D, R, ks=(1,))
    assert m["recall@1"] == 0.5 and m["mAP"] == 0.5 and m["queries"] == 2


def test_read_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("path,label,group,duration_s\na.mp4,cat,7,2.5\n")
    (item,) = read_manifest(tmp_path / "m.csv")
    assert item == LabelledVideo((tmp_path / "a.mp4").resolve(), "cat", "7", 2.5)
    (tmp_path / "bad.csv").write_text("path,label\na.mp4,cat\n")
    with pytest.raises(ValueError, match="group"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "gone.csv").write_text("path,label,group\nb.mp4,cat,1\n")
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "gone.csv")


def test_scan_folder_makes_each_video_its_own_group(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.mp4", "sub/a.MKV", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    items = scan_folder(tmp_path)
    assert [(it.path.name, it.group, it.label) for it in items] == [
        ("b.mp4", "b.mp4", ""),
        ("a.MKV", "sub/a.MKV", ""),
    ]
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "missing")


class _Counting:
    """A fake embedder: the mean colour of each clip, counting its calls."""

    def __init__(self, name: str, key: str) -> None:
        self.name, self.key, self.dim = name, key, 3
        self.input_spec = InputSpec(frames=2, size=4)
        self.clips_seen = 0

    def embed_clips(self, clips: np.ndarray) -> np.ndarray:
        self.clips_seen += len(clips)
        v = clips.reshape(len(clips), -1, 3).mean(axis=1) + 1.0
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_each_file_is_decoded_once_for_all_embedders_and_views(monkeypatch) -> None:
    decoded = []
    segments = {"a": 1, "b": 3, "c": 2}

    def fake_decode(path, spec, **kw):
        decoded.append(Path(path).name)
        if Path(path).name == "bad":
            raise data.MediaError("not a video", path=path)
        n = segments[Path(path).name]
        return np.full((n, spec.frames, spec.size, spec.size, 3), len(decoded), np.uint8)

    monkeypatch.setattr(data, "decode_file", fake_decode)
    sora, same, other = _Counting("sora", "k1"), _Counting("untrained", "k1"), _Counting("t", "k2")
    vec = embed_files(
        ["a", "bad", "b", "c"],
        [sora, same, other],
        views={**data.FORWARD, **data.REVERSED},
        pool_clips=4,
    )
    assert decoded == ["a", "bad", "b", "c"]  # once per file
    assert sora.clips_seen == 2 * 6 and same.clips_seen == 0  # shared key: computed once
    assert other.clips_seen == 2 * 6
    assert set(vec.failed) == {Path("bad")}
    assert vec.ok() == [0, 2, 3]
    assert [s.shape for s in vec.segments[("untrained", "reversed")] if s is not None] == [
        (1, 3),
        (3, 3),
        (2, 3),
    ]
    assert vec.videos("t").shape == (3, 3)


def test_a_cut_family_knows_which_seconds_of_its_source_it_shows() -> None:
    assert get_family("trim").source_span(20.0) == pytest.approx((4.0, 16.0))
    assert get_family("trim+speed+letterbox").source_span(10.0) == pytest.approx((2.0, 8.0))
    assert get_family("speed").source_span(10.0) is None  # shows the whole source


def test_boundary_metrics_pool_both_ends_of_correct_top_hits() -> None:
    fams = {f: get_family(f) for f in ("trim", "grey")}
    db = [
        LabelledVideo(Path("/a.mp4"), "", "g0", 20.0),
        LabelledVideo(Path("/b.mp4"), "", "g1", 10.0),
    ]
    source = np.array([0, 1, 1, 0, -1])
    fam_of = np.array(["trim", "trim", "trim", "grey", "trim"])
    ranges = {
        0: (0, 4.5, 15.0),  # truth 4-16: errors 0.5 and 1.0
        1: (0, 2.0, 8.0),  # top hit is not its source: not counted
        2: (1, 2.0, 8.0),  # truth 2-8: exact
        3: (0, 0.0, 20.0),  # grey does not cut: not counted
        4: (1, 0.0, 1.0),  # a non-copy query: no truth
    }
    m = _boundary_metrics(ranges, source >= 0, source, fam_of, fams, db)
    assert m["boundaries"] == 4
    assert m["boundary_error_median_s"] == pytest.approx(0.25)
    assert m["boundary_within_1s"] == 1.0
    assert _boundary_metrics({}, source >= 0, source, fam_of, fams, db) == {}
