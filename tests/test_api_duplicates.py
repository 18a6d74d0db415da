"""FindDuplicates through a real server: groups as connected components of copy pairs, each
pair with its matched ranges; the copy verdict as the default criterion and min_score as
the override; progress and pages on the stream; collections; refusals; the batch of
video-id queries read in a few SQL statements, not a few per video."""

from __future__ import annotations

import hashlib
import threading

import grpc
import numpy as np
import pytest
from sqlalchemy import event

from services.api.gen.sora.v1 import sora_pb2 as pb
from services.index import VideoInfo
from services.search.duplicates import DuplicatePair, group_pairs, unique_pairs
from services.store import VideoStatus
from sora_encoder.copy_score import CopyCalibration
from tests.test_api_harness import *  # noqa: F403 - fixtures
from tests.test_api_harness import DIM, MODEL, Api, add_video, unit


def _library(api: Api, rng) -> dict[str, int]:
    """Unrelated videos, plus: `b` shares a's segments 1-3 (12 s), `c` is b re-encoded,
    `e` is d (a pair sharing 12 s of 20-24 s scores ~0.84: the video vectors' cosine is
    mixed into the aligned score); nothing in dimension DIM - 1 (the calibration's
    background lives there)."""

    def rows(n: int) -> np.ndarray:
        x = rng.normal(size=(n, DIM))
        x[:, -1] = 0.0
        return unit(x)

    def near(x: np.ndarray) -> np.ndarray:
        y = x + 0.02 * rng.normal(size=x.shape)
        y[:, -1] = 0.0
        return unit(y)

    ids = {f"u{i}": add_video(api.store, rows(4), collection="c1", title=f"u{i}")
           for i in range(8)}  # fmt: skip
    a = rows(6)
    b = np.concatenate([rows(1), near(a[1:4]), rows(1)])  # b 4-16 s = a 4-16 s
    ids["a"] = add_video(api.store, a, collection="c1", title="a")
    ids["b"] = add_video(api.store, b, collection="c1", title="b")
    ids["c"] = add_video(api.store, near(b), collection="c2", title="c")
    d = rows(3)
    ids["d"] = add_video(api.store, d, collection="c2", title="d")
    ids["e"] = add_video(api.store, near(d), collection="c2", title="e")
    api.sync()
    return ids


def _stream(api: Api, **kw) -> list[pb.FindDuplicatesResponse]:
    request = pb.FindDuplicatesRequest(**kw)
    return list(api.client.stub.FindDuplicates(request, metadata=api.client._auth, timeout=30))


def test_groups_are_connected_copies_with_their_matched_ranges(api: Api):
    ids = _library(api, np.random.default_rng(1))
    progress = []
    found = api.client.find_duplicates(min_score=0.8, on_progress=progress.append)
    assert [sorted(g.video_ids) for g in found.groups] == [
        sorted([ids["a"], ids["b"], ids["c"]]),
        sorted([ids["d"], ids["e"]]),
    ]
    assert found.model_version == MODEL and found.min_score == pytest.approx(0.8)
    assert found.copy_threshold is None  # the test model has no calibration
    # 13 videos searched in one batch, then the pairs refined (no files here: unmoved)
    assert progress[0].videos_searched == progress[0].videos_total == 13
    assert progress[0].pairs_found == 4  # a-b, a-c (c holds the same part of a), b-c, d-e
    pairs = {frozenset((p.query.video.id, p.target.video.id)): p for p in found.groups[0].pairs}
    assert set(pairs) == {frozenset((ids[x], ids[y])) for x, y in ("ab", "ac", "bc")}
    ab = pairs[frozenset((ids["a"], ids["b"]))]
    side = {ab.query.video.id: ab.query, ab.target.video.id: ab.target}
    assert (side[ids["a"]].range.start_s, side[ids["a"]].range.end_s) == (4.0, 16.0)
    assert (side[ids["b"]].range.start_s, side[ids["b"]].range.end_s) == (4.0, 16.0)
    assert 0.8 <= ab.score < 0.9 and not ab.refined and not ab.HasField("is_copy")
    bc = pairs[frozenset((ids["b"], ids["c"]))]
    assert (bc.query.range.start_s, bc.query.range.end_s) == (0.0, 20.0)
    assert (bc.target.range.start_s, bc.target.range.end_s) == (0.0, 20.0)
    assert bc.query.video.title in {"b", "c"} and bc.target.video.collection in {"c1", "c2"}


