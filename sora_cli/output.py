"""What commands print besides their results: progress and refusals go to stderr, so that
stdout stays the result a script reads (`sora embed --json | ...`)."""

from __future__ import annotations

import sys


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
