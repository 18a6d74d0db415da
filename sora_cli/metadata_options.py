"""KEY=VALUE options (--meta) shared by the commands that attach or filter user metadata."""

from __future__ import annotations

import argparse
from collections.abc import Iterable


def add_meta_filter(p: argparse.ArgumentParser) -> None:
    """--meta KEY=VALUE (repeatable): only videos carrying all of these user metadata."""
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only videos with this user metadata (repeatable: all of them)",
    )


def parse_key_values(items: Iterable[str]) -> dict[str, str]:
    """["reel=3", "cam=A"] -> {"reel": "3", "cam": "A"}; ValueError naming a bad item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--meta {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out
