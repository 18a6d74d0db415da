"""Near-duplicate transformation families: each writes a decodable video of the planned
size and duration (the numbers are computed in Python, then checked on the written file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sora_encoder.eval import transforms
from sora_encoder.eval.data import decode_file
from sora_encoder.eval.transforms import FAMILIES, apply_family, get_family, plan
from sora_encoder.media import probe
from sora_encoder.runtime import InputSpec
from tests.media_factory import make_video

SRC_W, SRC_H, SRC_S, SRC_FPS = 160, 120, 2.0, 25


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("transforms")
    return make_video(folder / "src.mp4", duration_s=SRC_S, fps=SRC_FPS, size=(SRC_W, SRC_H))


@pytest.fixture(scope="module")
def outputs(source: Path) -> dict[str, tuple[transforms.Plan, Path]]:
    out = {}
    for name in FAMILIES:
        dst = source.with_name(f"{name.replace('+', '_')}.mp4")
        out[name] = (apply_family(name, source, dst), dst)
    return out


def test_there_are_single_and_combined_families() -> None:
    singles = {f.name for f in FAMILIES.values() if len(f.steps) == 1}
    assert {"reencode", "scale", "crop", "brightness", "flip", "trim", "speed", "fps", "grey",
            "text", "border", "letterbox", "pip"} <= singles  # fmt: skip
    assert sum(len(f.steps) > 1 for f in FAMILIES.values()) >= 3


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_writes_the_planned_video(name: str, outputs) -> None:
    p, dst = outputs[name]
    info = probe(dst)
    assert (info.width, info.height) == (p.width, p.height)
    assert p.width % 2 == 0 and p.height % 2 == 0
    assert info.duration_s == pytest.approx(p.duration_s, abs=max(0.1, 1.5 / p.fps))
    assert info.fps == pytest.approx(p.fps, abs=0.5)
    clips = decode_file(dst, InputSpec(frames=4, size=32))
    assert clips.shape == (1, 4, 32, 32, 3) and clips.dtype == np.uint8
    assert clips.std() > 5  # a picture, not a blank


def test_expected_geometry_of_some_families(outputs) -> None:
    want = {
        "scale": (80, 60, SRC_S),
        "crop": (120, 90, SRC_S),
        "trim": (SRC_W, SRC_H, 0.6 * SRC_S),
        "speed": (SRC_W, SRC_H, SRC_S / 1.25),
        "border": (192, 144, SRC_S),
        "letterbox": (SRC_W, 168, SRC_S),
        "trim+speed+letterbox": (SRC_W, 168, 0.6 * SRC_S / 1.25),
    }
    for name, (w, h, d) in want.items():
        p = outputs[name][0]
        assert (p.width, p.height) == (w, h) and p.duration_s == pytest.approx(d), name
    assert outputs["fps"][0].fps == 10


def test_transformed_copies_differ_from_the_source(source: Path, outputs) -> None:
    spec = InputSpec(frames=4, size=32)
    ref = decode_file(source, spec).astype(np.int16)
    for name in ("flip", "brightness", "grey", "pip", "text"):
        got = decode_file(outputs[name][1], spec).astype(np.int16)
        assert np.abs(got - ref).mean() > 2, name
    flipped = decode_file(outputs["flip"][1], spec).astype(np.float64)
    # mirrored back, it is the same picture (compared on 8x8 blocks: the centre crop may
    # sit one pixel off after the flip)
    blocks = lambda x: x.reshape(1, 4, 4, 8, 4, 8, 3).mean(axis=(3, 5))  # noqa: E731
    back = np.abs(blocks(flipped[..., ::-1, :]) - blocks(ref)).mean()
    assert back < 0.5 * np.abs(blocks(flipped) - blocks(ref)).mean()


def test_low_bitrate_family_asks_for_the_low_bitrate(source: Path) -> None:
    p = plan(get_family("reencode"), probe(source))
    assert "-b:v" in p.encoder and "-crf" not in p.encoder
    assert "-crf" in plan(get_family("flip"), probe(source)).encoder


def test_text_without_a_font_falls_back_to_blocks(source, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(transforms, "find_font", lambda: None)
    p = apply_family("text", source, tmp_path / "t.mp4")
    assert "drawbox" in p.filter_complex and "drawtext" not in p.filter_complex
    assert "drawbox" in p.note
    assert probe(tmp_path / "t.mp4").width == SRC_W


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown transformation family"):
        get_family("sepia")
