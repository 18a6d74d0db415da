"""Anchors: the perceptual hashes users deploy today for video copy detection.

    VpdqMatcher       Meta's vPDQ (PyPI `vpdq`): a PDQ hash (256 bits) of one frame a second.
                      Matched as Meta's HMA / python-threatexchange does (`vpdq_brute_matcher`):
                      both sides deduplicated by hash and frames of quality < 50 dropped;
                      score = share of the query's frames within Hamming distance 31 of some
                      frame of the target; HMA calls a match at 80% (copy_threshold 0.8)
    VideohashMatcher  PyPI `videohash`: one 64-bit hash per video (a wavelet hash of a collage
                      of frames, mixed with dominant colours); score = 1 - Hamming / 64; its
                      `is_similar` is distance <= ceil(15% of 64) = 10 (copy_threshold 54/64)

    hash_file(path) -> hash (opaque)        score_matrix(query hashes, db hashes) -> (nq, nb)

Unlike the embedders in `baselines`, these read the files themselves (their own decoders,
their own frame sampling) and score pairs with their own rule, not an inner product: that
is how they are deployed, and an anchor measured through our decoder would not be the
anchor. Both packages are optional (`pip install -e ".[anchors]"`); `build_anchors` skips
a missing one with the reason, so the evaluation runs without them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ANCHOR_NAMES",
    "DEFAULT_ANCHORS",
    "AnchorError",
    "FileMatcher",
    "FrameHashes",
    "VideohashMatcher",
    "VpdqMatcher",
    "build_anchors",
    "hamming",
    "hash_files",
    "videohash_similarity",
    "vpdq_query_share",
]

log = logging.getLogger(__name__)

ANCHOR_NAMES = ("vpdq", "videohash")
# run unless left out: vpdq costs ~0.1 s a short clip. videohash runs only when named: it
# starts ffmpeg ~14 times a file (12 of them to detect black bars), 1-4 s a clip here,
# which would add ~40 min to a full run on the shared clips.
DEFAULT_ANCHORS = ("vpdq",)
INSTALL_HINT = 'pip install -e ".[anchors]" (vpdq needs the libav* dev packages: docs/EVAL.md)'

# HMA's constants (python-threatexchange extensions/vpdq/vpdq_util.py)
VPDQ_DISTANCE = 31  # frames within this Hamming distance (of 256 bits) match
VPDQ_QUALITY = 50  # frames below this PDQ quality (0-100, how featureful) are ignored
VPDQ_MATCH_SHARE = 0.8  # VPDQ_QUERY_MATCH_THRESHOLD_PERCENT / 100: HMA's match decision
VPDQ_SECONDS_PER_HASH = 1.0  # vpdq.computeHash's default, the one HMA hashes with

VIDEOHASH_BITS = 64
VIDEOHASH_SIMILAR = math.ceil(0.15 * VIDEOHASH_BITS)  # VideoHash.is_similar: distance <= 10

_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)  # (256,)


class AnchorError(RuntimeError):
    """An anchor could not hash a file (its own decoder failed); the reason is in the text."""


class FileMatcher(Protocol):
    name: str  # the report's label
    key: str  # what it computes, with its version and matching rule
    dim: int  # 0: not a vector
    copy_threshold: float | None  # score >= this: the deployed rule says "copy"

    def hash_file(self, path: Path) -> Any: ...

    def score_matrix(self, xq: Sequence[Any], xb: Sequence[Any]) -> np.ndarray: ...


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distances between packed hashes a (n, B) and b (m, B) uint8: (n, m) int."""
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise TypeError(f"hashes must be packed uint8, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"hashes must be (n, B) and (m, B), got {a.shape} and {b.shape}")
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=-1)  # (n, m, B) -> (n, m)


