"""Training videos from still photos (sora_encoder/train/stills.py): one video per image,
the right length and size, a camera that moves, reproducible, and nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest

from sora_encoder.media import probe
from sora_encoder.media.thumbnails import decode_thumbnails
from sora_encoder.train.stills import find_images, main, make_still_videos
from tests.media_factory import ffmpeg_run


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "walls" / "nested"
    folder.mkdir(parents=True)
    for name, src in (("a.png", "testsrc2"), ("b.JPG", "mandelbrot")):
        ffmpeg_run(["-f", "lavfi", "-i", f"{src}=size=320x240", "-frames:v", "1",
                    str(folder / name)])  # fmt: skip
    (folder / "notes.txt").write_text("not an image")
    return tmp_path / "walls"


def test_one_moving_video_per_image(photos, tmp_path):
    images = find_images([photos])
    assert [p.name for p in images] == ["a.png", "b.JPG"]
    paths = make_still_videos(images, tmp_path / "out", duration_s=4.0, fps=10)
    assert [p.name for p in paths] == ["still-000.mp4", "still-001.mp4"]
    for path in paths:
        info = probe(path)
        assert (info.width, info.height) == (192, 128)
        assert info.duration_s == pytest.approx(4.0, abs=0.15)
        thumbs = decode_thumbnails(path, info, fps=2).frames.astype(np.float32)
        # the camera moves: the last frame is not the first
        assert np.abs(thumbs[-1] - thumbs[0]).mean() > 2.0
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_same_seed_same_moves_and_existing_files_kept(photos, tmp_path):
    images = find_images([photos])
    first = make_still_videos(images, tmp_path / "one", duration_s=2.0, seed=3)
    again = make_still_videos(images, tmp_path / "two", duration_s=2.0, seed=3)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    stamp = first[0].stat().st_mtime_ns
    make_still_videos(images, tmp_path / "one", duration_s=2.0, seed=3)
    assert first[0].stat().st_mtime_ns == stamp


def test_cli_refuses_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "out"), str(tmp_path / "empty")])
    assert exc.value.code == 2
    assert "no .jpg/.jpeg/.png images" in capsys.readouterr().err
