"""The review tools on real small videos: stills at exact times, contact sheets whose cells
show the frames at the aligned times, OTIO and EDL read back with the library to the frame,
and the HTML report opened in a real headless Chromium (no console errors, every image
loaded, a screenshot)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from PIL import Image

from sora_encoder.media import probe
from sora_encoder.media.stills import grab_stills
from sora_encoder.review import Match, Side
from sora_encoder.review.contact_sheet import HEADER, LABEL, PAD, contact_sheet, match_strip
from sora_encoder.review.html_report import ReportGroup, write_report
from sora_encoder.review.timeline import edl_available, timeline_of, write_edl, write_otio
from tests.media_factory import make_counter_video, make_video, read_counter

FPS = 12


@pytest.fixture(scope="module")
def counter(tmp_path_factory) -> Path:
    """8 s at 12 fps; frame n shows n (read_counter)."""
    return make_counter_video(tmp_path_factory.mktemp("review") / "counter.mp4",
                              duration_s=8.0, fps=FPS)  # fmt: skip


def test_stills_are_the_frames_at_the_times_asked(counter: Path):
    info = probe(counter)
    stills = grab_stills(counter, info, [0.0, 1.0, 2.5, 7.99, 30.0], height=64)
    assert all(s is not None and s.shape == (64, 64, 3) for s in stills)
    # at or after each time; past the end: the last frame (95)
    assert [int(read_counter(s)) for s in stills] == [0, 12, 30, 95, 95]


def test_aligned_times_map_the_query_range_onto_the_target_range():
    m = Match(Side("q", 2.0, 6.0), Side("t", 10.0, 18.0), 0.9)  # the target at half speed
    assert m.aligned_times(4) == [(2.5, 11.0), (3.5, 13.0), (4.5, 15.0), (5.5, 17.0)]
    with pytest.raises(ValueError):
        Side("bad", 3.0, 2.0)


def _cell_frame(strip: Image.Image, row: int, i: int, height: int) -> int:
    """The counter frame shown in cell i of row (0 query, 1 target) of a strip."""
    cell_w = int(round(height * 16 / 9))
    x = PAD + i * (cell_w + PAD) + (cell_w - height) // 2  # the square still, centred
    y = HEADER + row * (height + LABEL + PAD)
    crop = np.asarray(strip.crop((x, y, x + height, y + height)))
    return int(read_counter(crop))


def test_a_strip_shows_the_query_beside_the_target_at_the_aligned_times(counter: Path):
    # query 1-3 s matches target 4-6 s: cells at query 1.25, 1.75, ... -> target 4.25, ...
    m = Match(Side("q", 1.0, 3.0, path=counter), Side("t", 4.0, 6.0, path=counter), 0.95,
              copy_score=0.3, is_copy=True)  # fmt: skip
    strip = match_strip(m, frames=4, height=72)
    for i, (tq, tt) in enumerate(m.aligned_times(4)):
        assert _cell_frame(strip, 0, i, 72) == int(np.ceil(tq * FPS - 1e-6))
        assert _cell_frame(strip, 1, i, 72) == int(np.ceil(tt * FPS - 1e-6))
    # a side whose file is not here: a sheet all the same, that cell empty (flat grey)
    gone = Match(Side("q", 1.0, 3.0, path=counter), Side("gone", 4.0, 6.0), 0.5)
    sheet = contact_sheet([m, gone], title="two matches", height=72)
    assert sheet.width == strip.width and sheet.height == 24 + 2 * strip.height
    cell_w = int(round(72 * 16 / 9))
    y = 24 + strip.height + HEADER + 72 + LABEL + PAD  # second strip, target row
    empty = np.asarray(sheet.crop((PAD, y + 2, PAD + cell_w, y + 20)))
    assert empty.std() < 1.0  # no frame drawn, only the flat cell (its text is lower)


def _side(path: Path | None, start: float, end: float, fps: float, vid: int) -> Side:
    return Side(f"video {vid}", start, end, path=path, fps=fps, duration_s=20.0, video_id=vid,
                uri=str(path) if path else f"/elsewhere/{vid}.mp4")  # fmt: skip


def test_otio_timeline_reads_back_with_ranges_to_the_frame(tmp_path: Path, counter: Path):
    ntsc = 30000 / 1001
    matches = [
        Match(_side(counter, 1.0, 3.0, 12.0, 1), _side(counter, 4.0, 6.5, 12.0, 2), 0.97,
              copy_score=0.31, is_copy=True),
        Match(_side(None, 0.0, 4.0, 25.0, 1), _side(None, 7.3, 11.3, ntsc, 3), 0.71,
              copy_score=0.02, is_copy=False),
    ]  # fmt: skip
    path = write_otio(timeline_of(matches, name="t"), tmp_path / "m.otio")
    back = otio.adapters.read_from_file(str(path))
    targets, queries = back.tracks
    assert (targets.name, queries.name) == ("targets", "queries")
    clips = list(targets.find_clips())
    assert len(clips) == 2 and len(list(queries.find_clips())) == 2
    first, second = clips
    assert first.source_range == otio.opentime.TimeRange(
        otio.opentime.RationalTime(48, 12), otio.opentime.RationalTime(30, 12)
    )
    assert first.media_reference.target_url == counter.resolve().as_uri()
    # 7.3 s at 29.97: frame round(218.78) = 219, to frame round(338.66) = 339
    assert second.source_range.start_time.rate == pytest.approx(ntsc)
    assert (second.source_range.start_time.value, second.source_range.duration.value) == (219, 120)
    assert second.media_reference.target_url == "/elsewhere/3.mp4"
    [marker] = first.markers
    assert "COPY" in marker.name and marker.color == otio.schema.MarkerColor.RED
    assert marker.metadata["sora"]["score"] == pytest.approx(0.97)
    assert marker.metadata["sora"]["is_copy"] is True
    assert second.markers[0].metadata["sora"]["is_copy"] is False
    q = list(queries.find_clips())
    assert q[0].source_range.start_time.value == 12 and q[0].source_range.duration.value == 24
    # side by side: the second pair starts at the same time on both tracks (a gap pads the
    # shorter query)
    assert second.range_in_parent().start_time.to_seconds() == pytest.approx(
        q[1].range_in_parent().start_time.to_seconds(), abs=1 / 12
    )


@pytest.mark.skipif(not edl_available(), reason="otio-cmx3600-adapter not installed")
def test_edl_reads_back_with_the_same_frames(tmp_path: Path):
    matches = [
        Match(_side(None, 0.0, 2.0, 25.0, 1), _side(None, 4.0, 6.0, 25.0, 2), 0.9),
        Match(_side(None, 1.0, 5.0, 25.0, 1), _side(None, 10.48, 14.48, 25.0, 3), 0.8),
    ]  # fmt: skip
    rate = write_edl(timeline_of(matches), tmp_path / "m.edl")
    assert rate == 25.0
    back = otio.adapters.read_from_file(str(tmp_path / "m.edl"), rate=rate)
    ranges = [(c.source_range.start_time.value, c.source_range.duration.value)
              for c in back.tracks[0].find_clips()]  # fmt: skip
    assert ranges == [(100, 50), (262, 100)]


# ---- the HTML report in a real browser -----------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser():
    if not (CHROMIUM and CHROMEDRIVER):
        reason = ("Debian's chromium and chromium-driver are not installed "
                  "(apt-get install chromium chromium-driver)")  # fmt: skip
        if os.environ.get("SORA_REQUIRE_SERVERS"):  # CI installs them: missing is a failure
            pytest.fail(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900",
                "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the system's chromedriver, named: selenium then fetches nothing
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def test_the_report_opens_in_chromium_with_every_strip_loaded(tmp_path: Path, counter: Path):
    other = make_video(tmp_path / "bars.mp4", duration_s=6.0, size=(320, 180))
    group = ReportGroup(
        videos=[(1, "counter"), (2, "bars <copy> & co")],
        matches=[
            Match(_side(counter, 1.0, 3.0, 12.0, 1), Side("bars <copy> & co", 2.0, 4.0,
                  path=other, video_id=2), 0.96, copy_score=0.3, is_copy=True),
            Match(_side(counter, 0.0, 2.0, 12.0, 1), _side(None, 0.0, 2.0, 25.0, 9), 0.81),
        ],
    )  # fmt: skip
    page = write_report([group], tmp_path / "report", title="Duplicates <test>")
    text = page.read_text()
    assert "<copy>" not in text and "bars &lt;copy&gt; &amp; co" in text
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert sorted(p.name for p in (tmp_path / "report" / "images").iterdir()) == [
        "g1-p1.jpg", "g1-p2.jpg"]  # fmt: skip
    driver = _browser()
    try:
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,"
            " i.naturalWidth]);"
        )
        assert [(src, done, w > 0) for src, done, w in images] == [
            ("images/g1-p1.jpg", True, True), ("images/g1-p2.jpg", True, True)]  # fmt: skip
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert errors == []
        assert driver.title == "Duplicates <test>"
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("SORA_REVIEW_SCREENSHOT"):  # to look at it: a path to copy it to
            shutil.copy(shot, os.environ["SORA_REVIEW_SCREENSHOT"])
    finally:
        driver.quit()


def test_an_uploaded_video_is_referenced_by_the_file_it_came_from(tmp_path: Path):
    from services.api.gen.sora.v1 import sora_pb2 as pb
    from sora_cli.review_output import side_of

    server_copy, original = tmp_path / "uploads" / "abc.mp4", tmp_path / "mine" / "day1.mp4"
    for f in (server_copy, original):
        f.parent.mkdir()
        f.write_bytes(b"x")
    video = pb.Video(id=3, uri=str(server_copy), original_path=str(original), fps=25)
    side = side_of(video, 1.0, 5.0)
    assert side.path == original and side.uri == str(original)
    original.unlink()  # uploaded from another machine: the server's copy, shown by its origin
    side = side_of(video, 1.0, 5.0)
    assert side.path == server_copy and side.uri == str(original)
    assert side_of(pb.Video(id=4, uri=str(server_copy)), 0, 1).path == server_copy
