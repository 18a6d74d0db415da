"""Frame-level placement of matches (sora_encoder/moments.py, media/thumbnails.py) and the
search stage that uses it (services/search/moments.py, SearchByClip)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from services.search.moments import refine_targets
from sora_encoder.media import probe
from sora_encoder.media.thumbnails import Thumbnails, decode_thumbnails
from sora_encoder.moments import place
from tests.media_factory import ffmpeg_run, make_video


def _footage(n: int, seed: int = 0) -> np.ndarray:
    """(n, 16, 16) uint8 frames that change smoothly over time, like real footage."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, 16, 16))
    x[0] = rng.normal(size=(16, 16))
    for t in range(1, n):  # AR(1): neighbours alike, frames 2 s (8 frames) apart unrelated
        x[t] = 0.7 * x[t - 1] + 0.71 * rng.normal(size=(16, 16))
    return np.clip(128 + 40 * x, 0, 255).astype(np.uint8)


def test_place_finds_a_trimmed_part_to_the_frame():
    target = Thumbnails(10.0, 4.0, _footage(160))
    query = Thumbnails(0.0, 4.0, target.frames[46:110])
    p = place(query, target)
    assert p is not None and p.rate == 1.0
    assert p.start_s == pytest.approx(10.0 + 46 / 4) and p.end_s == pytest.approx(10.0 + 110 / 4)
    assert p.score > 0.95 and p.margin > 0.3


def test_place_finds_the_playback_rate():
    target = Thumbnails(0.0, 4.0, _footage(200, seed=1))
    picked = np.rint(20 + 1.25 * np.arange(100)).astype(int)  # played 1.25x faster
    query = Thumbnails(0.0, 4.0, target.frames[picked])
    p = place(query, target)
    assert p is not None and p.rate == 1.25
    assert abs(p.start_s - 5.0) <= 0.25 and abs(p.end_s - (20 + 125) / 4) <= 0.25


def test_place_survives_brightness_and_contrast_changes():
    target = Thumbnails(0.0, 4.0, _footage(120, seed=2))
    graded = np.clip(target.frames[30:90].astype(np.float32) * 0.6 + 60, 0, 255)
    p = place(Thumbnails(0.0, 4.0, graded.astype(np.uint8)), target)
    assert p is not None and p.start_s == pytest.approx(7.5)


def test_static_footage_is_not_placed():
    """A still scene, re-encoded (its own noise in each copy), matches every offset alike:
    no placement, the caller keeps its range."""
    rng = np.random.default_rng(3)
    still = np.repeat(rng.integers(0, 255, size=(1, 16, 16)), 80, axis=0)

    def encoded(n: int) -> np.ndarray:
        return np.clip(still[:n] + rng.normal(0, 2, size=(n, 16, 16)), 0, 255).astype(np.uint8)

    assert place(Thumbnails(0.0, 4.0, encoded(30)), Thumbnails(0.0, 4.0, encoded(80))) is None


def test_a_caption_over_the_whole_copy_does_not_hide_the_motion():
    """A static overlay is the same at every offset: the moving part still places the copy."""
    target = Thumbnails(0.0, 4.0, _footage(120, seed=4))
    captioned = target.frames[40:90].copy()
    captioned[:, 10:, :] = 255  # a white caption bar over the lower third, on every frame
    p = place(Thumbnails(0.0, 4.0, captioned), target)
    assert p is not None and p.start_s == pytest.approx(10.0)


def test_place_refuses_mixed_rates_and_ignores_tiny_queries():
    t = Thumbnails(0.0, 4.0, _footage(40))
    with pytest.raises(ValueError, match="fps"):
        place(Thumbnails(0.0, 8.0, t.frames[:10]), t)
    assert place(Thumbnails(0.0, 4.0, t.frames[:3]), t) is None


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """24 s of a continuously zooming Mandelbrot: every quarter second looks different."""
    d = tmp_path_factory.mktemp("moments")
    return make_video(d / "long.mp4", duration_s=24, size=(160, 120), fps=20, source="mandelbrot")


def _cut(src, dst, start_s: float, duration_s: float, vf: str = "null"):
    ffmpeg_run(["-ss", f"{start_s}", "-t", f"{duration_s}", "-i", str(src), "-vf", vf,
                    "-an", "-c:v", "libx264", "-crf", "28", str(dst)])  # fmt: skip
    return dst


def test_decode_thumbnails_seeks_to_the_second(long_video, tmp_path):
    info = probe(long_video)
    whole = decode_thumbnails(long_video, info)
    assert abs(len(whole) - 24 * 4) <= 1 and whole.frames.shape[1:] == (16, 16)
    part = decode_thumbnails(long_video, info, start_s=9.0, duration_s=4.0)
    assert abs(len(part) - 16) <= 1 and part.start_s == 9.0
    p = place(part, whole)
    assert p is not None and abs(p.start_s - 9.0) <= 0.25


