"""Copy scores and verdicts on search hits (the maths is sora_encoder.copy_score).

    reference_video   = mean of the query video vector's k best background video cosines
    reference_segment = the same for the query's segment rows (mean over the rows used)
    hit.copy_score    = hit.score - the reference of the hit's score:
        video level, first stage only     reference_video     (video-vector cosine)
        video level, aligned              (reference_video + reference_segment) / 2
                                          (the score mixes the two: search_service.py)
        segment level                     reference_segment   (segment cosines)
    hit.is_copy       = copy_score >= the calibration's threshold

One threshold serves all three: it is picked on video-vector scores (copy_score.py), and
segment-level and aligned scores have somewhat different spreads, so `is_copy` is best
calibrated at video level (what the eval measures); a threshold per level is a follow-up.
A missing calibration is remembered per version: restart the API after `sora checkpoint
calibrate` for a model it already serves.

The calibration is the serving model version's (`copy_calibration.npz` in its checkpoint
folder); without one, hits carry no copy score and the API says so (no verdict is better
than one against the wrong vectors).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sora_encoder.copy_score import CopyCalibration, load_calibration

logger = logging.getLogger(__name__)


def annotate_copies(
    hits: Sequence[Any],
    cal: CopyCalibration,
    *,
    level: str,
    query_vector: np.ndarray,
    query_rows: np.ndarray | None = None,
) -> None:
    """Set `copy_score` and `is_copy` on each hit (objects with score and alignment_score).

    query_vector (d,) the query's video vector; query_rows (m, d) the segment rows the
    search used (None for a single-vector query: the vector stands in for them)."""
    if not hits:
        return
    ref_video = float(cal.reference(query_vector[None, :], "video")[0])
    rows = query_vector[None, :] if query_rows is None or len(query_rows) == 0 else query_rows
    ref_segment = float(cal.reference(rows, "segment").mean())
    for hit in hits:
        if level == "segment":
            ref = ref_segment
        elif hit.alignment_score is not None:
            ref = (ref_video + ref_segment) / 2.0
        else:
            ref = ref_video
        hit.copy_score = float(hit.score) - ref
        hit.is_copy = bool(cal.is_copy(hit.copy_score))


class CalibrationSource:
    """The calibration of a model version, read once from a checkpoint folder.

    `folder` None: the encoder's default checkpoint ($SORA_CHECKPOINT, else the shipped
    one), the same one the service embeds with."""

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self._folder = Path(folder) if folder else None
        self._lock = threading.Lock()
        self._cache: dict[str, CopyCalibration | None] = {}

    def folder(self) -> Path | None:
        if self._folder is not None:
            return self._folder
        from sora_encoder import default_checkpoint

        return default_checkpoint()

    def __call__(self, version: str | None) -> CopyCalibration | None:
        if version is None:
            return None
        with self._lock:
            if version not in self._cache:
                cal = load_calibration(self.folder(), version)
                if cal is None:
                    logger.info("no copy calibration for %s: hits carry no copy verdict", version)
                self._cache[version] = cal
            return self._cache[version]