def test_the_copy_verdict_is_the_default_criterion(api: Api, monkeypatch):
    ids = _library(api, np.random.default_rng(2))
    with pytest.raises(grpc.RpcError) as e:  # no calibration, no min_score: nothing to go by
        api.client.find_duplicates()
    assert e.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "no copy calibration" in e.value.details() and "min_score" in e.value.details()
    # A background orthogonal to the library: every reference is 0, copy score = score.
    background = np.zeros((1, DIM), np.float32)
    background[0, -1] = 1.0
    cal = CopyCalibration(MODEL, {"video": background, "segment": background}, k=1,
                          threshold=0.8)  # fmt: skip
    monkeypatch.setattr(api.server.services.search, "_calibration", lambda v: cal)
    found = api.client.find_duplicates()
    assert found.copy_threshold == pytest.approx(0.8) and found.min_score is None
    assert [sorted(g.video_ids) for g in found.groups] == [
        sorted([ids["a"], ids["b"], ids["c"]]),
        sorted([ids["d"], ids["e"]]),
    ]
    for p in found.groups[0].pairs:
        assert p.is_copy and p.copy_score == pytest.approx(p.score, abs=1e-5)
    # min_score overrides the verdict: a low one joins unrelated videos too
    loose = api.client.find_duplicates(min_score=-1.0)
    assert len(loose.groups) == 1 and len(loose.groups[0].video_ids) == 13


def test_pages_progress_and_collections(api: Api):
    ids = _library(api, np.random.default_rng(3))
    messages = _stream(api, min_score=0.8, page_size=1)
    kinds = [m.WhichOneof("part") for m in messages]
    assert kinds[0] == "progress" and kinds[-2:] == ["page", "page"]
    pages = [m.page for m in messages if m.WhichOneof("part") == "page"]
    assert [(p.page, p.last, p.groups_total, len(p.groups)) for p in pages] == [
        (0, False, 2, 1),
        (1, True, 2, 1),
    ]
    # a collection limits the queries and the matches: c2 holds c, d, e
    c2 = api.client.find_duplicates(min_score=0.8, collection="c2")
    assert [sorted(g.video_ids) for g in c2.groups] == [sorted([ids["d"], ids["e"]])]
    none = _stream(api, min_score=0.8, collection="nothing-here")
    assert [m.WhichOneof("part") for m in none] == ["page"]
    assert none[0].page.last and none[0].page.groups_total == 0


def test_refusals_say_what_to_change(api: Api):
    _library(api, np.random.default_rng(4))
    for kw, text in (
        ({"min_score": 0.9, "page_size": 5000}, "page_size 5000: expected 1..1000"),
        ({"min_score": 0.9, "top_k": 5000}, "top_k 5000: expected 1..1000"),
        ({"min_score": 3.0}, "min_score 3.0: expected a cosine in [-1, 1]"),
    ):
        with pytest.raises(grpc.RpcError) as e:
            _stream(api, **kw)
        assert e.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert text in e.value.details()


def test_a_batch_of_video_id_queries_reads_sql_a_few_times_not_per_video(api: Api):
    rng = np.random.default_rng(5)
    ids = [add_video(api.store, unit(rng.normal(size=(3, DIM)))) for _ in range(40)]
    api.sync()
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        if threading.current_thread().name.startswith("sora-rpc"):
            statements.append(statement)

    event.listen(api.store.engine, "before_cursor_execute", record)
    try:
        results = api.client.search_batch(video_ids=ids, top_k=3, exclude_query_video=True)
    finally:
        event.remove(api.store.engine, "before_cursor_execute", record)
    assert len(results) == 40
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # videos, video vectors, segments of the queries; then the candidates' segments in
    # chunks of re-ranking: nowhere near 3 x 40
    assert len(queries) < 40, queries


