"""The training features of the sora-s default recipe: picture in picture, views at a smaller
side (view_size), the arrow-of-time head, BatchNorm re-estimated on clean windows for saved
checkpoints, synthetic lavfi videos, `select_files(extra=)`, and `sora train encoder
--also/--config`. Loop runs are sora-t on 4 tiny windows written straight into .npy files
(no decoding), 2-4 steps each."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sora_cli.main import main as sora
from sora_encoder.checkpoint import load_checkpoint
from sora_encoder.factory import create_model
from sora_encoder.media import decode_clips, lavfi, plan_windows, probe
from sora_encoder.registry import get_model_config
from sora_encoder.train import (
    CachedVideo,
    TrainConfig,
    WindowDataset,
    decode_spec,
    loop,
    read_log,
    select_files,
    synthetic,
    train_encoder,
)
from sora_encoder.train import augment as A
from sora_encoder.train.batchnorm import clean_view, reestimate_batchnorm
from sora_encoder.train.config import AugmentConfig
from sora_encoder.train.loop import STATE_NAME
from sora_encoder.train.synthetic import make_synthetic_videos
from tests.media_factory import PopenSpy, make_video

B, T, H = 8, 2, 32
INP = get_model_config("sora-t").input  # 4 frames of 32 px
# 4 windows, batches of 2: 2 steps an epoch; no augmentation off, as in real runs.
CFG = TrainConfig(variant="sora-t", epochs=1, batch_size=2, log_every=1, checkpoint_every=9)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _smooth(n: int, seed: int) -> torch.Tensor:
    """(n, T, 3, H, H) smooth random clips in [0, 1]."""
    g = gen(seed)
    coarse = torch.rand(n * T, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(H, H), mode="bilinear")
    return x.clamp(0, 1).view(n, T, 3, H, H)


def _probe() -> torch.Tensor:
    """Clip b is the constant 2 + b: outside [0, 1], so never a background colour, and any
    blend of the picture with something else shows as a value that is neither."""
    return (2.0 + torch.arange(B, dtype=torch.float32)).view(B, 1, 1, 1, 1).expand(B, T, 3, H, H)


def _pip(x: torch.Tensor, seed: int, **kw) -> torch.Tensor:
    return A.picture_in_picture(x.clone(), generator=gen(seed), **{"p": 1.0, **kw})


def _inside(out: torch.Tensor, b: int) -> torch.Tensor:
    """(H, W) bool: where clip b of a `_probe()` result shows its own picture."""
    return ((out[b] - (2.0 + b)).abs() < 1e-4).flatten(0, 1).all(0)  # bilinear: ulp errors


# -- picture in picture ---------------------------------------------------------------------------
def test_pip_with_p_zero_leaves_clips_and_the_generator_alone():
    clips = _smooth(B, 1)
    g = gen(5)
    assert torch.equal(A.picture_in_picture(clips, generator=g, p=0.0), clips)
    assert torch.equal(g.get_state(), gen(5).get_state())  # nothing drawn


def test_make_view_with_pip_off_is_the_view_of_a_pipeline_without_it(monkeypatch):
    window = torch.randint(0, 256, (4, 8, 40, 40, 3), dtype=torch.uint8, generator=gen())
    off = AugmentConfig(pip_p=0.0)
    view = A.make_view(window, num_frames=4, size=32, aug=off, generator=gen(3))
    monkeypatch.setattr(A, "picture_in_picture", lambda x, **kw: x)
    assert torch.equal(view, A.make_view(window, num_frames=4, size=32, aug=off, generator=gen(3)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pip_pastes_the_whole_picture_over_one_colour_or_the_previous_clip(seed):
    probe_out = _pip(_probe(), seed)  # default scale (0.4, 0.9)
    content = _smooth(B, 7)
    out = _pip(content, seed)  # the same draws: the same boxes and backgrounds
    kinds = set()
    for b in range(B):
        inside = _inside(probe_out, b)
        rows, cols = inside.any(1), inside.any(0)
        assert torch.equal(inside, rows[:, None] & cols[None, :]), "not one filled box"
        assert (rows.nonzero().diff(dim=0) == 1).all() and (cols.nonzero().diff(dim=0) == 1).all()
        h, w = int(rows.sum()), int(cols.sum())
        assert abs(h - w) <= 1, f"clip {b}: box {h}x{w}, not one factor for both sides"
        assert 0.4 * H - 1 <= h <= 0.9 * H + 1
        back = probe_out[b][..., ~inside]  # (T, 3, n) outside the box
        if torch.all(back == 2.0 + (b - 1) % B):  # the previous clip of the batch, as it was
            kinds.add("clip")
            torch.testing.assert_close(
                out[b][..., ~inside], content.roll(1, 0)[b][..., ~inside], atol=0, rtol=0
            )
        else:  # one colour in [0, 1], the same everywhere and on every frame
            kinds.add("solid")
            assert back.min() >= 0 and back.max() <= 1, f"clip {b}: background {back.unique()}"
            assert torch.equal(back, back[:1, :, :1].expand_as(back))
            assert torch.equal(out[b][..., ~inside], back)
    assert kinds == {"clip", "solid"}


def test_pip_copy_is_the_clip_shrunk_by_the_same_factor_both_ways():
    ramp = torch.linspace(0.1, 0.9, H)  # pixel j holds 0.1 + 0.8 j / (H - 1)
    x = torch.empty(B, T, 3, H, H)
    x[:, :, 0], x[:, :, 1], x[:, :, 2] = ramp.view(1, H), ramp.view(H, 1), 0.5
    probe_out = _pip(_probe(), 4, scale=(0.5, 0.5))
    out = _pip(x, 4, scale=(0.5, 0.5))
    step = 0.8 / (H - 1)  # the ramp's step per source pixel
    for b in range(B):
        inside = _inside(probe_out, b)
        r = inside.any(1).nonzero().squeeze(1)
        c = inside.any(0).nonzero().squeeze(1)
        box = out[b][:, :, r[0] : r[-1] + 1, c[0] : c[-1] + 1]  # (T, 3, h, w)
        # The whole picture, bilinear in its own range: no black edge, no crop.
        assert box[:, :2].min() >= 0.1 - 1e-6 and box[:, :2].max() <= 0.9 + 1e-6
        assert box[:, :2].amin((2, 3)).max() <= 0.1 + 2.5 * step
        assert box[:, :2].amax((2, 3)).min() >= 0.9 - 2.5 * step
        # Half the size: one output pixel spans two source pixels, across and down.
        inner = box[:, :, 1:-1, 1:-1]
        dx, dy = inner[:, 0].diff(dim=-1), inner[:, 1].diff(dim=-2)
        torch.testing.assert_close(dx, torch.full_like(dx, 2 * step), atol=1e-5, rtol=0)
        torch.testing.assert_close(dy, torch.full_like(dy, 2 * step), atol=1e-5, rtol=0)
        torch.testing.assert_close(box[:, 2], torch.full_like(box[:, 2], 0.5))
    # Scale 1: the picture fills the frame, a copy of the clip.
    torch.testing.assert_close(_pip(x, 4, scale=(1.0, 1.0)), x, atol=1e-5, rtol=0)


def test_pip_is_deterministic_under_a_seeded_generator():
    clips = _smooth(B, 2)
    assert torch.equal(_pip(clips, 9), _pip(clips, 9))
    assert not torch.equal(_pip(clips, 9), _pip(clips, 10))


def test_make_views_at_a_given_side():
    window = torch.randint(0, 256, (3, 8, 40, 40, 3), dtype=torch.uint8, generator=gen())
    aug = AugmentConfig()
    small = A.make_views(window, inp=INP, aug=aug, generator=gen(1), size=16)
    assert small.shape == (6, INP.num_frames, 3, 16, 16)
    assert A.make_views(window, inp=INP, aug=aug, generator=gen(1)).shape[-1] == INP.image_size
    assert torch.equal(small, A.make_views(window, inp=INP, aug=aug, generator=gen(1), size=16))


# -- clean views and BatchNorm re-estimation ----------------------------------------------------
def test_clean_view_takes_every_stride_th_frame_from_the_first_at_the_model_size():
    n_frames = 2 * INP.num_frames + 1  # 9 cached frames, 4 wanted: stride 2
    level = torch.arange(n_frames).view(1, -1) * 20 + torch.arange(3).view(-1, 1) * 5  # (3, F)
    windows = level.view(3, n_frames, 1, 1, 1).expand(3, n_frames, 40, 40, 3).to(torch.uint8)
    x = clean_view(windows, INP)
    assert x.shape == (3, INP.num_frames, 3, INP.image_size, INP.image_size)
    mean, std = torch.tensor(INP.mean).view(3, 1, 1), torch.tensor(INP.std).view(3, 1, 1)
    pixels = (x * std + mean) * 255  # back to 0-255: constant frames stay constant
    want = level[:, 0:8:2].view(3, INP.num_frames, 1, 1, 1).float().expand_as(pixels)
    torch.testing.assert_close(pixels, want, atol=1e-3, rtol=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> WindowDataset:
    """4 one-window "videos" of the sora-t cache shape (8 frames of 40 px), every frame its
    own smooth random picture (so a clip played backwards differs)."""
    d = tmp_path_factory.mktemp("windows")
    spec = decode_spec(CFG)
    rng = np.random.default_rng(0)
    videos = []
    for i in range(4):
        coarse = rng.integers(0, 256, (1, spec.frames, 5, 5, 3))
        frames = np.kron(coarse, np.ones((1, 1, 8, 8, 1))).astype(np.uint8)  # (1, F, 40, 40, 3)
        assert frames.shape[2] == spec.size
        np.save(d / f"v{i}.npy", frames)
        videos.append(CachedVideo(f"v{i}.mp4", f"key{i}", [(0.0, 8.0)], d / f"v{i}.npy",
                                  frames.shape))  # fmt: skip
    return WindowDataset(videos)


def _norms(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))
    }


def test_reestimate_batchnorm_measures_clean_windows_and_touches_nothing_else(dataset):
    model = create_model("sora-t").train()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    out = reestimate_batchnorm(model, dataset, INP, n_windows=len(dataset), batch_size=2)
    assert torch.equal(torch.get_rng_state(), rng)  # no draw from the global RNG
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not out.training
    after = out.state_dict()
    for k, v in before.items():  # weights as they were, statistics new
        if k.endswith(("running_mean", "running_var")):
            assert not torch.equal(after[k], v), k
        elif not k.endswith("num_batches_tracked"):
            assert torch.equal(after[k], v), k
    # The first BatchNorm sees the stem's output, which its statistics do not change: its
    # running mean is that output's mean over all windows (two equal batches, averaged).
    norm_name, norm = next((n, m) for n, m in out.named_modules() if isinstance(m, nn.BatchNorm2d))
    seen = []
    probe_model = copy.deepcopy(model).eval()
    dict(probe_model.named_modules())[norm_name].register_forward_pre_hook(
        lambda m, args: seen.append(args[0])
    )
    with torch.no_grad():
        probe_model.encode_video(clean_view(dataset.batch(list(range(len(dataset)))), INP))
    want = seen[0].mean((0, 2, 3))
    torch.testing.assert_close(norm.running_mean, want, atol=1e-5, rtol=1e-4)
    assert norm.momentum == dict(model.named_modules())[norm_name].momentum


# -- the loop: view_size, arrow of time, bn_windows -----------------------------------------------
class Spy:
    """Records, per step, the views make_views gave, the clips the model encoded and the
    NT-Xent values, by wrapping the loop's own references."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.made, self.encoded, self.nt = [], [], []
        real_views, real_create, real_nt = loop.make_views, loop.create_model, loop.nt_xent

        def make_views(*args, **kw):
            self.made.append(real_views(*args, **kw))
            return self.made[-1]

        def create(*args, **kw):
            model = real_create(*args, **kw)
            encode = model.encode_video

            def recording(x, *a, **k):
                self.encoded.append(x.detach().clone())
                return encode(x, *a, **k)

            model.encode_video = recording
            return model

        def nt(*args, **kw):
            value = real_nt(*args, **kw)
            self.nt.append(value.item())
            return value

        mp.setattr(loop, "make_views", make_views)
        mp.setattr(loop, "create_model", create)
        mp.setattr(loop, "nt_xent", nt)


