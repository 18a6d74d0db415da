"""`sora samples DIR`: write a few synthetic demo videos made with ffmpeg."""

from __future__ import annotations

import argparse
from typing import Any

from sora_encoder.media.samples import make_samples


def add_parser(sub: Any) -> None:
    p = sub.add_parser("samples", help="write synthetic demo videos (ffmpeg lavfi) into DIR")
    p.add_argument("folder", metavar="DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for path in make_samples(args.folder):
        print(path)
    return 0