def _info(video_id: int) -> VideoInfo:
    return VideoInfo(id=video_id, uri=f"/v/{video_id}.mp4", content_sha256="0" * 64,
                     size_bytes=1, status=VideoStatus.READY)  # fmt: skip


def test_unique_pairs_keep_the_better_direction_and_groups_are_components():
    def pair(a: int, b: int, score: float) -> DuplicatePair:
        return DuplicatePair(_info(a), _info(b), (0.0, 4.0), (4.0, 8.0), score)

    pairs = unique_pairs([pair(1, 2, 0.91), pair(2, 1, 0.95), pair(3, 4, 0.99),
                          pair(4, 5, 0.92), pair(7, 6, 0.93)])  # fmt: skip
    assert [(p.query.id, p.target.id, p.score) for p in pairs] == [
        (3, 4, 0.99), (2, 1, 0.95), (7, 6, 0.93), (4, 5, 0.92),
    ]  # fmt: skip
    groups = group_pairs(pairs)
    assert [g.video_ids for g in groups] == [(3, 4, 5), (1, 2), (6, 7)]
    assert [p.score for p in groups[0].pairs] == [0.99, 0.92]


def _add_file_video(api: Api, path, segments: np.ndarray, duration_s: float) -> int:
    """A video whose uri is a real file on this machine (the ranges can be placed by its
    frames), with these segment vectors."""
    from services.store import ProbeFacts, complete_ingest, register_video

    xb = unit(segments)
    with api.store.Session.begin() as s:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        video, job, _ = register_video(s, uri=str(path), content_sha256=sha,
                                       size_bytes=path.stat().st_size, title=path.stem)  # fmt: skip
        complete_ingest(
            s, job.id, video.id, model_version=MODEL,
            segments=[(i, 4.0 * i, min(duration_s, 4.0 * (i + 1)), xb[i]) for i in range(len(xb))],
            video_vector=unit(xb.mean(axis=0)),
            probe=ProbeFacts(duration_s=duration_s, fps=25.0, width=160, height=120),
        )  # fmt: skip
        return video.id


def test_an_excerpt_is_placed_inside_its_source_by_frames(api: Api, tmp_path):
    """The source is searched as the query too, but the pair's ranges are placed with the
    excerpt (the shorter video) sliding along the source: 6.5-14.5 s, not 4-s steps."""
    from tests.media_factory import ffmpeg_run, make_video

    source = make_video(tmp_path / "source.mp4", duration_s=20.0, fps=25, size=(160, 120))
    excerpt = tmp_path / "excerpt.mp4"
    ffmpeg_run(["-y", "-ss", "6.5", "-i", str(source), "-t", "8", "-vf", "scale=128:96",
                "-c:v", "libx264", "-preset", "ultrafast", str(excerpt)])  # fmt: skip
    rng = np.random.default_rng(6)
    xs = unit(rng.normal(size=(5, DIM)))
    xe = unit(xs[1:4] + 0.05 * rng.normal(size=(3, DIM)))  # ~ the source's 4-16 s
    ids = {"source": _add_file_video(api, source, xs, 20.0),
           "excerpt": _add_file_video(api, excerpt, xe[:2], 8.0)}  # fmt: skip
    for _ in range(4):
        add_video(api.store, unit(rng.normal(size=(3, DIM))))
    api.sync()
    found = api.client.find_duplicates(min_score=0.6)
    [group] = found.groups
    [pair] = group.pairs
    assert pair.query.video.id == ids["excerpt"] and pair.target.video.id == ids["source"]
    assert pair.refined
    assert pair.query.range.start_s == pytest.approx(0.0, abs=0.3)
    assert pair.query.range.end_s == pytest.approx(8.0, abs=0.3)
    assert pair.target.range.start_s == pytest.approx(6.5, abs=0.3)
    assert pair.target.range.end_s == pytest.approx(14.5, abs=0.3)
    unrefined = api.client.find_duplicates(min_score=0.6, refine=False)
    p = unrefined.groups[0].pairs[0]
    assert not p.refined and p.target.range.start_s % 4.0 == 0.0  # segment steps