@dataclass(frozen=True)
class FrameHashes:
    """A video's usable vPDQ frames: packed 256-bit PDQ hashes, (n, 32) uint8."""

    bits: np.ndarray

    @classmethod
    def from_features(
        cls, features: Sequence[tuple[str, int]], *, quality: int = VPDQ_QUALITY
    ) -> FrameHashes:
        """From (hex, quality) per frame, as HMA prepares them: deduplicate by hash (first
        kept), then drop frames below `quality`."""
        seen: set[str] = set()
        kept = []
        for hex_, q in features:
            if hex_ in seen:
                continue
            seen.add(hex_)
            if q >= quality:
                kept.append(bytes.fromhex(hex_))
        if any(len(b) != 32 for b in kept):
            raise ValueError("vPDQ hashes must be 64 hex digits")
        bits = np.frombuffer(b"".join(kept), np.uint8).reshape(len(kept), 32)
        return cls(bits)


def vpdq_query_share(
    q: FrameHashes, targets: Sequence[FrameHashes], *, distance: int = VPDQ_DISTANCE
) -> np.ndarray:
    """(len(targets),) the share of q's frames within `distance` of some frame of each target
    (HMA's query_match_percent / 100). 0 where either side has no usable frame (HMA would
    divide by zero for an empty query; nothing can match it)."""
    out = np.zeros(len(targets), np.float64)
    sizes = np.array([len(t.bits) for t in targets], dtype=np.int64)
    if len(q.bits) == 0 or sizes.sum() == 0:
        return out
    xb = np.concatenate([t.bits for t in targets if len(t.bits)])  # (sum frames, 32)
    near = hamming(q.bits, xb) <= distance  # (nq frames, sum frames)
    nonempty = np.flatnonzero(sizes)
    starts = np.r_[0, np.cumsum(sizes[nonempty])[:-1]]
    hit = np.logical_or.reduceat(near, starts, axis=1)  # (nq frames, targets with frames)
    out[nonempty] = hit.mean(axis=0)
    return out


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class VpdqMatcher:
    """vPDQ hashes by `vpdq.computeHash`, HMA's brute-force matching (module docstring)."""

    def __init__(self, *, name: str = "vpdq", seconds_per_hash: float = VPDQ_SECONDS_PER_HASH):
        import vpdq  # optional: build_anchors checks it is there

        self._vpdq = vpdq
        self.name = name
        self.seconds_per_hash = seconds_per_hash
        self.key = (
            f"vpdq-{_version('vpdq')}:{seconds_per_hash:g}s/hash:"
            f"hma-brute(d<={VPDQ_DISTANCE},q>={VPDQ_QUALITY})"
        )
        self.dim = 0
        self.copy_threshold: float | None = VPDQ_MATCH_SHARE

    def hash_file(self, path: Path) -> FrameHashes:
        try:
            # one thread: the eval shares the machine; the hashes do not depend on it
            features = self._vpdq.computeHash(
                str(path), seconds_per_hash=self.seconds_per_hash, thread_count=1
            )
        except Exception as exc:  # the binding raises a bare Exception on a decode failure
            raise AnchorError(f"vpdq: {exc}") from exc
        return FrameHashes.from_features([(f.hex, f.quality) for f in features])

    def score_matrix(self, xq: Sequence[FrameHashes], xb: Sequence[FrameHashes]) -> np.ndarray:
        return np.stack([vpdq_query_share(q, xb) for q in xq]) if xq else np.zeros((0, len(xb)))


@contextlib.contextmanager
def _videohash_runtime() -> Iterator[None]:
    """What videohash 3.0.1 needs and this project does not otherwise give it:

    - an `ffmpeg` on PATH (it shells out to `ffmpeg`): the project's own binary
      (`sora_encoder.media.ffmpeg_exe`, the imageio-ffmpeg one when the system has none),
      linked from a temporary folder put first on PATH for the duration only;
    - `PIL.Image.ANTIALIAS`, removed in Pillow 10, which its collage maker still calls:
      restored as the alias of LANCZOS it always was (the same filter), if missing.
    """
    import PIL.Image

    if not hasattr(PIL.Image, "ANTIALIAS"):
        PIL.Image.ANTIALIAS = PIL.Image.LANCZOS  # type: ignore[attr-defined]
    if shutil.which("ffmpeg") is not None:
        yield
        return
    from sora_encoder.media import ffmpeg_exe

    old = os.environ.get("PATH", "")
    with tempfile.TemporaryDirectory(prefix="sora-videohash-bin-") as bin_dir:
        os.symlink(ffmpeg_exe(), os.path.join(bin_dir, "ffmpeg"))
        os.environ["PATH"] = bin_dir + os.pathsep + old
        try:
            yield
        finally:
            os.environ["PATH"] = old


