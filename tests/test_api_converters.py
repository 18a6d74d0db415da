"""search_to_pb: every field of a hit reaches the message, and what is None is absent
(a client tells "no range" from a range at 0.0 s by presence)."""

from __future__ import annotations

from services.api import converters as cv
from services.api.gen.sora.v1 import sora_pb2 as pb
from services.index import VideoInfo
from services.search.types import Hit, SearchResult
from services.store import VideoStatus


def _video(video_id: int, title: str) -> VideoInfo:
    return VideoInfo(id=video_id, uri=f"file:///v/{video_id}.mp4", content_sha256="ab" * 32,
                     size_bytes=10, status=VideoStatus.READY, title=title, tags=("a", "b"),
                     collection="c0")  # fmt: skip


def test_a_response_carries_each_hit_with_presence_as_given():
    placed = Hit(0.9, _video(1, "one"), 11, (0.0, 0.0), query=(2.0, 4.5), alignment_score=0.7,
                 copy_score=0.25, is_copy=True)  # fmt: skip
    bare = Hit(0.4, _video(2, "two"))
    zero = Hit(0.1, _video(3, "three"), copy_score=0.0, is_copy=False)  # set, at the defaults
    result = SearchResult([placed, bare, zero], "v1", 37, copy_threshold=0.2,
                          regions_searched=True)  # fmt: skip

    message = pb.SearchResponse.FromString(cv.search_to_pb(result).SerializeToString())

    assert (message.model_version, message.candidates, message.regions_searched) == ("v1", 37, True)
    assert message.HasField("copy_threshold") and abs(message.copy_threshold - 0.2) < 1e-6
    first, second, third = message.hits
    assert first.video == cv.video_to_pb(placed.video)
    assert (first.segment_id, first.aligned, first.is_copy) == (11, True, True)
    assert abs(first.score - 0.9) < 1e-6 and abs(first.alignment_score - 0.7) < 1e-6
    assert first.HasField("target") and (first.target.start_s, first.target.end_s) == (0.0, 0.0)
    assert (first.query.start_s, first.query.end_s) == (2.0, 4.5)
    assert abs(first.copy_score - 0.25) < 1e-6
    assert second.video.id == 2 and second.video.title == "two"
    assert (second.segment_id, second.aligned) == (0, False)
    for absent in ("target", "query", "copy_score", "is_copy"):
        assert not second.HasField(absent), absent
    assert third.HasField("copy_score") and third.HasField("is_copy")
    assert (third.copy_score, third.is_copy) == (0.0, False)


def test_a_result_without_hits_or_calibration():
    message = cv.search_to_pb(SearchResult([], None, 0))
    assert list(message.hits) == [] and message.model_version == ""
    assert not message.HasField("copy_threshold")