def _spied_run(dataset, cfg: TrainConfig, out: Path, global_seed: int):
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy(mp)
        torch.manual_seed(global_seed)  # the run must not depend on it
        result = train_encoder(dataset, cfg, out, device="cpu")
    return result, spy


ARROW = TrainConfig.from_dict({"epochs": 2, "arrow_weight": 1.0, "reverse_p": 0.5}, base=CFG)


@pytest.fixture(scope="module")
def arrow_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("arrow")
    return (out, *_spied_run(dataset, ARROW, out, global_seed=1))


@pytest.fixture(scope="module")
def plain_run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    return (out, *_spied_run(dataset, CFG, out, global_seed=1))


def test_views_at_a_smaller_side_train_a_model_that_runs_at_its_own(dataset, tmp_path):
    cfg = TrainConfig.from_dict({"view_size": 16}, base=CFG)
    result, spy = _spied_run(dataset, cfg, tmp_path, global_seed=0)
    assert result.finished and all(math.isfinite(r["loss"]) for r in read_log(tmp_path))
    assert [tuple(v.shape) for v in spy.encoded] == [(4, 4, 3, 16, 16)] * 2
    model, config, _ = load_checkpoint(tmp_path)
    assert config.input.image_size == 32
    untrained = create_model(config).state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        vec = model.encode_video(torch.rand(2, 4, 3, 32, 32))
    assert vec.shape == (2, 64) and torch.isfinite(vec).all()