def test_sora_duplicates_and_search_write_what_reviewers_and_editors_open(
    api: Api, tmp_path, capsys
):
    """The commands end to end: JSON, CSV, the HTML report with a strip per pair, the OTIO
    timeline with the pair's ranges in the media's frames, a search's contact sheet."""
    import csv
    import json

    import opentimelineio as otio
    from PIL import Image

    from sora_cli.main import main
    from tests.media_factory import ffmpeg_run, make_video

    source = make_video(tmp_path / "source.mp4", duration_s=20.0, fps=25, size=(160, 120))
    excerpt = tmp_path / "excerpt.mp4"
    ffmpeg_run(["-y", "-ss", "6.5", "-i", str(source), "-t", "8", "-c:v", "libx264",
                "-preset", "ultrafast", str(excerpt)])  # fmt: skip
    rng = np.random.default_rng(7)
    xs = unit(rng.normal(size=(5, DIM)))
    src = _add_file_video(api, source, xs, 20.0)
    exc = _add_file_video(api, excerpt, unit(xs[1:3] + 0.05 * rng.normal(size=(2, DIM))), 8.0)
    for _ in range(3):
        add_video(api.store, unit(rng.normal(size=(3, DIM))))
    api.sync()
    client = ["--address", api.address, "--token", api.settings.api_token]
    assert main(["duplicates", "--min-score", "0.6", "--json", *client]) == 0
    [group] = json.loads(capsys.readouterr().out)
    assert group["video_ids"] == sorted([src, exc])
    [pair] = group["pairs"]
    assert (pair["query_id"], pair["target_id"], pair["refined"]) == (exc, src, True)
    report, timeline = tmp_path / "report", tmp_path / "d.otio"
    assert main(["duplicates", "--min-score", "0.6", "--csv", str(tmp_path / "d.csv"),
                 "--html", str(report), "--otio", str(timeline), *client]) == 0  # fmt: skip
    [row] = list(csv.DictReader(open(tmp_path / "d.csv")))
    assert (int(row["group"]), int(row["query_id"]), int(row["target_id"])) == (1, exc, src)
    assert float(row["target_start_s"]) == pytest.approx(6.5, abs=0.3)
    assert '<img src="images/g1-p1.jpg"' in (report / "index.html").read_text()
    assert Image.open(report / "images" / "g1-p1.jpg").width > 600
    [target, query] = otio.adapters.read_from_file(str(timeline)).tracks
    [clip] = target.find_clips()
    # the pair's target range, in the source's frames at 25 fps, to the frame
    start, end = float(row["target_start_s"]), float(row["target_end_s"])
    assert clip.source_range.start_time == otio.opentime.RationalTime(round(start * 25), 25)
    assert clip.source_range.duration.value == round(end * 25) - round(start * 25)
    assert clip.media_reference.target_url == source.resolve().as_uri()
    assert (tmp_path / "d.edl").read_text().startswith("TITLE: sora duplicates")
    # a search by id with a contact sheet and a timeline
    sheet = tmp_path / "s.png"
    assert main(["search", "--id", str(exc), "--top-k", "2", "--sheet", str(sheet),
                 "--otio", str(tmp_path / "s.otio"), *client]) == 0  # fmt: skip
    assert Image.open(sheet).height > 200
    [hit_clip, _] = otio.adapters.read_from_file(str(tmp_path / "s.otio")).tracks[0].find_clips()
    assert hit_clip.media_reference.target_url == source.resolve().as_uri()
    # --sheet needs a query video
    assert main(["search", "--vector-file", str(tmp_path / "d.csv"), "--sheet", "x.png",
                 *client]) == 2  # fmt: skip