def test_refine_targets_narrows_an_aligned_hit_and_leaves_others(long_video, tmp_path):
    clip = _cut(long_video, tmp_path / "clip.mp4", 6.3, 7.8, vf="eq=brightness=0.1")
    query = decode_thumbnails(clip, probe(clip))
    video = SimpleNamespace(id=1, uri=str(long_video))
    aligned = SimpleNamespace(video=video, target=(4.0, 16.0), query=(0.0, 7.8),
                              alignment_score=0.9)  # fmt: skip
    unaligned = SimpleNamespace(video=video, target=(0.0, 4.0), query=None, alignment_score=None)
    gone = SimpleNamespace(video=SimpleNamespace(id=2, uri=str(tmp_path / "deleted.mp4")),
                           target=(0.0, 8.0), query=None, alignment_score=0.9)  # fmt: skip
    url = SimpleNamespace(video=SimpleNamespace(id=3, uri="https://example.com/v.mp4"),
                          target=(0.0, 8.0), query=None, alignment_score=0.9)  # fmt: skip
    assert refine_targets([aligned, unaligned, gone, url], query) == 1
    assert abs(aligned.target[0] - 6.3) <= 0.3 and abs(aligned.target[1] - 14.1) <= 0.3
    assert unaligned.target == (0.0, 4.0) and gone.target == url.target == (0.0, 8.0)


def test_search_by_clip_reports_the_moment_to_a_fraction_of_a_second(db, tmp_path, long_video):
    """The whole path: worker-written vectors of a 24-s video, an uploaded 7.8-s cut of it
    (brightened, re-encoded), SearchByClip: the hit's range is the cut's, not its segments'."""
    from sora_encoder import load_embedder
    from tests.test_api_harness import make_api
    from tests.test_api_server import _worker_writes

    a = make_api(db, tmp_path, embedder=lambda: load_embedder(variant="sora-t", precision="fp32"))
    try:
        embedder = a.server.services.search.encoder.get()
        host_id = _worker_writes(db, embedder, long_video, 1)
        other = make_video(tmp_path / "other.mp4", duration_s=8, size=(160, 120), fps=20)
        _worker_writes(db, embedder, other, 2)
        a.sync()
        clip = _cut(long_video, tmp_path / "clip.mp4", 6.3, 7.8, vf="eq=brightness=0.1")
        top = a.client.search_by_clip(clip, top_k=2).hits[0]
        assert top.video.id == host_id and top.aligned
        assert abs(top.target.start_s - 6.3) <= 0.3 and abs(top.target.end_s - 14.1) <= 0.3
    finally:
        a.client.close()
        a.server.stop(0).wait(10)


def test_ingest_stores_the_content_box_and_refinement_uses_it(
    db, tmp_path, long_video, monkeypatch
):
    """The worker records the picture inside the borders on the video; refining a hit on
    that video reads it instead of detecting the borders again."""
    import services.search.moments as moments
    from services.store import get_video, register_video
    from sora_encoder import load_embedder
    from workers.ingest_job import run_ingest_job

    boxed = _cut(long_video, tmp_path / "boxed.mp4", 0, 24, vf="pad=160:200:0:40:black")
    with db.Session.begin() as s:
        video, job, _ = register_video(s, uri=str(boxed), content_sha256="b" * 64, size_bytes=1)
        video_id, job_id = video.id, job.id
    embedder = load_embedder(variant="sora-t", precision="fp32")
    assert run_ingest_job(db, embedder, job_id, owner="t", lease_s=60).status == "succeeded"
    with db.Session.begin() as s:
        stored = get_video(s, video_id)
        box = tuple(float(v) for v in stored.content_box.split(","))
        row = SimpleNamespace(id=video_id, uri=stored.uri, content_box=stored.content_box)
    assert box[0] == 0.0 and box[2] == 1.0 and 0.2 < box[1] < 0.25 and 0.55 < box[3] < 0.6

    def no_detection(*a, **k):
        raise AssertionError("the stored box should have been used")

    monkeypatch.setattr(moments, "detect_content_box", no_detection)
    clip = _cut(long_video, tmp_path / "clip.mp4", 9.0, 6.0)
    hit = SimpleNamespace(video=row, target=(8.0, 16.0), query=(0.0, 6.0), alignment_score=0.9)
    assert refine_targets([hit], decode_thumbnails(clip, probe(clip))) == 1
    assert abs(hit.target[0] - 9.0) <= 0.3 and abs(hit.target[1] - 15.0) <= 0.3