def test_arrow_reverses_both_views_of_a_window_and_adds_its_loss(arrow_run):
    out, result, spy = arrow_run
    assert result.finished and result.step == 4
    flags = []
    for made, seen in zip(spy.made, spy.encoded, strict=True):  # per step, (2B, T, 3, S, S)
        back = torch.tensor([not torch.equal(s, m) for s, m in zip(seen, made, strict=True)])
        assert torch.equal(seen[back], made[back].flip(1)), "a changed clip not played backwards"
        assert torch.equal(back[:2], back[2:]), "the two views of a window disagree"
        flags += back[:2].tolist()
    assert any(flags) and not all(flags)  # reverse_p 0.5 over 8 windows
    log = read_log(out)
    assert all(r["loss"] > nt + 1e-4 for r, nt in zip(log, spy.nt, strict=True))  # + BCE
    state = torch.load(out / STATE_NAME, weights_only=True)
    assert state["arrow_head"]["weight"].shape == (1, 64)


def test_arrow_weight_zero_trains_on_the_views_and_nt_xent_alone(plain_run, arrow_run):
    out, result, spy = plain_run
    assert result.finished
    assert all(torch.equal(s, m) for s, m in zip(spy.encoded, spy.made, strict=True))
    assert [r["loss"] for r in read_log(out)] == [float(f"{v:.6g}") for v in spy.nt]
    plain = torch.load(out / STATE_NAME, weights_only=True)
    arrow = torch.load(arrow_run[0] / STATE_NAME, weights_only=True)
    # The unused head got no AdamW step (no moments); the arrow run's did.
    head_ids = plain["optimizer"]["param_groups"][-1]["params"]
    assert len(head_ids) == 2 and not any(i in plain["optimizer"]["state"] for i in head_ids)
    assert all(i in arrow["optimizer"]["state"] for i in head_ids)
    assert not torch.equal(plain["arrow_head"]["weight"], arrow["arrow_head"]["weight"])
    # No re-estimation: the checkpoint holds the training statistics.
    model, _, _ = load_checkpoint(out)
    assert all(torch.equal(v, plain["model"][k]) for k, v in _norms(model).items())


