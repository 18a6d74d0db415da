"""Near-duplicate retrieval: do transformed copies find their original, and do clips that
copy nothing in the database stay unmatched?

    items --split_of(group)--> test side (the default), train side
    non-copies = one clip of each of `non_copies` side groups held out of the database whole
    originals  = one clip per other side group (the first by path), `limit` groups at most
    database   = the side's clips outside the held-out groups + `distractors` other-side clips
    queries    = each original and non-copy through each transformation family (transforms.py)
    all files decoded once, every clip embedder on the same clips (data.embed_files);
    anchors (anchors.py) hash the same files themselves
    scores (nq, nb): inner products of video vectors, or an anchor's own pair score
      -> per family and embedder: recall@1, recall@10, mAP over the copy queries;
         micro-AP over all queries (copy_metrics.py), and precision / recall at the
         embedder's copy threshold when it declares one

Relevance: a query's one relevant item is its original. The other clips of the original's
group (same camera, often adjacent or overlapping moments) are "junk": left out of that
query's ranking, neither hit nor miss, as in the Oxford/Paris retrieval benchmarks, since a
copy of one may honestly be a copy of the other. With one relevant item, AP = 1 / rank (mAP
is the mean reciprocal rank). Ties are scored pessimistically: an item scoring exactly as
high as the original ranks before it. A query whose file could not be made or decoded counts
as a miss (rank infinity) and is listed in `failed`.

The split is `splits.split_of`, the one the trainer uses, so a trained encoder is measured
on groups it never saw.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sora_encoder.eval.anchors import hash_files
from sora_encoder.eval.copy_metrics import at_threshold, micro_average_precision, top_predictions
from sora_encoder.eval.data import DEFAULT_SEGMENT_S, embed_files
from sora_encoder.eval.splits import DEFAULT_SALT, DEFAULT_TEST_FRACTION, on_side
from sora_encoder.eval.transforms import (
    Family,
    TransformError,
    apply_family,
    family_note,
    plan,
)
from sora_encoder.files import LabelledVideo
from sora_encoder.media import MediaError, probe

__all__ = [
    "DEFAULT_KS",
    "NeardupResult",
    "NeardupSetup",
    "average_precision",
    "default_non_copies",
    "ranking_metrics",
    "relevant_ranks",
    "retrieval_metrics",
    "run_neardup",
    "select",
]

log = logging.getLogger(__name__)

DEFAULT_KS = (1, 10)
ALL = "all"  # the row that pools every family's queries


# -- metrics (pure) ------------------------------------------------------------------------


def relevant_ranks(scores: np.ndarray, relevant: np.ndarray, junk: np.ndarray | None = None):
    """1-based ranks of the relevant items of one query, ascending; ties pessimistic.

    scores (nb,) similarities (larger is closer); relevant, junk (nb,) bool. Junk items are
    removed from the ranking. A relevant item with a non-finite score ranks last (inf).
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.ndim != 1 or relevant.shape != scores.shape:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be (nb,)")
    valid = np.ones_like(relevant) if junk is None else ~np.asarray(junk, dtype=bool)
    if junk is not None and valid.shape != scores.shape:
        raise ValueError(f"junk must be ({scores.shape[0]},), got {valid.shape}")
    rel = np.flatnonzero(relevant & valid)
    others = scores[valid & ~relevant]
    ranks = []
    for j in rel:
        s = scores[j]
        if not np.isfinite(s):
            ranks.append(np.inf)
            continue
        ahead = int((others >= s).sum())  # pessimistic: ties go before
        peers = scores[rel]
        ahead += int((peers > s).sum() + ((peers == s) & (rel < j)).sum())
        ranks.append(1.0 + ahead)
    return np.sort(np.array(ranks, dtype=np.float64))


def average_precision(ranks: np.ndarray) -> float:
    """AP from the ascending 1-based ranks of all relevant items: mean of (i / rank_i)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        raise ValueError("no relevant items: AP is undefined")
    return float(np.mean(np.arange(1, ranks.size + 1) / ranks))


def retrieval_metrics(
    xq: np.ndarray,
    xb: np.ndarray,
    relevant: np.ndarray,
    junk: np.ndarray | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Exact inner-product search of xq (nq, d) in xb (nb, d), scored by `ranking_metrics`.

    A row of xq holding NaN stands for a failed query: its scores are NaN and it is a miss.
    """
    xq, xb = np.asarray(xq, np.float64), np.asarray(xb, np.float64)
    if xq.ndim != 2 or xb.ndim != 2 or xq.shape[1] != xb.shape[1]:
        raise ValueError(f"xq {xq.shape} and xb {xb.shape} must be (n, d) with the same d")
    return ranking_metrics(xq @ xb.T, relevant, junk, ks=ks)  # (nq, nb) similarities


