"""Near-duplicate retrieval: do transformed copies find their original?

    items --split_of(group)--> test side (the default), train side
    originals  = one clip per test group (the first by path), `limit` groups at most
    database   = every test-side clip + `distractors` train-side clips
    queries    = each original through each transformation family (transforms.py)
    all files decoded once, every embedder on the same clips (data.embed_files)
    video vectors (normalised mean of 4-s segment vectors), exact inner-product search
      -> per family and embedder: recall@1, recall@10, mAP

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

from sora_encoder.eval.data import DEFAULT_SEGMENT_S, Item, embed_files
from sora_encoder.eval.splits import DEFAULT_SALT, DEFAULT_TEST_FRACTION, split_of
from sora_encoder.eval.transforms import (
    Family,
    TransformError,
    apply_family,
    family_note,
    plan,
)
from sora_encoder.media import MediaError, probe

__all__ = [
    "DEFAULT_KS",
    "NeardupResult",
    "NeardupSetup",
    "average_precision",
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
    """Exact inner-product search of xq (nq, d) in xb (nb, d) and its scores.

    relevant, junk: (nq, nb) bool. Returns {"recall@k": mean over queries of the share of
    relevant items ranked <= k, ..., "mAP": mean AP, "queries": nq}. A row of xq holding
    NaN stands for a failed query: its scores are NaN and it is a miss. ValueError for a
    query with no relevant item.
    """
    xq, xb = np.asarray(xq, np.float64), np.asarray(xb, np.float64)
    if xq.ndim != 2 or xb.ndim != 2 or xq.shape[1] != xb.shape[1]:
        raise ValueError(f"xq {xq.shape} and xb {xb.shape} must be (n, d) with the same d")
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != (len(xq), len(xb)):
        raise ValueError(f"relevant must be {(len(xq), len(xb))}, got {relevant.shape}")
    if junk is not None and np.asarray(junk).shape != relevant.shape:
        raise ValueError(f"junk must be {relevant.shape}, got {np.asarray(junk).shape}")
    D = xq @ xb.T  # (nq, nb) similarities
    recall = {k: [] for k in ks}
    aps = []
    for i in range(len(xq)):
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
    out["queries"] = len(xq)
    return out


# -- the protocol --------------------------------------------------------------------------


def _order(key: str, salt: str) -> str:
    """A stable pseudo-random sort key (so `limit` picks an unbiased, repeatable subset)."""
    return hashlib.sha256(f"{salt}\0order\0{key}".encode()).hexdigest()


@dataclass(frozen=True)
class NeardupSetup:
    originals: list[Item]  # one per evaluated group
    database: list[Item]  # side clips + distractors; contains every original
    distractors: int  # how many of `database` come from the other side
    side: str  # "test", "train" or "all"


def select(
    items: Sequence[Item],
    *,
    side: str = "test",
    limit: int | None = None,
    distractors: int | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    salt: str = DEFAULT_SALT,
) -> NeardupSetup:
    """Originals and database for the protocol (module docstring); deterministic.

    `side`: "test" (default), "train", or "all" (every group; no distractors then).
    `limit`: at most this many originals (groups in a stable hashed order). `distractors`:
    at most this many clips of the other side (None: all of them).
    """
    if side not in ("test", "train", "all"):
        raise ValueError(f"side must be test, train or all, got {side!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if distractors is not None and distractors < 0:
        raise ValueError(f"distractors must be >= 0, got {distractors}")

    def on_side(it: Item) -> bool:
        return side == "all" or split_of(it.group, test_fraction=test_fraction, salt=salt) == side

    mine = sorted((it for it in items if on_side(it)), key=lambda it: str(it.path))
    other = [it for it in items if not on_side(it)]
    first: dict[str, Item] = {}
    for it in mine:
        first.setdefault(it.group, it)
    groups = sorted(first, key=lambda g: _order(g, salt))[:limit]
    if not groups:
        raise ValueError(f"no group on the {side} side (test_fraction {test_fraction})")
    extra = sorted(other, key=lambda it: _order(str(it.path), salt))[:distractors]
    return NeardupSetup(
        originals=[first[g] for g in groups],
        database=mine + extra,
        distractors=len(extra),
        side=side,
    )


@dataclass
class NeardupResult:
    embedders: list[dict[str, Any]]  # name, key, dim
    families: list[dict[str, str]]  # name, description, note
    metrics: dict[str, dict[str, dict[str, float]]]  # embedder -> family (and "all") -> scores
    setup: dict[str, Any]
    failed: dict[str, str] = field(default_factory=dict)  # file -> reason
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "neardup",
            "setup": self.setup,
            "embedders": self.embedders,
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
    originals: Sequence[Item],
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


def run_neardup(
    setup: NeardupSetup,
    embedders: Sequence,
    families: Sequence[Family],
    work_dir: str | os.PathLike,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    progress: Callable[[str, int, int], None] | None = None,
    extra_setup: dict[str, Any] | None = None,
) -> NeardupResult:
    """Make the queries, embed database and queries once for all embedders, score them."""
    t0 = time.perf_counter()
    step = (lambda name: lambda n, t: progress(name, n, t)) if progress else (lambda name: None)
    queries, failed = make_queries(setup.originals, families, work_dir, progress=step("transform"))
    t_transform = time.perf_counter() - t0
    made = [q for q in queries if q[2] is not None]
    files = [it.path for it in setup.database] + [q[2] for q in made]
    vec = embed_files(files, embedders, progress=step("embed"))
    failed.update({str(p): f"decode: {why}" for p, why in vec.failed.items()})

    db_ok = [i for i in range(len(setup.database)) if files[i] not in vec.failed]
    db_items = [setup.database[i] for i in db_ok]
    db_pos = {it.path: k for k, it in enumerate(db_items)}
    groups = np.array([it.group for it in db_items])
    q_file = {(q[0], q[1]): len(setup.database) + k for k, q in enumerate(made)}

    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for e in embedders:
        xb = vec.videos(e.name, idx=db_ok)  # (nb, D)
        per_family: dict[str, dict[str, float]] = {}
        pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for fam in [f.name for f in families]:
            rows, rel, junk = [], [], []
            for i, orig in enumerate(setup.originals):
                if orig.path not in db_pos:
                    continue  # the original itself could not be decoded: nothing to find
                k = q_file.get((i, fam))
                ok = k is not None and files[k] not in vec.failed
                rows.append(vec.videos(e.name, idx=[k])[0] if ok else np.full(xb.shape[1], np.nan))
                r = np.zeros(len(db_items), bool)
                r[db_pos[orig.path]] = True
                rel.append(r)
                junk.append((groups == orig.group) & ~r)
            if not rows:
                continue
            xq, R, J = np.stack(rows), np.stack(rel), np.stack(junk)
            per_family[fam] = retrieval_metrics(xq, xb, R, J, ks=ks)
            pooled.append((xq, R, J))
        if pooled:
            xq, R, J = (np.concatenate(a) for a in zip(*pooled, strict=True))
            per_family[ALL] = retrieval_metrics(xq, xb, R, J, ks=ks)
        metrics[e.name] = per_family

    setup_json = {
        "side": setup.side,
        "originals": len(setup.originals),
        "database": len(db_items),
        "distractors": setup.distractors,
        "queries_per_embedder": sum(1 for _ in queries),
        "segment_s": DEFAULT_SEGMENT_S,
        **(extra_setup or {}),
    }
    timings = {"transform_s": t_transform, **vec.timings, "total_s": time.perf_counter() - t0}
    return NeardupResult(
        embedders=[
            {"name": e.name, "key": e.key, "dim": int(getattr(e, "dim", 0))} for e in embedders
        ],
        families=[
            {"name": f.name, "description": f.description, "note": family_note(f)} for f in families
        ],
        metrics=metrics,
        setup=setup_json,
        failed=failed,
        timings=timings,
    )
