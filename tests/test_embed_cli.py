"""`sora embed` end to end: a real ffmpeg decode and a real model, in a separate process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sora_encoder import EncoderRuntime, VideoEmbedder
from sora_encoder.media import MediaError
from sora_encoder.video_embedder import mean_vector
from tests.media_factory import make_video

# sora-t (4 frames of 32 px) keeps the model cheap; the pipeline is the same for every variant.
VARIANT = "sora-t"


def run_sora(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sora_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("embed")
    return {
        "long": make_video(d / "long.mp4", duration_s=9.0, source="testsrc2"),
        "short": make_video(d / "short.mp4", duration_s=1.5, source="mandelbrot"),
    }


def test_embed_json_gives_segments_covering_the_video(videos):
    res = run_sora(
        "embed", "--json", "--variant", VARIANT, str(videos["long"]), str(videos["short"])
    )
    assert res.returncode == 0, res.stderr
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["file"] for o in out] == [str(videos["long"]), str(videos["short"])]
    for o, duration in zip(out, (9.0, 1.5), strict=True):
        segs = o["segments"]
        assert len(segs) == math.ceil(duration / 4.0)
        assert segs[0]["start_s"] == 0.0
        assert segs[-1]["end_s"] == pytest.approx(duration, abs=0.05)
        for a, b in zip(segs, segs[1:], strict=False):
            assert a["end_s"] == pytest.approx(b["start_s"])  # contiguous windows
        xb = np.array([s["vector"] for s in segs], dtype=np.float32)
        assert xb.shape == (len(segs), o["dim"])
        np.testing.assert_allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-4)
        # The video vector is the normalised mean of its segment vectors.
        np.testing.assert_allclose(o["vector"], mean_vector(xb), atol=1e-5)
        assert o["model_version"].startswith(VARIANT + "-")
    # Different content, different vectors.
    assert not np.allclose(out[0]["vector"], out[1]["vector"], atol=1e-3)


def test_embed_is_reproducible_across_processes(videos):
    # Precision pinned: with "auto" a busy machine may calibrate differently in each process
    # (bf16 vs fp32 differ at the 1e-3 level), which is a property of auto, not of the model.
    for precision in ("fp32", "bf16"):
        args = ("embed", "--json", "--variant", VARIANT, "--precision", precision)
        a = run_sora(*args, str(videos["short"]))
        b = run_sora(*args, str(videos["short"]))
        assert a.returncode == b.returncode == 0, a.stderr + b.stderr
        va, vb = json.loads(a.stdout)["vector"], json.loads(b.stdout)["vector"]
        np.testing.assert_allclose(va, vb, atol=1e-5)


def test_embed_reports_bad_files_and_still_embeds_the_good_ones(videos, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    missing = tmp_path / "missing.mp4"
    res = run_sora(
        "embed", "--json", "--variant", VARIANT, str(junk), str(videos["short"]), str(missing)
    )
    assert res.returncode == 1
    assert len(res.stdout.splitlines()) == 1  # the good file
    assert json.loads(res.stdout)["file"] == str(videos["short"])
    assert f"{junk}:" in res.stderr and f"{missing}:" in res.stderr


def test_embed_human_output_lists_segment_times(videos):
    res = run_sora("embed", "--variant", VARIANT, str(videos["long"]))
    assert res.returncode == 0, res.stderr
    assert "3 segment(s)" in res.stdout
    assert "8.00-  9.00 s" in res.stdout


def test_embedder_matches_runtime_on_decoded_clips(videos):
    """The threaded decode/encode pipeline gives the same vectors as decode-then-encode."""
    from sora_encoder.media import decode_clips, plan_windows, probe

    runtime = EncoderRuntime.untrained(VARIANT, precision="fp32")
    emb = VideoEmbedder(runtime, batch_size=2).embed(videos["long"])
    info = probe(videos["long"])
    spec = runtime.input_spec
    clips = decode_clips(
        videos["long"],
        info,
        plan_windows(info.duration_s),
        frames_per_clip=spec.frames,
        size=spec.size,
    )
    xb = runtime.encode_clips(clips)
    np.testing.assert_allclose(np.stack([s.vector for s in emb.segments]), xb, atol=1e-5)


def test_embedder_raises_the_decoders_error_from_its_thread(tmp_path):
    truncated = tmp_path / "truncated.mp4"
    data = make_video(tmp_path / "full.mp4", duration_s=3.0).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    runtime = EncoderRuntime.untrained(VARIANT, precision="fp32")
    with pytest.raises(MediaError):
        VideoEmbedder(runtime).embed(truncated)


def test_embed_regions_embeds_the_picture_and_each_region_inside_the_borders(tmp_path):
    from sora_encoder.media.borders import QUERY_REGIONS

    framed = make_video(
        tmp_path / "framed.mp4", duration_s=3.0, source="testsrc2", size=(192, 144),
        vf="pad=iw*1.25:ih*1.25:iw*0.125:ih*0.125:color=0x3366aa",
    )  # fmt: skip
    runtime = EncoderRuntime.untrained(VARIANT, precision="fp32")
    embedder = VideoEmbedder(runtime, batch_size=2)
    whole, *regions = embedder.embed_regions(framed)
    assert len(regions) == len(QUERY_REGIONS)
    assert 0.1 <= whole.box.x <= 0.12 and 0.76 <= whole.box.w <= 0.8  # the frame is cut off
    assert np.allclose(whole.vector, embedder.embed(framed).vector, atol=1e-5)
    for region, sub in zip(regions, QUERY_REGIONS, strict=True):
        assert region.box == whole.box.inner(sub)  # inside the borders, not the frame
        assert len(region.segments) == len(whole.segments)
        assert not np.allclose(region.vector, whole.vector, atol=1e-3)
    only_regions = embedder.embed_regions(framed, whole=False)  # what "auto" adds later
    assert [r.box for r in only_regions] == [r.box for r in regions]
    assert np.allclose(only_regions[0].vector, regions[0].vector, atol=1e-5)
