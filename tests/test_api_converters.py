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


def test_search_options_are_read_once_per_message_and_answer_as_read_afresh():
    """The servicer reads each distinct options message once (converters._OPTIONS): the
    same message gives the same object; messages that differ, in any field or map entry,
    give what reading them afresh gives; a refused one is refused every time."""
    from services.errors import InvalidArgumentError
    from services.search.options import check_options

    segment = pb.SEARCH_LEVEL_SEGMENT
    messages = [
        pb.SearchOptions(level=segment, top_k=5),
        pb.SearchOptions(level=segment, top_k=6),
        pb.SearchOptions(level=segment, top_k=5, collection="c0"),
        pb.SearchOptions(level=segment, top_k=5, tags=["a", "b"]),
        pb.SearchOptions(level=segment, top_k=5, tags=["b", "a"]),
        pb.SearchOptions(level=segment, top_k=5, user_metadata={"k": "1", "j": "2"}),
        pb.SearchOptions(level=segment, top_k=5, user_metadata={"k": "1", "j": "3"}),
        pb.SearchOptions(level=pb.SEARCH_LEVEL_VIDEO, min_score=0.5, disable_alignment=True),
    ]
    for m in messages:
        first = cv.search_options_from_pb(m)
        assert first == cv._search_options_from_pb(m)
        again = pb.SearchOptions.FromString(m.SerializeToString())  # another message, equal
        assert cv.search_options_from_pb(again) is first
        assert check_options(first) == check_options(cv._search_options_from_pb(m))
    read = [cv.search_options_from_pb(m) for m in messages]
    fields = {(o.top_k, o.collection, o.tags, o.metadata_items, o.level) for o in read}
    assert len(fields) == len(messages)
    assert read[3].tags == ("a", "b") and read[4].tags == ("b", "a")
    # a long list of asset ids is read as any other, and not kept (1,024 of them would pin
    # gigabytes)
    big = pb.SearchOptions(level=segment, external_ids=[f"asset-{i}" for i in range(200)])
    assert cv.search_options_from_pb(big).external_ids == tuple(f"asset-{i}" for i in range(200))
    assert big.SerializeToString(deterministic=True) not in cv._OPTIONS
    bad = pb.SearchOptions(level=segment, region_search=pb.REGION_SEARCH_NEVER, query_regions=True)
    for _ in range(2):
        try:
            cv.search_options_from_pb(bad)
            raise AssertionError("refused options were let through")
        except InvalidArgumentError as exc:
            assert "contradicts" in str(exc)