def test_arrow_run_resumes_bit_identical_whatever_the_global_rng(arrow_run, dataset, tmp_path):
    out_full, full, _ = arrow_run
    torch.manual_seed(2)
    first = train_encoder(dataset, ARROW, tmp_path, device="cpu", max_steps=2)
    assert not first.finished and first.step == 2
    torch.manual_seed(3)
    second = train_encoder(dataset, ARROW, tmp_path, device="cpu", resume=True)
    assert second.finished and second.version == full.version
    assert [r["loss"] for r in read_log(tmp_path)] == [r["loss"] for r in read_log(out_full)]
    a, b = (torch.load(d / STATE_NAME, weights_only=True) for d in (tmp_path, out_full))
    assert all(torch.equal(v, b["arrow_head"][k]) for k, v in a["arrow_head"].items())
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):  # fmt: skip
        assert torch.equal(pa["exp_avg"], pb["exp_avg"])
        assert torch.equal(pa["exp_avg_sq"], pb["exp_avg_sq"])


def test_resume_refuses_a_train_state_without_the_arrow_head(plain_run, dataset, tmp_path):
    out, _, _ = plain_run
    for name in os.listdir(out):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    state = torch.load(tmp_path / STATE_NAME, weights_only=True)
    del state["arrow_head"]  # as written before the head existed
    torch.save(state, tmp_path / STATE_NAME)
    with pytest.raises(ValueError, match="predates the arrow-of-time head"):
        train_encoder(dataset, CFG, tmp_path, device="cpu", resume=True)


