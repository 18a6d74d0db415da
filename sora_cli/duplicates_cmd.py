"""`sora duplicates [--collection C] [--min-score S] [--json | --csv FILE] [--html DIR]
[--otio FILE]`: groups of videos that are copies of each other or share segments
(FindDuplicates), each pair with its matched ranges and score."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from .client_options import add_client_options, connect
from .output import say
from .review_output import match_of_pair, video_name, write_timeline

CSV_FIELDS = (
    "group", "query_id", "query_title", "query_uri", "query_start_s", "query_end_s",
    "target_id", "target_title", "target_uri", "target_start_s", "target_end_s",
    "score", "copy_score", "is_copy", "refined",
)  # fmt: skip


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "duplicates", help="groups of videos that are copies of each other or share segments"
    )
    p.add_argument("--collection", help="only videos of this collection")
    p.add_argument(
        "--min-score",
        type=float,
        help="a pair is a match scoring at least this (a cosine); default: the model's "
        "calibrated copy verdict",
    )
    p.add_argument("--top-k", type=int, default=10, help="matches looked at per video")
    p.add_argument(
        "--no-refine", action="store_true", help="keep segment-level ranges (no frame placing)"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the groups as JSON on stdout")
    out.add_argument("--csv", metavar="FILE", help="one row per pair ('-': stdout)")
    p.add_argument("--html", metavar="DIR", help="a report page: DIR/index.html + images")
    p.add_argument("--otio", metavar="FILE", help="an OpenTimelineIO timeline (+ FILE.edl)")
    add_client_options(p)
    p.set_defaults(func=run)


def _progress(p: Any) -> None:
    if p.pairs_refined:
        say(f"  ranges placed by frames: {p.pairs_refined}/{p.pairs_found} pairs")
    else:
        say(f"  searched {p.videos_searched}/{p.videos_total} videos, "
            f"{p.pairs_found} pair(s)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    with connect(args) as client:
        say("finding duplicates ...")
        found = client.find_duplicates(
            collection=args.collection,
            min_score=args.min_score,
            top_k=args.top_k,
            refine=not args.no_refine,
            on_progress=_progress,
        )
    rule = (
        f"score >= {found.min_score:g}"
        if found.min_score is not None
        else f"the copy verdict (copy score >= {found.copy_threshold:.3f})"
    )
    if args.json:
        print(json.dumps([_group_json(g) for g in found.groups], indent=2))
    elif args.csv:
        _write_csv(found.groups, args.csv)
    else:
        _print(found.groups, rule, found.model_version)
    if args.html:
        _write_html(found, rule, args.html)
    if args.otio:
        matches = [match_of_pair(p) for g in found.groups for p in g.pairs]
        write_timeline(matches, args.otio, name="sora duplicates")
    return 0


def _print(groups: list, rule: str, version: str) -> None:
    pairs = sum(len(g.pairs) for g in groups)
    print(f"{len(groups)} group(s), {pairs} pair(s); pairs by {rule}; model {version}")
    for n, g in enumerate(groups, 1):
        names = {}
        for p in g.pairs:
            names[p.query.video.id] = video_name(p.query.video)
            names[p.target.video.id] = video_name(p.target.video)
        print(f"group {n}: " + ", ".join(f"{v} {names.get(v, '')}" for v in g.video_ids))
        for p in g.pairs:
            copy = ""
            if p.HasField("copy_score"):
                copy = f" copy {p.copy_score:+.3f}{' COPY' if p.is_copy else ''}"
            q, t = p.query, p.target
            print(
                f"  {p.score:.4f}{copy}  video {q.video.id} {q.range.start_s:.2f}-"
                f"{q.range.end_s:.2f} s = video {t.video.id} {t.range.start_s:.2f}-"
                f"{t.range.end_s:.2f} s"
            )


def _pair_row(n: int, p: Any) -> dict[str, Any]:
    q, t = p.query, p.target
    return {
        "group": n,
        "query_id": q.video.id, "query_title": q.video.title, "query_uri": q.video.uri,
        "query_start_s": round(q.range.start_s, 3), "query_end_s": round(q.range.end_s, 3),
        "target_id": t.video.id, "target_title": t.video.title, "target_uri": t.video.uri,
        "target_start_s": round(t.range.start_s, 3), "target_end_s": round(t.range.end_s, 3),
        "score": round(float(p.score), 6),
        "copy_score": round(float(p.copy_score), 6) if p.HasField("copy_score") else None,
        "is_copy": bool(p.is_copy) if p.HasField("is_copy") else None,
        "refined": p.refined,
    }  # fmt: skip


def _group_json(g: Any) -> dict[str, Any]:
    return {
        "video_ids": list(g.video_ids),
        "pairs": [{k: v for k, v in _pair_row(0, p).items() if k != "group"} for p in g.pairs],
    }


def _write_csv(groups: list, path: str) -> None:
    f = sys.stdout if path == "-" else open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
    try:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for n, g in enumerate(groups, 1):
            for p in g.pairs:
                w.writerow(_pair_row(n, p))
    finally:
        if f is not sys.stdout:
            f.close()
            say(f"CSV: {path}")


def _write_html(found: Any, rule: str, out_dir: str) -> None:
    from sora_encoder.review.html_report import ReportGroup, write_report

    groups = []
    for g in found.groups:
        matches = [match_of_pair(p) for p in g.pairs]
        names = {}
        for m in matches:
            names[m.query.video_id] = m.query.name
            names[m.target.video_id] = m.target.name
        groups.append(ReportGroup([(v, names.get(v, "")) for v in g.video_ids], matches))
    pairs = sum(len(g.matches) for g in groups)
    page = write_report(
        groups,
        out_dir,
        title=f"Duplicates: {len(groups)} group(s), {pairs} pair(s)",
        notes=[f"Pairs by {rule}; model {found.model_version}. Each strip: the query's "
               "frames (top) beside the target's at the aligned times (bottom)."],
    )  # fmt: skip
    say(f"report: {page}")
