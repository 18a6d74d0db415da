"""The perceptual-hash anchors: HMA's vPDQ matching and videohash's score on hand-made
hashes, skipping when a package is missing, and both packages on real small videos (those
tests skip, saying so, where the optional `anchors` extra is not installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sora_encoder.eval import anchors
from sora_encoder.eval.anchors import (
    AnchorError,
    FrameHashes,
    build_anchors,
    hamming,
    hash_files,
    videohash_similarity,
    vpdq_query_share,
)
from tests.media_factory import make_video

ZERO = "00" * 32


def _flip(hex_: str, n_bits: int) -> str:
    """`hex_` with its first n_bits bits flipped."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(hex_), np.uint8))
    bits[:n_bits] ^= 1
    return np.packbits(bits).tobytes().hex()


def _frames(*hexes: str) -> FrameHashes:
    return FrameHashes.from_features([(h, 100) for h in hexes])


def test_hamming_counts_differing_bits() -> None:
    a = np.zeros((1, 32), np.uint8)
    b = np.stack([np.zeros(32, np.uint8), np.full(32, 0xFF, np.uint8), np.eye(1, 32, 5)[0]])
    assert hamming(a, b.astype(np.uint8)).tolist() == [[0, 256, 1]]
    with pytest.raises(TypeError):
        hamming(a.astype(np.int64), a.astype(np.int64))
    with pytest.raises(ValueError):
        hamming(a, np.zeros((1, 8), np.uint8))


def test_frames_are_deduplicated_then_quality_filtered_as_hma_does() -> None:
    f = FrameHashes.from_features(
        [(ZERO, 100), (ZERO, 100), ("ff" * 32, 49), ("0f" * 32, 50), ("0f" * 32, 10)]
    )
    assert [bytes(r).hex() for r in f.bits] == [ZERO, "0f" * 32]  # 49 < 50 dropped
    with pytest.raises(ValueError, match="64 hex"):
        FrameHashes.from_features([("00ff", 100)])


def test_vpdq_score_is_the_share_of_query_frames_within_31_bits() -> None:
    q = _frames(ZERO, "ff" * 32)
    targets = [
        _frames(_flip(ZERO, 31)),  # matches the first query frame only, at exactly 31
        _frames(_flip(ZERO, 32)),  # one bit too far: nothing
        _frames(),  # no usable frame
        _frames("ff" * 32, _flip(ZERO, 3)),  # both
    ]
    assert vpdq_query_share(q, targets).tolist() == [0.5, 0.0, 0.0, 1.0]
    assert vpdq_query_share(_frames(), targets).tolist() == [0.0] * 4


def test_videohash_similarity_is_one_minus_the_bit_distance_over_64() -> None:
    a = np.zeros(8, np.uint8)
    b = np.array([0x0F, 0, 0, 0, 0, 0, 0, 0x01], np.uint8)  # 5 bits differ
    assert videohash_similarity([a], [a, b]).tolist() == [[1.0, 1 - 5 / 64]]
    assert videohash_similarity([], [a]).shape == (0, 1)
    assert anchors.VIDEOHASH_SIMILAR == 10  # ceil(15% of 64): its `is_similar`


def test_a_missing_package_is_skipped_with_the_reason(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        anchors.importlib.util, "find_spec", lambda n: None if n == "vpdq" else real(n)
    )
    built, skipped = build_anchors(["vpdq"])
    assert built == [] and "not installed" in skipped["vpdq"] and "[anchors]" in skipped["vpdq"]
    with pytest.raises(ValueError, match="unknown"):
        build_anchors(["phash"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("anchors")

    def video(name: str, source: str, **kw) -> Path:
        return make_video(d / name, duration_s=4, fps=12, size=(160, 120), source=source, **kw)

    out = {
        "a": video("a.mp4", "testsrc2"),
        "b": video("b.mp4", "mandelbrot"),
        "a_mpeg4": video("a_mpeg4.mp4", "testsrc2", codec="mpeg4"),  # a copy of a: other codec
        "a_small": video("a_small.mp4", "testsrc2", vf="scale=80:60"),  # and half size
        "broken": d / "broken.mp4",
    }
    out["broken"].write_bytes(b"not a video at all")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vpdq", "videohash"])
def test_anchor_finds_copies_and_reports_a_broken_file(name: str, videos) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"`{name}` not installed (the optional `anchors` extra)")
    (anchor,), skipped = build_anchors([name])
    assert skipped == {}
    paths = [videos[k] for k in ("a", "b", "a_mpeg4", "a_small", "broken")]
    hashes, failed, seconds = hash_files(paths, anchor)
    assert list(failed) == [videos["broken"]] and hashes[4] is None and seconds > 0
    D = anchor.score_matrix(hashes[2:4], hashes[:2])  # the copies against a and b
    assert D.shape == (2, 2)
    assert D[0, 0] >= anchor.copy_threshold > D[0, 1], D  # re-encoded: called a copy of a
    assert D[1, 0] > D[1, 1], D  # half size: closer to a (videohash: below its threshold)
    with pytest.raises(AnchorError):
        anchor.hash_file(videos["broken"])
