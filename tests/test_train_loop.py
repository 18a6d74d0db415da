"""The training loop on a tiny generated set (sora-t, a few steps): finite loss, a loadable
checkpoint, resume identical to an uninterrupted run, and `sora train encoder` end to end."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from sora_cli.main import main as sora
from sora_encoder.checkpoint import load_checkpoint
from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config
from sora_encoder.train import (
    ClipCache,
    TrainConfig,
    WindowDataset,
    decode_spec,
    read_log,
    train_encoder,
)
from sora_encoder.train.loop import STATE_NAME, _init_weights, lr_factor, param_groups
from tests.media_factory import make_video

# 4 windows of sora-t (4 frames of 32 px), batches of 2: 2 steps an epoch, 4 in all.
CFG = TrainConfig(variant="sora-t", epochs=2, batch_size=2, log_every=1, checkpoint_every=3)


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("train-videos")
    for name, source in [("a", "testsrc2"), ("b", "mandelbrot"), ("c", "smptebars"), ("d", "life")]:
        make_video(d / f"{name}.mp4", duration_s=2.0, source=source, size=(80, 60))
    return d


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train-cache")


@pytest.fixture(scope="module")
def dataset(video_dir, cache_dir) -> WindowDataset:
    entries, failed = ClipCache(cache_dir, decode_spec(CFG)).load_many(
        sorted(video_dir.glob("*.mp4"))
    )
    assert not failed
    return WindowDataset(entries)


@pytest.fixture(scope="module")
def full_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    seen = []
    result = train_encoder(dataset, CFG, out, device="cpu", progress=seen.append)
    return out, result, seen


def test_a_run_writes_a_loadable_checkpoint_and_a_finite_loss_curve(full_run):
    out, result, seen = full_run
    assert result.finished and result.step == result.total_steps == 4
    model, config, version = load_checkpoint(out)
    assert version == result.version and config.name == "sora-t"
    assert config.init_seed == CFG.seed
    untrained = create_model(config).state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in model.state_dict().items())
    log = read_log(out)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    # NT-Xent is >= 0; on 2-clip batches it can reach 0 in float32 once the pairs separate.
    assert all(math.isfinite(r["loss"]) and r["loss"] >= 0 for r in log)
    assert [p.step for p in seen] == [1, 2, 3, 4] and "loss" in seen[-1].line()
    assert json.loads((out / "train_config.json").read_text())["variant"] == "sora-t"
    assert (out / STATE_NAME).is_file()
    with torch.no_grad():  # the trained model still gives unit vectors
        vec = model.encode_video(torch.randn(2, 4, 3, 32, 32))
    torch.testing.assert_close(vec.norm(dim=1), torch.ones(2))


def test_resume_continues_exactly_like_an_uninterrupted_run(full_run, dataset, tmp_path):
    out_full, full, _ = full_run
    first = train_encoder(dataset, CFG, tmp_path, device="cpu", max_steps=2)
    assert not first.finished and first.step == 2
    assert torch.load(tmp_path / STATE_NAME, weights_only=True)["step"] == 2
    second = train_encoder(dataset, CFG, tmp_path, device="cpu", resume=True)
    assert second.finished and second.step == 4
    assert second.version == full.version  # bit-identical weights and config
    assert [r["loss"] for r in read_log(tmp_path)] == [r["loss"] for r in read_log(out_full)]
    a, b = (torch.load(d / STATE_NAME, weights_only=True) for d in (tmp_path, out_full))
    for key in ("exp_avg", "exp_avg_sq"):
        for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                          strict=True):  # fmt: skip
            assert torch.equal(pa[key], pb[key])


def test_resume_refuses_a_changed_config_or_dataset(full_run, dataset):
    out, _, _ = full_run
    with pytest.raises(ValueError, match="lr"):
        train_encoder(dataset, dataclasses.replace(CFG, lr=1e-3), out, device="cpu", resume=True)
    fewer = WindowDataset(dataset.videos[:3])
    with pytest.raises(ValueError, match="training files"):
        train_encoder(fewer, CFG, out, device="cpu", resume=True)


def test_schedule_warms_up_then_decays_and_norms_are_not_decayed():
    f = [lr_factor(s, warmup=10, total=100, min_frac=0.01) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] == pytest.approx(0.01, abs=0.002)
    model = create_model("sora-t")
    decay, no_decay = param_groups(model, 0.05)
    named = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    names = {named[id(p)] for p in no_decay["params"]}
    assert "fusion.embed.time_embed" in names and "fusion.embed.cls" in names
    assert any(n.endswith("norm.weight") for n in names)


def test_cli_trains_on_a_manifest_split_and_embed_accepts_the_checkpoint(
    video_dir, cache_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("SORA_CACHE_DIR", str(tmp_path / "sora-cache"))  # precision calibration
    rows = ["path,label,group,duration_s"] + [
        f"{p.name},x,{i},2.0" for i, p in enumerate(sorted(video_dir.glob("*.mp4")))
    ]
    (video_dir / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    args = ["train", "encoder", "--manifest", str(video_dir / "MANIFEST.csv"),
            "--split", "all", "--variant", "sora-t", "--out", str(out), "--cache",
            str(cache_dir), "--epochs", "1", "--batch-size", "2", "--log-every", "1"]  # fmt: skip
    assert sora(args) == 0
    err = capsys.readouterr().err
    assert "4 windows from 4 videos" in err and "step 2/2" in err and "clips/s" in err
    model, config, version = load_checkpoint(out)
    assert sora(["embed", "--json", "--checkpoint", str(out), str(video_dir / "a.mp4")]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == version
    # A resume of a finished run does nothing more and keeps the checkpoint; a resume with
    # other settings is refused with a message.
    assert sora([*args, "--resume"]) == 0
    assert load_checkpoint(out)[2] == version
    capsys.readouterr()
    assert sora([*args, "--resume", "--lr", "0.1"]) == 2
    assert "config differs in ['lr']" in capsys.readouterr().err
    # Nothing to train on: a clear refusal, not a traceback.
    assert sora(["train", "encoder", str(tmp_path / "run"), "--out", str(tmp_path / "x")]) == 2
    assert "no video files" in capsys.readouterr().err


def test_init_from_starts_at_a_checkpoint_and_refuses_another_architecture(
    full_run, dataset, tmp_path
):
    out, _, _ = full_run
    cfg = dataclasses.replace(CFG, init_from=str(out), epochs=1, koleo_weight=1.0)
    # max_steps=0 saves the starting weights: they are the checkpoint's, not the seed's
    start = train_encoder(dataset, cfg, tmp_path / "warm", device="cpu", max_steps=0)
    a, _, _ = load_checkpoint(out)
    b, _, _ = load_checkpoint(start.out_dir)
    for k, v in a.state_dict().items():
        if "running_" not in k and "num_batches" not in k:  # BatchNorm is re-estimated
            assert torch.equal(v, b.state_dict()[k]), k
    ran = train_encoder(dataset, cfg, tmp_path / "ran", device="cpu")
    assert ran.finished and math.isfinite(ran.final_loss)
    with pytest.raises(ValueError, match="architecture"):
        _init_weights(create_model("sora-s"), get_model_config("sora-s"), str(out))
