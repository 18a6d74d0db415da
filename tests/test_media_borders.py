"""Border-aware decoding: letterbox, pillarbox and coloured frames are found and cut off,
identically at ingest and at query time, and a picture with flat areas is left alone."""

from __future__ import annotations

import numpy as np
import pytest

from sora_encoder.media import decode_clips, detect_content_box, plan_windows, probe
from sora_encoder.media.borders import FULL, ContentBox, content_box_of_frames
from tests.media_factory import make_video

# testsrc2 has detail over the whole frame; mandelbrot is a busy picture too.
SOURCE = "testsrc2"


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 220, size=(n, h, w)).astype(np.uint8)


# -- the pure detector ----------------------------------------------------------------------------
def test_black_bars_top_and_bottom_are_found():
    f = _frames(4, 100, 160)
    f[:, :20] = 0
    f[:, 80:] = 0
    box = content_box_of_frames(f)
    # 20 % bars each side, plus the 1 % margin inside each
    assert box.x == 0 and box.w == 1
    assert box.y == pytest.approx(0.21, abs=0.011)
    assert box.y + box.h == pytest.approx(0.79, abs=0.011)


def test_coloured_frame_on_every_side_is_found():
    f = _frames(3, 120, 160)
    f[:, :12], f[:, -12:], f[:, :, :16], f[:, :, -16:] = 90, 90, 90, 90
    box = content_box_of_frames(f)
    assert 0.1 <= box.x <= 0.12 and 0.1 <= box.y <= 0.12
    assert 0.76 <= box.w <= 0.8 and 0.76 <= box.h <= 0.8


def test_a_picture_without_borders_keeps_the_full_frame():
    assert content_box_of_frames(_frames(5, 90, 160)).is_full


def test_a_flat_area_where_an_object_begins_is_not_a_border():
    # A dark desk across the top 40 % with an object that starts in the middle third only:
    # flat lines, but no straight edge where the picture starts.
    f = np.full((4, 100, 150), 20, np.uint8)
    f[:, 40:, 50:100] = _frames(4, 60, 50, seed=1)
    f[:, 70:] = _frames(4, 30, 150, seed=2)
    assert content_box_of_frames(f).is_full


def test_black_frames_say_nothing_and_a_wholly_flat_video_keeps_the_full_frame():
    f = _frames(4, 100, 160)
    f[:, :20] = 0
    with_fades = np.concatenate([np.zeros((3, 100, 160), np.uint8), f])
    assert content_box_of_frames(with_fades) == content_box_of_frames(f)
    assert content_box_of_frames(np.zeros((3, 50, 50), np.uint8)).is_full


def test_a_box_that_would_keep_too_little_is_refused():
    f = np.zeros((3, 100, 100), np.uint8)
    f[:, 45:55, 45:55] = _frames(3, 10, 10)  # 1 % of the frame
    assert content_box_of_frames(f).is_full


def test_a_thin_stripe_inside_thick_borders_keeps_the_full_frame():
    # Borders and their margins leave nothing: "unsure", not a ValueError from ContentBox.
    f = np.zeros((3, 144, 256), np.uint8)
    f[:, 70:75] = _frames(3, 5, 256)
    assert content_box_of_frames(f).is_full


def test_box_text_round_trip_and_validation():
    box = ContentBox(0.1, 0.2, 0.8, 0.6)
    assert ContentBox.from_text(box.to_text()) == box
    with pytest.raises(ValueError):
        ContentBox(0.5, 0, 0.6, 1)
    with pytest.raises(ValueError):
        ContentBox.from_text("1,2,3")


# -- on real files, through ffmpeg ----------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("borders")
    plain = make_video(d / "plain.mp4", duration_s=3, size=(192, 144), source=SOURCE)
    letterbox = make_video(
        d / "letterbox.mp4", duration_s=3, size=(192, 144), source=SOURCE,
        vf="pad=iw:ih*1.5:0:ih*0.25:color=black",
    )  # fmt: skip
    framed = make_video(
        d / "framed.mp4", duration_s=3, size=(192, 144), source=SOURCE,
        vf="pad=iw*1.25:ih*1.25:iw*0.125:ih*0.125:color=0x3366aa",
    )  # fmt: skip
    return {"plain": plain, "letterbox": letterbox, "framed": framed}


def _clips(path, box):
    info = probe(path)
    return decode_clips(path, info, plan_windows(info.duration_s, 4.0), size=64, box=box)


def test_detect_on_files_finds_the_padding(videos):
    assert detect_content_box(videos["plain"], probe(videos["plain"])).is_full
    lb = detect_content_box(videos["letterbox"], probe(videos["letterbox"]))
    assert lb.x == 0 and lb.w == 1
    assert 0.16 <= lb.y <= 0.19 and 0.62 <= lb.h <= 0.67  # true: y 1/6, h 2/3
    fr = detect_content_box(videos["framed"], probe(videos["framed"]))
    assert 0.1 <= fr.x <= 0.12 and 0.76 <= fr.w <= 0.8  # true: x 0.1, w 0.8


def test_cutting_the_borders_gives_back_the_original_picture(videos):
    original = _clips(videos["plain"], FULL).astype(np.float32)
    for name in ("letterbox", "framed"):
        info = probe(videos[name])
        box = detect_content_box(videos[name], info)
        cut = _clips(videos[name], box).astype(np.float32)
        kept = _clips(videos[name], FULL).astype(np.float32)
        # the margin cuts ~1 % more than the original shows: close, not identical
        assert np.abs(cut - original).mean() < 0.5 * np.abs(kept - original).mean(), name
        assert np.abs(cut - original).mean() < 20, name
