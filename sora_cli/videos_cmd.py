"""`sora get`, `sora list`, `sora delete`: the library's videos."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf.json_format import MessageToDict

from .client_options import add_client_options, connect
from .metadata_options import add_meta_filter, parse_key_values


def add_parser(sub: Any) -> None:
    p = sub.add_parser("get", help="one video's metadata and status")
    p.add_argument("video_id", type=int, nargs="?", help="or --external-id")
    p.add_argument("--external-id", help="the video with this external id (in --collection)")
    p.add_argument("--collection", help="with --external-id: the id's collection")
    p.add_argument("--json", action="store_true")
    add_client_options(p)
    p.set_defaults(func=run_get)

    p = sub.add_parser("list", help="list videos (filters combine)")
    p.add_argument("--collection")
    p.add_argument("--tag")
    p.add_argument("--status", choices=("PENDING", "PROCESSING", "READY", "FAILED", "DELETED"))
    p.add_argument("--external-id")
    add_meta_filter(p)
    p.add_argument("--limit", type=int, default=100, help="at most this many (0: all)")
    p.add_argument("--json", action="store_true", help="JSON lines, one video each")
    add_client_options(p)
    p.set_defaults(func=run_list)

    p = sub.add_parser("delete", help="delete videos (gone from search at once)")
    p.add_argument("video_ids", type=int, nargs="+", metavar="ID")
    add_client_options(p)
    p.set_defaults(func=run_delete)


def video_dict(v) -> dict[str, Any]:
    d = MessageToDict(v, preserving_proto_field_name=True)
    d["status"] = d.get("status", "VIDEO_STATUS_UNSPECIFIED").removeprefix("VIDEO_STATUS_")
    return d


def video_line(v) -> str:
    status = video_dict(v)["status"]
    extra = f"  ({v.error})" if v.error else ""
    name = v.title or v.uri
    ext = f"  [{v.external_id}]" if v.external_id else ""
    return (f"{v.id:<6} {status:<10} {v.duration_s:7.2f} s  {v.collection or '-':<12} "
            f"{name}{ext}{extra}")  # fmt: skip


def run_get(args: argparse.Namespace) -> int:
    if (args.video_id is None) == (args.external_id is None):
        print("sora get: give a video id or --external-id (not both)", file=sys.stderr)
        return 2
    with connect(args) as client:
        if args.external_id is not None:
            v = client.get_video_by_external_id(args.external_id, collection=args.collection)
        else:
            v = client.get_video(args.video_id)
    print(json.dumps(video_dict(v), indent=2) if args.json else video_line(v))
    return 0


def run_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for n, v in enumerate(
            client.iter_videos(
                collection=args.collection,
                tag=args.tag,
                status=args.status,
                external_id=args.external_id,
                user_metadata=parse_key_values(args.meta),
            )  # fmt: skip
        ):
            if args.limit and n >= args.limit:
                break
            print(json.dumps(video_dict(v)) if args.json else video_line(v))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for video_id in args.video_ids:
            v = client.delete_video(video_id)
            print(f"deleted {v.id} {v.uri}")
    return 0
