"""Video files on disk, and the record of one labelled file. One definition for every user:
`sora ingest`, `sora train`, `sora eval` and the classifier trainer pick the same files
from the same folder.

    find_videos([file or folder, ...]) -> sorted absolute paths
        a file named directly is taken whatever its suffix (the caller chose it);
        a folder is searched recursively for files with a VIDEO_SUFFIXES suffix
    LabelledVideo(path, label, group, duration_s)   one row of a labelled list
        (MANIFEST.csv, a folder of label sub-folders): group keeps clips of one source
        video on one side of a train/test split
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VIDEO_SUFFIXES", "LabelledVideo", "find_videos"]

# Containers ffmpeg reads that hold video; matched case-insensitively. A file of another
# suffix is still taken when named directly.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .asf .3gp .ogv .mxf"
    .split()
)  # fmt: skip


def find_videos(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Video files named or found (recursively, by suffix) under the given paths: absolute,
    sorted, without duplicates. FileNotFoundError for a path that does not exist."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_file():
            found.add(p.resolve())
        elif p.is_dir():
            found.update(
                f.resolve()
                for f in p.rglob("*")
                if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()
            )
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return sorted(found)


@dataclass(frozen=True)
class LabelledVideo:
    """One video of a labelled (or unlabelled) list."""

    path: Path  # absolute
    label: str = ""  # "" when unlabelled
    # Clips of one group come from one source video: a split keeps them on one side.
    # None: the video is its own group.
    group: str | None = None
    duration_s: float | None = None  # when the list states it
