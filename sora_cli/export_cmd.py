"""`sora export`: a collection's embeddings to a file, for notebooks and other vector stores.

    sora export --collection C --format parquet --out emb.parquet
    sora export --collection C --format npy --out emb.npy      # + emb.rows.jsonl

Pages through ListEmbeddings (services/api/export.py writes the files; its docstring has
the columns)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .client_options import add_client_options, connect, report_rpc_error
from .metadata_options import add_meta_filter, parse_key_values


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write embeddings with their metadata (parquet or npy)")
    p.add_argument("--out", required=True, metavar="PATH", help="the file to write")
    p.add_argument("--format", choices=("parquet", "npy"), help="default: from --out's suffix")
    p.add_argument(
        "--level",
        choices=("segment", "video"),
        default="segment",
        help="a row per segment (default) or per video (its mean vector)",
    )
    p.add_argument("--collection", help="only this collection")
    p.add_argument("--tag", help="only videos with this tag")
    add_meta_filter(p)
    p.add_argument("--model-version", default="", help="default: the one searches serve")
    add_client_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import grpc

    from services.api.export import export_embeddings

    fmt = args.format or ("npy" if args.out.endswith(".npy") else "parquet")
    try:
        meta = parse_key_values(args.meta)
    except ValueError as exc:
        print(f"sora export: {exc}", file=sys.stderr)
        return 2
    with connect(args) as client:
        items = client.iter_embeddings(
            collection=args.collection,
            tag=args.tag,
            user_metadata=meta,
            model_version=args.model_version,
            video_vectors_only=args.level == "video",
        )
        try:
            summary = export_embeddings(items, args.out, fmt=fmt, level=args.level)
        except grpc.RpcError as exc:
            return report_rpc_error(exc)
        except (ValueError, RuntimeError) as exc:
            print(f"sora export: {exc}", file=sys.stderr)
            return 1
    print(f"{summary.rows} {args.level} vectors ({summary.dim}-d, model "
          f"{summary.model_version}) of {summary.videos} videos -> "
          + ", ".join(str(f) for f in summary.files))  # fmt: skip
    return 0
