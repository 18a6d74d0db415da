"""Where a video's stored uri points: a file on this machine, or somewhere else.

    "/videos/a.mp4", "file:///videos/a.mp4"   -> Path("/videos/a.mp4")
    "https://host/a.mp4", "s3://bucket/a.mp4" -> None (not a file here)

The one reading of a uri as a local path, shared by ingest (the API's path checks), the
worker (the file it decodes) and search (the library file a moment is placed in).
"""

from __future__ import annotations

from pathlib import Path

FILE_SCHEME = "file://"


def is_url(uri: str) -> bool:
    """True for a uri of another scheme than file:// (it names no file on this machine)."""
    return "://" in uri and not uri.startswith(FILE_SCHEME)


def local_path(uri: str) -> Path | None:
    """The path a plain path or file:// uri names (it may not exist), or None for a URL."""
    if is_url(uri):
        return None
    return Path(uri[len(FILE_SCHEME) :] if uri.startswith(FILE_SCHEME) else uri)


def local_file(uri: str) -> Path | None:
    """The file a uri names on this machine, or None (empty, a URL, or nothing there)."""
    path = local_path(uri) if uri else None
    return path if path is not None and path.is_file() else None
