"""KEY=VALUE options (--meta) shared by the commands that attach or filter user metadata."""

from __future__ import annotations

from collections.abc import Iterable


def parse_key_values(items: Iterable[str]) -> dict[str, str]:
    """["reel=3", "cam=A"] -> {"reel": "3", "cam": "A"}; ValueError naming a bad item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--meta {item!r}: expected KEY=VALUE")
        out[key.strip()] = value
    return out