def test_saved_checkpoint_gets_batchnorm_statistics_of_clean_windows(dataset, tmp_path):
    cfg = TrainConfig.from_dict({"bn_windows": 3, "view_size": 16}, base=CFG)
    train_encoder(dataset, cfg, tmp_path, device="cpu")
    shipped, config, _ = load_checkpoint(tmp_path)
    state = torch.load(tmp_path / STATE_NAME, weights_only=True)
    trained = create_model(config)
    trained.load_state_dict(state["model"])
    norms, train_norms = _norms(shipped), _norms(trained)
    assert norms and all(not torch.equal(v, train_norms[k]) for k, v in norms.items())
    weights = {k: v for k, v in shipped.state_dict().items() if k not in norms}
    assert all(
        torch.equal(v, state["model"][k])
        for k, v in weights.items()
        if not k.endswith("num_batches_tracked")
    )
    again = _norms(reestimate_batchnorm(trained, dataset, config.input, n_windows=3))
    assert all(torch.equal(v, again[k]) for k, v in norms.items())


# -- synthetic videos ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synthetic")
    make_synthetic_videos(d, 3, seed=0, duration_s=1.0)
    return d


def test_synthetic_videos_decode(synthetic_dir):
    paths = sorted(synthetic_dir.iterdir())
    assert [p.name for p in paths] == [f"synthetic-{i:03d}.mp4" for i in range(3)]
    assert len({p.read_bytes() for p in paths}) == 3
    for p in paths:
        info = probe(p)
        assert info.duration_s == pytest.approx(1.0, abs=0.1)
        clips = decode_clips(p, info, plan_windows(info.duration_s), frames_per_clip=4, size=32)
        assert clips.shape == (1, 4, 32, 32, 3) and clips.std() > 5  # pictures, not padding


def test_synthetic_videos_are_made_once(synthetic_dir, monkeypatch, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in synthetic_dir.iterdir()}
    spy = PopenSpy(monkeypatch)
    again = make_synthetic_videos(synthetic_dir, 3, seed=0, duration_s=1.0)
    assert again == sorted(stamps) and spy.procs == []  # no ffmpeg at all
    assert {p: p.stat().st_mtime_ns for p in synthetic_dir.iterdir()} == stamps
    # The module's command line prints the paths, one a line.
    assert synthetic.main([str(synthetic_dir), "--count", "3", "--duration", "1"]) == 0
    assert capsys.readouterr().out.split() == [str(p) for p in sorted(stamps)]
    assert spy.procs == []


