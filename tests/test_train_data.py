"""Training data: file selection, the group split, and the decoded-window cache (decode once:
a second epoch, or a second run, spawns no ffmpeg)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from sora_encoder.files import find_videos
from sora_encoder.train.data import (
    ClipCache,
    DecodeSpec,
    WindowDataset,
    group_split,
    read_manifest,
    select_files,
)
from tests.media_factory import PopenSpy, make_video

SPEC = DecodeSpec(frames=8, size=40, span_s=4.0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("train-data")
    (d / "sub").mkdir()
    return [
        make_video(d / "a.mp4", duration_s=2.0, source="testsrc2", size=(96, 72)),
        make_video(d / "sub" / "b.mkv", duration_s=6.5, source="mandelbrot", size=(64, 64)),
    ]


def test_find_videos_recurses_by_suffix_and_accepts_files(videos, tmp_path):
    root = videos[0].parent
    (root / "notes.txt").write_text("not a video")
    assert find_videos([root]) == sorted(v.resolve() for v in videos)
    assert find_videos([videos[1], root]) == sorted(v.resolve() for v in videos)  # no dupes
    with pytest.raises(FileNotFoundError):
        find_videos([tmp_path / "missing"])


def test_group_split_is_deterministic_by_group_and_near_the_fraction():
    groups = [f"g{i}" for i in range(2000)]
    sides = [group_split(g, 0.2) for g in groups]
    assert sides == [group_split(g, 0.2) for g in groups]
    assert 0.17 < Counter(sides)["test"] / len(groups) < 0.23
    assert {group_split(g, 0.0) for g in groups} == {"train"}
    assert {group_split(g, 1.0) for g in groups} == {"test"}


def test_select_files_by_manifest_keeps_groups_on_one_side(tmp_path):
    rows = ["path,label,group,duration_s"]
    for i in range(60):
        rows.append(f"c/clip{i}.mp4,x,{i // 3},2.0")  # 20 groups of 3 clips
    manifest = tmp_path / "MANIFEST.csv"
    manifest.write_text("\n".join(rows) + "\n")
    train = select_files([], manifest=manifest, split="train")
    test = select_files([], manifest=manifest, split="test")
    assert set(train).isdisjoint(test) and len(train) + len(test) == 60
    assert train and test
    group = {r.path: r.group for r in read_manifest(manifest)}
    assert {group[p] for p in train}.isdisjoint({group[p] for p in test})
    assert all(p.is_absolute() and p.parent == tmp_path / "c" for p in train)
    assert select_files([], manifest=manifest, split="train", max_files=4) == train[:4]
    with pytest.raises(ValueError, match="manifest"):
        select_files([tmp_path], split="train")


def test_cache_decodes_once_then_serves_from_disk(videos, tmp_path, monkeypatch):
    spy = PopenSpy(monkeypatch)
    cache = ClipCache(tmp_path / "cache", SPEC)
    entries, failed = cache.load_many(videos)
    assert not failed and cache.decoded == 2 and spy.procs  # probe + decode ran ffmpeg
    assert [e.frames.shape for e in entries] == [(1, 8, 40, 40, 3), (2, 8, 40, 40, 3)]
    assert entries[1].windows == [(0.0, 4.0), (4.0, pytest.approx(6.5, abs=0.05))]
    assert entries[0].frames.std() > 5  # real pictures, not padding

    spy.procs.clear()
    again = ClipCache(tmp_path / "cache", SPEC)  # a new run over the same cache folder
    entries2, _ = again.load_many(videos)
    dataset = WindowDataset(entries2)
    for _epoch in range(2):
        for i in range(len(dataset)):
            dataset[i]
        dataset.batch(list(range(len(dataset))))
    assert spy.procs == [] and again.decoded == 0  # no ffmpeg at all: no probe, no decode
    assert isinstance(entries2[0].frames, np.memmap)
    np.testing.assert_array_equal(entries2[1].frames, entries[1].frames)


def test_cache_key_follows_content_and_decode_spec(videos, tmp_path):
    cache = ClipCache(tmp_path / "cache", SPEC)
    first = cache.load(videos[0])
    moved = shutil.copy(videos[0], tmp_path / "renamed.mp4")
    assert cache.load(moved).key == first.key and cache.decoded == 1  # same bytes: a hit
    other = ClipCache(tmp_path / "cache", DecodeSpec(frames=8, size=48, span_s=4.0))
    assert other.load(videos[0]).frames.shape == (1, 8, 48, 48, 3) and other.decoded == 1


def test_content_hash_is_remembered_until_the_file_changes(videos, tmp_path, monkeypatch):
    from sora_encoder.train import data

    calls = []
    real = data.file_sha256
    monkeypatch.setattr(data, "file_sha256", lambda p: calls.append(p) or real(p))
    video = Path(shutil.copy(videos[0], tmp_path / "v.mp4"))
    first = ClipCache(tmp_path / "cache", SPEC).content_hash(video)
    assert ClipCache(tmp_path / "cache", SPEC).content_hash(video) == first
    assert len(calls) == 1  # the second run read no bytes
    with video.open("ab") as f:
        f.write(b"\0")  # new size and mtime: hashed again
    assert ClipCache(tmp_path / "cache", SPEC).content_hash(video) != first
    assert len(calls) == 2


def test_unusable_files_are_reported_and_skipped(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    seen = []
    cache = ClipCache(tmp_path / "cache", SPEC)
    entries, failed = cache.load_many(
        [bad, videos[0]], on_file=lambda done, total, path, err: seen.append((done, err))
    )
    assert len(entries) == 1 and [p for p, _ in failed] == [str(bad)]
    assert [d for d, _ in seen] == [1, 2] and seen[0][1] is not None


def test_dataset_items_and_batches_agree(videos, tmp_path):
    entries, _ = ClipCache(tmp_path / "cache", SPEC).load_many(videos)
    dataset = WindowDataset(entries)
    assert len(dataset) == 3 and dataset.seconds() == pytest.approx(8.5, abs=0.1)
    batch = dataset.batch([2, 0])
    assert batch.dtype == torch.uint8 and batch.shape == (2, 8, 40, 40, 3)
    assert torch.equal(batch, torch.stack([dataset[2], dataset[0]]))
    assert dataset.fingerprint() == WindowDataset(entries).fingerprint()
    assert dataset.fingerprint() != WindowDataset(entries[:1]).fingerprint()


# -- the shipped recipes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[1] / "sora_encoder/train/recipes").glob("*.json"))
)
def test_every_shipped_recipe_is_a_valid_config(recipe):
    """make train-default runs these; a field renamed in TrainConfig must not break one."""
    from sora_encoder.train.config import read_recipe, resolve_config

    cfg = resolve_config({}, recipe=read_recipe(recipe))
    assert cfg.variant == "sora-s" and cfg.init_from is None  # stages pass --init-from