def ranking_metrics(
    D: np.ndarray,
    relevant: np.ndarray,
    junk: np.ndarray | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """recall@k and mAP of the scores D (nq, nb), larger is closer, whatever computed them
    (an inner product, or an anchor's own matching rule).

    relevant, junk: (nq, nb) bool. Returns {"recall@k": mean over queries of the share of
    relevant items ranked <= k, ..., "mAP": mean AP, "queries": nq}. A row of D holding
    NaN is a failed query: a miss. ValueError for a query with no relevant item.
    """
    D = np.asarray(D, np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if D.ndim != 2 or relevant.shape != D.shape:
        raise ValueError(f"relevant must be {D.shape}, got {relevant.shape}")
    if junk is not None and np.asarray(junk).shape != relevant.shape:
        raise ValueError(f"junk must be {relevant.shape}, got {np.asarray(junk).shape}")
    recall = {k: [] for k in ks}
    aps = []
    for i in range(len(D)):
        r = relevant_ranks(D[i], relevant[i], None if junk is None else junk[i])
        if r.size == 0:
            raise ValueError(f"query {i} has no relevant item outside the junk")
        for k in ks:
            recall[k].append(float((r <= k).mean()))
        aps.append(average_precision(r))
    out: dict[str, float] = {
        f"recall@{k}": float(np.mean(v)) if v else 0.0 for k, v in recall.items()
    }
    out["mAP"] = float(np.mean(aps)) if aps else 0.0
    out["queries"] = len(D)
    return out


# -- the protocol --------------------------------------------------------------------------


def _order(key: str, salt: str) -> str:
    """A stable pseudo-random sort key (so `limit` picks an unbiased, repeatable subset)."""
    return hashlib.sha256(f"{salt}\0order\0{key}".encode()).hexdigest()


@dataclass(frozen=True)
class NeardupSetup:
    originals: list[LabelledVideo]  # one per evaluated group; each is in `database`
    database: list[LabelledVideo]  # side clips + distractors, less the non-copies' groups
    distractors: int  # how many of `database` come from the other side
    side: str  # "test", "train" or "all"
    # one clip per held-out group: no clip of its group is in `database`, so its
    # transformed copies are non-copy queries (any hit is a false positive)
    non_copies: list[LabelledVideo] = field(default_factory=list)


def default_non_copies(n_groups: int) -> int:
    """A quarter of the side's groups (rounded down): 3 of the 14 test groups of the shared
    clips. Enough non-copy queries to see false positives, most groups still copies."""
    return n_groups // 4


def select(
    items: Sequence[LabelledVideo],
    *,
    side: str = "test",
    limit: int | None = None,
    distractors: int | None = None,
    non_copies: int | None = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    salt: str = DEFAULT_SALT,
) -> NeardupSetup:
    """Originals, non-copies and database for the protocol (module docstring); deterministic.

    `side`: "test" (default), "train", or "all" (every group; no distractors then).
    `non_copies`: this many of the side's groups are held out of the database whole, one
    clip of each becoming a non-copy original (None: `default_non_copies`); chosen in a
    stable hashed order of their own, so `limit` does not move them. `limit`: at most this
    many copy originals (groups in a stable hashed order). `distractors`: at most this many
    clips of the other side (None: all of them).
    """
    if side not in ("test", "train", "all"):
        raise ValueError(f"side must be test, train or all, got {side!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if distractors is not None and distractors < 0:
        raise ValueError(f"distractors must be >= 0, got {distractors}")
    if non_copies is not None and non_copies < 0:
        raise ValueError(f"non_copies must be >= 0, got {non_copies}")

    def mine_(it: LabelledVideo) -> bool:
        return on_side(it.group, side, test_fraction=test_fraction, salt=salt)

    mine = sorted((it for it in items if mine_(it)), key=lambda it: str(it.path))
    other = [it for it in items if not mine_(it)]
    first: dict[str, LabelledVideo] = {}
    for it in mine:
        first.setdefault(it.group, it)
    if not first:
        raise ValueError(f"no group on the {side} side (test_fraction {test_fraction})")
    n_held = default_non_copies(len(first)) if non_copies is None else non_copies
    if n_held >= len(first):
        raise ValueError(
            f"non_copies={n_held} would hold out all {len(first)} groups of the {side} side: "
            "no copy queries would be left"
        )
    held = set(sorted(first, key=lambda g: _order(g, f"{salt}/non-copy"))[:n_held])
    groups = [g for g in sorted(first, key=lambda g: _order(g, salt)) if g not in held][:limit]
    extra = sorted(other, key=lambda it: _order(str(it.path), salt))[:distractors]
    return NeardupSetup(
        originals=[first[g] for g in groups],
        database=[it for it in mine if it.group not in held] + extra,
        distractors=len(extra),
        side=side,
        non_copies=[first[g] for g in sorted(held, key=lambda g: str(first[g].path))],
    )


@dataclass
class NeardupResult:
    embedders: list[dict[str, Any]]  # name, key, dim, copy_threshold
    families: list[dict[str, str]]  # name, description, note
    # embedder -> family (and "all") -> scores (None: undefined, e.g. precision of nothing)
    metrics: dict[str, dict[str, dict[str, float | None]]]
    setup: dict[str, Any]
    failed: dict[str, str] = field(default_factory=dict)  # file -> reason
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # embedder -> why it did not run

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "neardup",
            "setup": self.setup,
            "embedders": self.embedders,
            "skipped_embedders": self.skipped,
            "families": self.families,
            "metrics": self.metrics,
            "failed": self.failed,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def _query_path(work_dir: Path, src: Path, family: Family, p_key: str) -> Path:
    st = src.stat()
    h = hashlib.sha256(f"{src}\0{st.st_size}\0{st.st_mtime_ns}\0{p_key}".encode()).hexdigest()
    return work_dir / f"{src.stem[:40]}.{family.name.replace('+', '_')}.{h[:12]}.mp4"


def make_queries(
    originals: Sequence[LabelledVideo],
    families: Sequence[Family],
    work_dir: str | os.PathLike,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[tuple[int, str, Path | None]], dict[str, str]]:
    """Transformed copies [(original index, family, path or None if it failed)], failures.

    A file already in `work_dir` under the same name (source, size, mtime and the exact
    ffmpeg graph hashed into it) is reused.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out: list[tuple[int, str, Path | None]] = []
    failed: dict[str, str] = {}
    total, n = len(originals) * len(families), 0
    for i, it in enumerate(originals):
        try:
            info = probe(it.path)
        except (MediaError, FileNotFoundError) as exc:
            failed[str(it.path)] = f"probe: {exc}"
            out += [(i, f.name, None) for f in families]
            n += len(families)
            continue
        for fam in families:
            p = plan(fam, info)
            dst = _query_path(work, it.path, fam, p.filter_complex + " ".join(p.encoder))
            if not dst.is_file():
                try:
                    apply_family(fam, it.path, dst, info=info)
                except (TransformError, MediaError) as exc:
                    failed[f"{it.path} [{fam.name}]"] = str(exc)
                    dst = None
            out.append((i, fam.name, dst))
            n += 1
            if progress is not None:
                progress(n, total)
    return out, failed


def _is_anchor(e: Any) -> bool:
    """File matchers (anchors.FileMatcher) read files; clip embedders take decoded clips."""
    return hasattr(e, "score_matrix") and not hasattr(e, "embed_clips")


def _anchor_scores(
    anchor: Any,
    q_paths: Sequence[Path | None],
    db_paths: Sequence[Path],
    failed: dict[str, str],
    timings: dict[str, float],
    progress: Callable[[int, int], None] | None,
    ranges: dict[int, tuple[int, float, float]],
) -> np.ndarray:
    """(nq, nb) scores of an anchor; NaN where the query or the database file could not be
    hashed (a failed query is a miss; a database file it cannot hash is never found).
    `ranges` gets {query row: (database index, start_s, end_s)} of a matcher's top hits
    when it reports them."""
    todo = list(db_paths) + [p for p in q_paths if p is not None]
    hashes, bad, seconds = hash_files(todo, anchor, progress=progress)
    failed.update({f"{p} [{anchor.name}]": why for p, why in bad.items()})
    timings[f"embed_{anchor.name}_s"] = seconds
    by_path = dict(zip(todo, hashes, strict=True))
    db_ok = [j for j, p in enumerate(db_paths) if by_path[p] is not None]
    q_ok = [i for i, p in enumerate(q_paths) if p is not None and by_path[p] is not None]
    D = np.full((len(q_paths), len(db_paths)), np.nan)
    if db_ok and q_ok:
        t0 = time.perf_counter()
        scores = anchor.score_matrix(
            [by_path[q_paths[i]] for i in q_ok], [by_path[db_paths[j]] for j in db_ok]
        )  # (len(q_ok), len(db_ok))
        timings[f"score_{anchor.name}_s"] = time.perf_counter() - t0
        D[np.ix_(q_ok, db_ok)] = scores
        # a matcher that says where its top hit matched (the service: its hit's range)
        for i, top in zip(q_ok, getattr(anchor, "top_ranges", None) or [], strict=False):
            if top is not None:
                ranges[i] = (db_ok[top[0]], top[1], top[2])
    spent = seconds + timings.get(f"score_{anchor.name}_s", 0.0)
    timings[f"{anchor.name}_s_per_file"] = spent / max(1, len(todo))  # hashing + scoring
    return D


def _copy_metrics(
    D: np.ndarray, source: np.ndarray, J: np.ndarray, threshold: float | None
) -> dict[str, float | None]:
    """micro-AP of the rows' top hits and, for an embedder that declares a copy threshold,
    precision and recall of "the top hit is a copy" at it."""
    p = top_predictions(D, source, J)
    out: dict[str, float | None] = {
        "micro_AP": micro_average_precision(p),
        "non_copy_queries": int((source < 0).sum()),
    }
    if threshold is not None:
        t = at_threshold(p, threshold)
        out.update(
            {
                "threshold": t.threshold,
                "predicted@threshold": t.predicted,
                "precision@threshold": t.precision,
                "recall@threshold": t.recall,
            }
        )
    return out


def _boundary_metrics(
    ranges: dict[int, tuple[int, float, float]],
    rows: np.ndarray,
    source: np.ndarray,
    fam_of: np.ndarray,
    families: dict[str, Family],
    db_items: Sequence[LabelledVideo],
) -> dict[str, float | None]:
    """How far the top hit's matched range is from the truth, over the selected copy rows
    of families that cut (the other rows show the whole source): both boundaries of every
    row whose top hit is its source, pooled. Median in seconds and the share within 1 s."""
    errors: list[float] = []
    for i in np.flatnonzero(rows):
        top = ranges.get(int(i))
        item = db_items[source[i]]
        if top is None or top[0] != source[i]:
            continue
        try:
            duration = item.duration_s or probe(item.path).duration_s
        except MediaError:
            continue
        truth = families[str(fam_of[i])].source_span(duration)
        if truth is not None:
            errors += [abs(top[1] - truth[0]), abs(top[2] - truth[1])]
    if not errors:
        return {}
    e = np.asarray(errors)
    return {
        "boundary_error_median_s": float(np.median(e)),
        "boundary_within_1s": float((e <= 1.0).mean()),
        "boundaries": int(e.size),
    }


def run_neardup(
    setup: NeardupSetup,
    embedders: Sequence,
    families: Sequence[Family],
    work_dir: str | os.PathLike,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    progress: Callable[[str, int, int], None] | None = None,
    extra_setup: dict[str, Any] | None = None,
    skipped: dict[str, str] | None = None,
) -> NeardupResult:
    """Make the queries, embed database and queries once for all embedders, score them.

    `embedders` mixes clip embedders (baselines: decoded once, video vectors, inner
    product) and file matchers (anchors: each hashes the files itself and scores pairs
    with its own rule). `skipped` ({name: reason}) is carried into the result.
    """
    t0 = time.perf_counter()
    step = (lambda name: lambda n, t: progress(name, n, t)) if progress else (lambda name: None)
    sources = list(setup.originals) + list(setup.non_copies)  # copies first, then non-copies
    n_copy = len(setup.originals)
    queries, failed = make_queries(sources, families, work_dir, progress=step("transform"))
    t_transform = time.perf_counter() - t0
    q_path = {(q[0], q[1]): q[2] for q in queries}  # (source index, family) -> file or None
    made = [q[2] for q in queries if q[2] is not None]
    db_paths = [it.path for it in setup.database]

    clip_embedders = [e for e in embedders if not _is_anchor(e)]
    timings: dict[str, float] = {"transform_s": t_transform}
    vec = None
    if clip_embedders:
        vec = embed_files(db_paths + made, clip_embedders, progress=step("embed"))
        failed.update({str(p): f"decode: {why}" for p, why in vec.failed.items()})
        timings.update(vec.timings)
    # a database file our decoder cannot read is left out for every embedder alike
    db_ok = [i for i, p in enumerate(db_paths) if vec is None or p not in vec.failed]
    db_items = [setup.database[i] for i in db_ok]
    db_pos = {it.path: k for k, it in enumerate(db_items)}
    groups = np.array([it.group for it in db_items])
    vec_index = {p: k for k, p in enumerate(db_paths + made)}

    # the query rows, in a fixed order: every usable source through every family
    rows: list[tuple[int, str]] = [
        (i, f.name)
        for i, it in enumerate(sources)
        if i >= n_copy or it.path in db_pos  # an original we could not decode: nothing to find
        for f in families
    ]
    row_paths = [q_path.get(r) for r in rows]
    source = np.array([db_pos[sources[i].path] if i < n_copy else -1 for i, _ in rows], np.int64)
    J = np.stack([groups == sources[i].group for i, _ in rows]) if rows else np.zeros((0, 0))
    J[np.arange(len(rows))[source >= 0], source[source >= 0]] = False  # the source is no junk
    fam_of = np.array([f for _, f in rows])
    by_name = {f.name: f for f in families}

    metrics: dict[str, dict[str, dict[str, float | None]]] = {}
    for e in embedders:
        ranges: dict[int, tuple[int, float, float]] = {}
        if _is_anchor(e):
            D = _anchor_scores(
                e, row_paths, [p.path for p in db_items], failed, timings, step(e.name), ranges
            )
        else:
            xb = vec.videos(e.name, idx=db_ok)  # (nb, d)
            ok = [p is not None and p not in vec.failed for p in row_paths]
            xq = np.full((len(rows), xb.shape[1]), np.nan)  # (nq, d); NaN: a failed query
            if any(ok):
                idx = [vec_index[p] for p, o in zip(row_paths, ok, strict=True) if o]
                xq[ok] = vec.videos(e.name, idx=idx)
            with np.errstate(invalid="ignore"):
                D = xq @ xb.T  # (nq, nb)
                cal = getattr(e, "copy_calibration", None)
                if cal is not None:  # the service's copy score: same ranking per query
                    D = D - cal.reference(np.nan_to_num(xq).astype(np.float32))[:, None]
        threshold = getattr(e, "copy_threshold", None)
        per_family: dict[str, dict[str, float | None]] = {}
        for fam in [*(f.name for f in families), ALL]:
            sel = np.ones(len(rows), bool) if fam == ALL else fam_of == fam
            copy = sel & (source >= 0)
            if not copy.any():
                continue
            R = np.zeros((int(copy.sum()), len(db_items)), bool)
            R[np.arange(len(R)), source[copy]] = True
            m: dict[str, float | None] = dict(ranking_metrics(D[copy], R, J[copy], ks=ks))
            m.update(_copy_metrics(D[sel], source[sel], J[sel], threshold))
            if ranges:
                m.update(_boundary_metrics(ranges, copy, source, fam_of, by_name, db_items))
            per_family[fam] = m
        metrics[e.name] = per_family

    setup_json = {
        "side": setup.side,
        "originals": len(setup.originals),
        "non_copies": len(setup.non_copies),
        "non_copy_groups": sorted(it.group for it in setup.non_copies),
        "database": len(db_items),
        "distractors": setup.distractors,
        "queries_per_embedder": len(queries),
        "segment_s": DEFAULT_SEGMENT_S,
        **(extra_setup or {}),
    }
    timings["total_s"] = time.perf_counter() - t0
    return NeardupResult(
        embedders=[
            {
                "name": e.name,
                "key": e.key,
                "dim": int(getattr(e, "dim", 0)),
                "copy_threshold": getattr(e, "copy_threshold", None),
                # a service matcher: how many queries also searched their regions
                "queries_with_regions": getattr(e, "queries_with_regions", None),
            }
            for e in embedders
        ],
        families=[
            {"name": f.name, "description": f.description, "note": family_note(f)} for f in families
        ],
        metrics=metrics,
        setup=setup_json,
        failed=failed,
        timings=timings,
        skipped=dict(skipped or {}),
    )
