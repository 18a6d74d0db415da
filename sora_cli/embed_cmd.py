"""`sora embed FILE...`: the video vector and each segment's vector of local files."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sora_encoder import VideoEmbedding, load_embedder
from sora_encoder.media import MediaError

from .encoder_options import add_encoder_options, encoder_choice


def add_parser(sub: Any) -> None:
    p = sub.add_parser("embed", help="embed video files into Sora vectors")
    p.add_argument("files", nargs="+", metavar="FILE", help="video files")
    p.add_argument("--json", action="store_true", help="print JSON (one object per file)")
    add_encoder_options(p)
    p.add_argument(
        "--segment-seconds", type=float, default=4.0, help="window length in seconds (default 4)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    enc = encoder_choice(args)
    embedder = load_embedder(
        checkpoint=enc.checkpoint,
        variant=enc.variant,
        device=enc.device,
        precision=enc.precision,
        segment_s=args.segment_seconds,
    )
    failures = 0
    for path in args.files:
        try:
            emb = embedder.embed(path)
        except (MediaError, FileNotFoundError) as exc:
            failures += 1
            print(f"sora embed: {path}: {exc}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(emb.to_json(path)))
        else:
            print_human(path, emb)
    return 1 if failures else 0


def print_human(path: str, emb: VideoEmbedding) -> None:
    info = emb.info
    head = ", ".join(f"{x:+.3f}" for x in emb.vector[:4])
    print(
        f"{path}: {info.duration_s:.2f} s {info.width}x{info.height} {info.codec} "
        f"-> {len(emb.segments)} segment(s), {emb.vector.shape[0]}-d, model {emb.model_version}"
    )
    print(f"  video    [{head}, ...]")
    for s in emb.segments:
        seg = ", ".join(f"{x:+.3f}" for x in s.vector[:4])
        print(f"  {s.start_s:6.2f}-{s.end_s:6.2f} s  [{seg}, ...]")
