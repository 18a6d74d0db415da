"""Random copy edits (sora_encoder/copy_edits.py) and the edit study's metrics
(sora_encoder/eval/edit_study.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sora_encoder.copy_edits import EditError, apply_edit, random_edit
from sora_encoder.eval.edit_study import edit_queries, edit_study_metrics
from sora_encoder.files import LabelledVideo
from sora_encoder.media import probe
from tests.media_factory import make_video


@pytest.mark.parametrize("size", [(160, 120), (90, 160), (64, 64)])
def test_random_edits_write_a_playable_copy_of_the_expected_length(tmp_path, size):
    src = make_video(tmp_path / "src.mp4", duration_s=3, size=size, fps=12)
    info = probe(src)
    rng = random.Random(1)
    for n in range(4):
        edit = random_edit(info, rng)
        assert len(edit.names) >= 2 and 23 <= edit.crf <= 40
        assert 0 <= edit.start_s and edit.start_s + edit.duration_s <= info.duration_s + 1e-6
        out = probe(apply_edit(src, tmp_path / f"e{n}.mp4", edit))
        assert out.width % 2 == 0 and out.height % 2 == 0
        assert abs(out.duration_s - edit.duration_s) < 0.5, edit


def test_the_same_seed_draws_the_same_edits():
    info = type("I", (), {"width": 320, "height": 240, "duration_s": 10.0})()
    a = [random_edit(info, random.Random(5)) for _ in range(2)]
    assert a[0] == a[1]


def test_an_unreadable_source_is_an_edit_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    info = type("I", (), {"width": 160, "height": 120, "duration_s": 2.0})()
    with pytest.raises(EditError, match="could not edit"):
        apply_edit(bad, tmp_path / "out.mp4", random_edit(info, random.Random(0)))
    assert not list(tmp_path.glob("out*"))  # no half-written file left


def test_edit_queries_take_one_clip_per_group_and_reuse_their_files(tmp_path):
    items = [
        LabelledVideo(make_video(tmp_path / f"{n}.mp4", duration_s=2, fps=8), "", g)
        for n, g in enumerate(["a", "a", "b"])
    ]
    q = edit_queries(items, tmp_path / "work", per_group=2, seed=3)
    assert [i for i, _, _ in q] == [0, 0, 2, 2]  # group a's first clip, then b's
    stamps = [p.stat().st_mtime_ns for _, p, _ in q]
    again = edit_queries(items, tmp_path / "work", per_group=2, seed=3)
    assert [p for _, p, _ in again] == [p for _, p, _ in q]
    assert [p.stat().st_mtime_ns for _, p, _ in again] == stamps


def test_edit_study_metrics_on_a_hand_made_case():
    e = np.eye(4, dtype=np.float32)
    library = e  # four videos, groups a, a, b, c
    groups = ["a", "a", "b", "c"]
    good = (e[2] * 0.9 + e[3] * 0.1)[None]  # near video 2: right, clear of the others
    confused = (e[0] * 0.5 + e[3] * 0.6)[None]  # a copy of 0 that looks more like 3
    queries = np.concatenate([good, confused]) / np.linalg.norm(
        np.concatenate([good, confused]), axis=1, keepdims=True
    )
    m = edit_study_metrics(library, groups, queries, [2, 0], k=1)
    assert m["queries"] == 2 and m["top1"] == 0.5
    assert 0.0 <= m["auc"] <= 1.0 and m["recall@fpr1%"] <= m["top1"]


def test_edit_study_metrics_need_matching_sources():
    with pytest.raises(ValueError):
        edit_study_metrics(np.eye(3), ["a", "b", "c"], np.eye(3)[:2], [0])


def test_run_edit_study_reports_each_embedder_on_the_same_edits(tmp_path):
    from sora_encoder import load_embedder
    from sora_encoder.eval.edit_study import run_edit_study

    sources = ["testsrc2", "mandelbrot", "smptebars"]
    items = [
        LabelledVideo(make_video(tmp_path / f"{s}.mp4", duration_s=3, fps=8, source=s), "", s)
        for s in sources
    ]
    tiny = load_embedder(variant="sora-t", precision="fp32")
    seen = []
    out = run_edit_study(
        items, {"a": tiny, "b": tiny}, tmp_path / "work", per_group=1,
        progress=lambda what, n, total: seen.append(what),
    )  # fmt: skip
    assert out["setup"]["queries"] == 3 and sum(out["setup"]["edits"].values()) >= 6
    assert out["metrics"]["a"] == out["metrics"]["b"]  # same model, same edits, same figures
    m = out["metrics"]["a"]
    assert m["queries"] == 3 and m["model_version"] == tiny.model_version
    assert {"a library", "a queries", "b library", "b queries"} <= set(seen)


def test_cli_eval_edits_on_a_folder(tmp_path, capsys):
    import json

    from sora_cli.main import main

    (tmp_path / "videos").mkdir()
    for s in ("testsrc2", "mandelbrot", "smptebars"):
        make_video(tmp_path / "videos" / f"{s}.mp4", duration_s=3, fps=8, source=s)
    out = tmp_path / "edits.json"
    argv = ["eval", "edits", str(tmp_path / "videos"), "--side", "all", "--per-group", "1",
            "--variant", "sora-t", "--json", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "3 edited copies of 3 videos" in printed and "| sora |" in printed
    assert json.loads(out.read_text())["metrics"]["sora"]["queries"] == 3
    assert main(["eval", "edits", str(tmp_path / "nothing")]) == 2
