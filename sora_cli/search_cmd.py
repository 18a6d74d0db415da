"""`sora search (--clip FILE | --id ID | --vector-file F | --ids ID... | --vectors-file F)`:
videos and moments like a query; --ids and --vectors-file ask many queries at once
(SearchBatch, up to the server's cap of queries a call; more are sent in several calls)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .client_options import add_client_options, connect, read_vector_file, read_vectors_file
from .metadata_options import add_meta_filter, parse_key_values
from .output import say
from .review_output import clip_side, match_of_hit, side_of, write_sheet, write_timeline

BATCH = 256  # queries per SearchBatch call: the server's cap (services.search.options)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="find the videos and moments that look like a query")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--clip", metavar="FILE", help="a video clip (uploaded, embedded by the server)")
    q.add_argument("--id", type=int, metavar="ID", help="an ingested video's id")
    q.add_argument("--vector-file", metavar="F", help=".npy, JSON list, or `sora embed --json`")
    q.add_argument("--ids", type=int, nargs="+", metavar="ID", help="several video ids at once")
    q.add_argument(
        "--vectors-file", metavar="F", help="several vectors at once: .npy (n, d) or JSON lists"
    )
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--level", choices=("video", "segment"), default="video")
    p.add_argument("--collection")
    p.add_argument("--tag", action="append", default=[], help="required tag (repeatable)")
    p.add_argument("--min-score", type=float, default=0.0)
    p.add_argument(
        "--external-id",
        action="append",
        default=[],
        metavar="ID",
        help="only the video with this external id (repeatable: any of them)",
    )
    add_meta_filter(p)
    p.add_argument("--no-alignment", action="store_true", help="skip temporal re-ranking")
    p.add_argument(
        "--regions",
        choices=("auto", "always", "never"),
        nargs="?",
        const="always",  # a bare --regions, as before the modes
        default="auto",
        help="with --clip: when to also search with the clip's corner and centre regions "
        "(picture in picture, split screens, heavy crops; 6x the embedding time). auto "
        "(default): only when the whole picture found no copy",
    )
    p.add_argument("--json", action="store_true", help="a JSON list of hits")
    p.add_argument(
        "--sheet", metavar="PNG", help="with --clip or --id: a contact sheet of the matched moments"
    )
    p.add_argument(
        "--otio",
        metavar="FILE",
        help="with --clip or --id: the hits as an OpenTimelineIO timeline (+ FILE.edl)",
    )
    add_client_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = dict(
        level=args.level,
        top_k=args.top_k,
        collection=args.collection,
        tags=args.tag,
        min_score=args.min_score,
        alignment=not args.no_alignment,
        external_ids=args.external_id,
        user_metadata=parse_key_values(args.meta),
    )
    review = args.sheet or args.otio
    if review and not (args.clip or args.id is not None):
        say("sora: --sheet and --otio need a query video: --clip FILE or --id ID")
        return 2
    if args.ids or args.vectors_file:
        return _run_batch(args, options)
    with connect(args) as client:
        if args.clip:
            res = client.search_by_clip(args.clip, regions=args.regions, **options)
            query = clip_side(args.clip) if review else None
        elif args.id is not None:
            res = client.search(video_id=args.id, exclude_query_video=True, **options)
            video = client.get_video(args.id) if review else None
            query = side_of(video, 0.0, video.duration_s) if video is not None else None
        else:
            res = client.search(vector=read_vector_file(args.vector_file), **options)
    if review:
        _write_review(args, res, query)
    hits = [hit_to_json(h) for h in res.hits]
    if args.json:
        print(json.dumps(hits, indent=2))
        return 0
    verdicts = (
        f"; copy when copy score >= {res.copy_threshold:.3f}"
        if res.HasField("copy_threshold")
        else "; no copy calibration for this model (`sora checkpoint calibrate`)"
    )
    regions = "; the clip's regions searched too" if res.regions_searched else ""
    print(
        f"{len(hits)} hit(s), model {res.model_version}, {res.candidates} candidate(s)"
        f"{verdicts}{regions}"
    )
    for n, h in enumerate(hits, 1):
        where = f"{h['start_s']:7.2f}-{h['end_s']:7.2f} s"
        match = (
            f"  query {h['query_start_s']:.1f}-{h['query_end_s']:.1f} s matches "
            f"target {h['start_s']:.1f}-{h['end_s']:.1f} s"
            if h["aligned"]
            else ""
        )
        name = h["title"] or h["uri"]
        copy = f"{'COPY' if h['copy'] else 'no':>4} {h['copy_score']:+.3f}  " if "copy" in h else ""
        print(f"{n:3d}. {h['score']:.4f}  {copy}video {h['video_id']:<6} {where}  {name}{match}")
    return 0


def _write_review(args: argparse.Namespace, res: Any, query: Any) -> None:
    """The contact sheet (aligned hits: they say which moment of the query matched) and
    the timeline (every hit) the options asked for."""
    matches = [match_of_hit(h, query) for h in res.hits]
    if args.sheet:
        aligned = [m for m, h in zip(matches, res.hits, strict=True) if h.aligned]
        if aligned:
            write_sheet(aligned, args.sheet, title=f"query {query.name}: {len(aligned)} match(es)")
        else:
            say("no contact sheet: no hit has a matched range (alignment found none)")
    if args.otio:
        if matches:
            write_timeline(matches, args.otio, name=f"sora search: {query.name}")
        else:
            say("no timeline: the search found no hits")


def _run_batch(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """One SearchBatch call per BATCH queries; one block (or JSON list) per query."""
    if args.ids:
        queries: list[Any] = list(args.ids)
        labels = [f"video {v}" for v in queries]
        key, extra = "video_ids", {"exclude_query_video": True}
    else:
        queries = list(read_vectors_file(args.vectors_file))
        labels = [f"vector {i}" for i in range(len(queries))]
        key, extra = "vectors", {}
    results = []
    with connect(args) as client:
        for i in range(0, len(queries), BATCH):
            results += client.search_batch(**{key: queries[i : i + BATCH]}, **extra, **options)
    if args.json:
        out = [{"query": q, "hits": [hit_to_json(h) for h in r.hits]}
               for q, r in zip(labels, results, strict=True)]  # fmt: skip
        print(json.dumps(out, indent=2))
        return 0
    for label, res in zip(labels, results, strict=True):
        print(f"{label}: {len(res.hits)} hit(s)")
        for n, h in enumerate(res.hits, 1):
            name = h.video.title or h.video.uri
            where = f"{h.target.start_s:7.2f}-{h.target.end_s:7.2f} s"
            print(f"  {n:3d}. {h.score:.4f}  video {h.video.id:<6} {where}  {name}")
    return 0


def hit_to_json(h) -> dict[str, Any]:
    out = {
        "video_id": h.video.id,
        "uri": h.video.uri,
        "title": h.video.title,
        "collection": h.video.collection,
        "score": round(float(h.score), 6),
        "segment_id": h.segment_id,
        "start_s": round(h.target.start_s, 3),
        "end_s": round(h.target.end_s, 3),
        "aligned": h.aligned,
    }
    if h.HasField("copy_score"):
        out.update(copy_score=round(float(h.copy_score), 6), copy=bool(h.is_copy))
    if h.aligned:
        out.update(
            query_start_s=round(h.query.start_s, 3),
            query_end_s=round(h.query.end_s, 3),
            alignment_score=round(float(h.alignment_score), 6),
        )
    return out
