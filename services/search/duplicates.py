"""Library-wide duplicates from search results: pairs, then groups.

    each READY video searched as a query (video level, aligned, its own video left out)
      -> pairs_of(query video, hits, min_score)   hits that pass the pair criterion
      -> unique_pairs                             A->B and B->A: the one with more evidence
      -> group_pairs                              connected components over the pairs

The pair criterion is the model's copy verdict (`hit.is_copy`, calibrated so that its
threshold means the same in any library) unless `min_score` is given, then the cosine
score. Plain data in and out: no SQL, no gRPC, no index (services/api/duplicate_service.py
runs the searches).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.index import VideoInfo

from .types import Hit

Range = tuple[float, float]


@dataclass
class DuplicatePair:
    """`query` was searched and found `target`; query_range matches target_range."""

    query: VideoInfo
    target: VideoInfo
    query_range: Range | None
    target_range: Range | None
    score: float
    copy_score: float | None = None
    is_copy: bool | None = None
    refined: bool = False  # ranges placed by frames (services.search.moments)

    @property
    def key(self) -> tuple[int, int]:
        """The unordered pair, as (smaller id, larger id)."""
        a, b = self.query.id, self.target.id
        return (a, b) if a < b else (b, a)

    @property
    def evidence(self) -> float:
        """What ranks pairs: the copy score when the model is calibrated, else the score."""
        return self.copy_score if self.copy_score is not None else self.score


@dataclass(frozen=True)
class DuplicateGroup:
    video_ids: tuple[int, ...]  # ascending
    pairs: tuple[DuplicatePair, ...]  # best first


def is_pair(hit: Hit, min_score: float | None) -> bool:
    """The pair criterion: score >= min_score when given, else the copy verdict."""
    if min_score is not None:
        return hit.score >= min_score
    return bool(hit.is_copy)


def pairs_of(query: VideoInfo, hits: Iterable[Hit], min_score: float | None) -> list[DuplicatePair]:
    """The hits of one video's search that pass the criterion, as pairs (the video itself
    and hits without a matched range are left out: a pair names the moments it shares)."""
    return [
        DuplicatePair(
            query=query,
            target=h.video,
            query_range=h.query,
            target_range=h.target,
            score=float(h.score),
            copy_score=h.copy_score,
            is_copy=h.is_copy,
        )
        for h in hits
        if h.video.id != query.id and is_pair(h, min_score)
    ]


def unique_pairs(pairs: Iterable[DuplicatePair]) -> list[DuplicatePair]:
    """One pair per two videos: of A->B and B->A the one with more evidence (the first on a
    tie), best first."""
    best: dict[tuple[int, int], DuplicatePair] = {}
    for p in pairs:
        if p.key not in best or p.evidence > best[p.key].evidence:
            best[p.key] = p
    return sorted(best.values(), key=lambda p: (-p.evidence, p.key))


def group_pairs(pairs: Sequence[DuplicatePair]) -> list[DuplicateGroup]:
    """Connected components of the pairs (union-find), largest first, then by their
    smallest id; each group's pairs best first."""
    parent: dict[int, int] = {}

    def find(v: int) -> int:
        parent.setdefault(v, v)
        while parent[v] != v:
            parent[v] = parent[parent[v]]  # path halving
            v = parent[v]
        return v

    for p in pairs:
        a, b = find(p.query.id), find(p.target.id)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for v in parent:
        members.setdefault(find(v), []).append(v)
    of_root: dict[int, list[DuplicatePair]] = {}
    for p in pairs:
        of_root.setdefault(find(p.query.id), []).append(p)
    groups = [
        DuplicateGroup(
            video_ids=tuple(sorted(members[root])),
            pairs=tuple(sorted(of_root[root], key=lambda p: (-p.evidence, p.key))),
        )
        for root in members
    ]
    return sorted(groups, key=lambda g: (-len(g.video_ids), g.video_ids[0]))