class VideohashMatcher:
    """`videohash.VideoHash(path=...)`: one 64-bit hash per video; score 1 - Hamming / 64."""

    def __init__(self, *, name: str = "videohash") -> None:
        from videohash import VideoHash  # optional: build_anchors checks it is there

        self._VideoHash = VideoHash
        self.name = name
        self.key = f"videohash-{_version('videohash')}:1fps:64-bit"
        self.dim = 0
        self.copy_threshold: float | None = 1.0 - VIDEOHASH_SIMILAR / VIDEOHASH_BITS

    def hash_file(self, path: Path) -> np.ndarray:
        """(8,) uint8: the packed 64-bit hash."""
        with (
            _videohash_runtime(),
            tempfile.TemporaryDirectory(prefix="sora-videohash-") as tmp,
            warnings.catch_warnings(),
        ):
            # its Image.getdata calls warn on every tile (Pillow 13 deprecates them; the
            # `anchors` extra keeps Pillow < 14, where they go)
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                # a folder must end with a separator, or videohash takes it for a file
                h = self._VideoHash(path=str(Path(path).resolve()), storage_path=tmp + os.sep)
            except Exception as exc:  # it raises its own exception classes, and bare ones
                raise AnchorError(f"videohash: {type(exc).__name__}: {exc}") from exc
            bits = h.hash  # "0b" + 64 characters
        if not (bits.startswith("0b") and len(bits) == 2 + VIDEOHASH_BITS):
            raise AnchorError(f"videohash: unexpected hash {bits!r}")
        return np.packbits(np.array([c == "1" for c in bits[2:]], dtype=bool))

    def score_matrix(self, xq: Sequence[np.ndarray], xb: Sequence[np.ndarray]) -> np.ndarray:
        return videohash_similarity(xq, xb)


def videohash_similarity(xq: Sequence[np.ndarray], xb: Sequence[np.ndarray]) -> np.ndarray:
    """(nq, nb) 1 - Hamming / 64 between packed 64-bit hashes ((8,) uint8 each)."""
    if not len(xq) or not len(xb):
        return np.zeros((len(xq), len(xb)))
    return 1.0 - hamming(np.stack(xq), np.stack(xb)) / VIDEOHASH_BITS


_BUILDERS: dict[str, tuple[str, Callable[[], FileMatcher]]] = {
    "vpdq": ("vpdq", VpdqMatcher),
    "videohash": ("videohash", VideohashMatcher),
}


def build_anchors(names: Sequence[str]) -> tuple[list[FileMatcher], dict[str, str]]:
    """The named anchors that can run here, and {name: why not} for those that cannot."""
    unknown = sorted(set(names) - set(ANCHOR_NAMES))
    if unknown:
        raise ValueError(f"unknown anchors {unknown}; known: {list(ANCHOR_NAMES)}")
    out: list[FileMatcher] = []
    skipped: dict[str, str] = {}
    for name in names:
        module, build = _BUILDERS[name]
        if importlib.util.find_spec(module) is None:
            skipped[name] = f"the `{module}` package is not installed: {INSTALL_HINT}"
            continue
        try:
            out.append(build())
        except ImportError as exc:  # installed but broken (e.g. a missing shared library)
            skipped[name] = f"`{module}` does not import: {exc}"
    return out, skipped


def hash_files(
    paths: Sequence[Path],
    anchor: FileMatcher,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Any], dict[Path, str], float]:
    """Each file's hash (None where it failed), {file: reason}, seconds spent hashing."""
    hashes: list[Any] = []
    failed: dict[Path, str] = {}
    t0 = time.perf_counter()
    for n, p in enumerate(paths, start=1):
        try:
            hashes.append(anchor.hash_file(p))
        except (AnchorError, FileNotFoundError) as exc:
            log.warning("%s could not hash %s: %s", anchor.name, p, exc)
            failed[p] = str(exc)
            hashes.append(None)
        if progress is not None:
            progress(n, len(paths))
    return hashes, failed, time.perf_counter() - t0