def test_a_failed_synthetic_video_leaves_no_file(tmp_path, monkeypatch):
    def fail(cmd, **kw):
        Path(cmd[-1]).write_bytes(b"half a video")
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(lavfi.subprocess, "run", fail)  # the one place that renders them
    with pytest.raises(subprocess.CalledProcessError):
        make_synthetic_videos(tmp_path, 1)
    assert list(tmp_path.iterdir()) == []


# -- file selection and the command line ----------------------------------------------------------
def test_select_files_adds_extra_videos_whatever_the_split(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "syn").mkdir()
    rows = ["path,label,group,duration_s"]
    for i in range(30):
        (tmp_path / "c" / f"clip{i}.mp4").touch()
        rows.append(f"c/clip{i}.mp4,x,{i // 3},2.0")
    manifest = tmp_path / "MANIFEST.csv"
    manifest.write_text("\n".join(rows) + "\n")
    extra = [(tmp_path / "syn" / f"s{i}.mp4") for i in range(2)]
    for p in extra:
        p.touch()
    clip0 = (tmp_path / "c" / "clip0.mp4").resolve()
    for split in ("train", "test"):
        plain = select_files([], manifest=manifest, split=split)
        files = select_files(
            [], manifest=manifest, split=split, extra=[tmp_path / "syn", clip0, extra[0]]
        )
        assert len(files) == len(set(files))  # no duplicates
        assert files[: len(plain)] == plain
        assert set(files) == set(plain) | {p.resolve() for p in extra} | {clip0}
    no_manifest = select_files([tmp_path / "c"], extra=[tmp_path / "c" / "clip1.mp4"])
    assert no_manifest == select_files([tmp_path / "c"])


@pytest.fixture(scope="module")
def cli_videos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-videos")
    for name, source in [("a", "testsrc2"), ("b", "mandelbrot")]:
        make_video(d / f"{name}.mp4", duration_s=1.0, source=source, size=(80, 60))
    return d


def test_cli_config_subset_with_overrides_and_resume(cli_videos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "variant": "sora-t", "epochs": 3, "batch_size": 2, "view_size": 24,
        "augment": {"pip_p": 1.0},
    }))  # fmt: skip
    args = ["train", "encoder", "--also", str(cli_videos), "--config", str(recipe),
            "--epochs", "1", "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert sora(args) == 0
    out = tmp_path / "sora-train" / "sora-t"  # the default --out follows the config's variant
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["variant"] == "sora-t" and saved["epochs"] == 1  # the option wins
    assert saved["view_size"] == 24 and saved["batch_size"] == 2
    assert saved["augment"]["pip_p"] == 1.0
    assert saved["lr"] == TrainConfig().lr and saved["augment"]["letterbox_p"] == 0.2
    assert "2 windows from 2 videos" in capsys.readouterr().err
    version = load_checkpoint(out)[2]
    # The same command line resumes (a finished run: nothing to do); a changed recipe is
    # refused like a changed option.
    assert sora([*args, "--resume"]) == 0 and load_checkpoint(out)[2] == version
    capsys.readouterr()
    recipe.write_text(json.dumps({"variant": "sora-t", "lr": 0.1}))
    assert sora([*args, "--resume"]) == 2
    assert "config differs in ['lr']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "cannot use --config"),  # no such file
        ("{not json", [], "cannot use --config"),
        ("[1, 2]", [], "expected a JSON object"),
        ('{"epoch": 3}', [], "unknown field 'epoch'"),
        ('{"epochs": "ten"}', [], "cannot use --config"),
        ('{"augment": {"pip_scale": 0.5}}', [], "cannot use --config"),
        ('{"variant": "sora-x"}', [], "unknown model 'sora-x'"),
        ("{}", ["--view-size", "8"], "view_size must be >= 16"),
    ],
)
def test_cli_refuses_a_bad_config_with_exit_2(content, extra, message, tmp_path, capsys):
    path = tmp_path / "cfg.json"
    if content is not None:
        path.write_text(content)
    args = ["train", "encoder", "--also", str(tmp_path), "--config", str(path),
            "--out", str(tmp_path / "run"), *extra]  # fmt: skip
    assert sora(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "run").exists()
