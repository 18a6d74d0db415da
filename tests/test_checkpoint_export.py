"""`sora checkpoint export|info`: the half-precision copy that ships, and what info reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sora_cli.main import main
from sora_encoder.checkpoint import load_checkpoint, save_checkpoint
from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config


def make_checkpoint(folder: Path, variant: str) -> str:
    """A seed-initialised `variant` saved in float32; returns its version."""
    config = get_model_config(variant)
    return save_checkpoint(create_model(config), config, folder)


def export(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["checkpoint", "export", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def reported(out: str) -> dict[str, str | float]:
    """The versions, sizes and cosine that `export` prints."""
    src = re.search(r"^source: +(\S+) +([\d.]+) MB", out, re.M)
    dst = re.search(r"^exported: +(\S+) +([\d.]+) MB", out, re.M)
    cos = re.search(r"min ([\d.]+), mean ([\d.]+)", out)
    assert src and dst and cos, out
    return {
        "src_version": src[1],
        "src_mb": float(src[2]),
        "version": dst[1],
        "mb": float(dst[2]),
        "cos_min": float(cos[1]),
    }


@pytest.fixture(scope="module")
def sora_t(tmp_path_factory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("sora-t") / "fp32"
    return folder, make_checkpoint(folder, "sora-t")


def test_export_keeps_vectors_halves_the_file_and_has_a_stable_version(tmp_path, capsys, sora_t):
    src, src_version = sora_t
    rc, out, err = export(capsys, str(src), str(tmp_path / "a"))
    assert rc == 0, err
    r = reported(out)
    assert r["src_version"] == src_version and r["version"] != src_version
    assert r["cos_min"] >= 0.999
    assert 0.45 < r["mb"] / r["src_mb"] < 0.55, out
    model, config, version = load_checkpoint(tmp_path / "a")
    assert version == r["version"] and config.name == "sora-t"
    assert all(p.dtype == torch.float32 for p in model.parameters())

    assert export(capsys, str(src), str(tmp_path / "b"))[0] == 0
    assert load_checkpoint(tmp_path / "b")[2] == version, "two exports, one version"
    rc, out, _ = export(capsys, "--dtype", "bf16", str(src), str(tmp_path / "c"))
    assert rc == 0 and reported(out)["version"] not in (version, src_version)


@pytest.mark.slow
def test_export_of_sora_s_fits_the_package_budget(tmp_path, capsys):
    src_version = make_checkpoint(tmp_path / "fp32", "sora-s")
    rc, out, err = export(capsys, "--clips", "2", str(tmp_path / "fp32"), str(tmp_path / "s"))
    assert rc == 0, err
    r = reported(out)
    assert r["src_version"] == src_version and r["version"] != src_version
    assert r["cos_min"] >= 0.999
    assert r["mb"] <= 25 < r["src_mb"], out  # fp32 sora-s (~29 MB) would not ship


def test_export_refuses_to_overwrite_without_force(tmp_path, capsys, sora_t):
    src, _ = sora_t
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    rc, out, err = export(capsys, str(src), str(dst))
    assert rc == 2 and "not empty" in err and "--force" in err and out == ""
    assert [p.name for p in dst.iterdir()] == ["notes.txt"]
    rc, _, err = export(capsys, "--force", str(src), str(dst))
    assert rc == 0, err
    assert sorted(p.name for p in dst.iterdir()) == [
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]
    (tmp_path / "file").write_text("x")
    rc, _, err = export(capsys, "--force", str(src), str(tmp_path / "file"))
    assert rc == 2 and "not a folder" in err


def test_export_refuses_what_is_not_a_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = export(capsys, str(tmp_path / "empty"), str(tmp_path / "out"))
    assert rc == 2 and "not a usable checkpoint" in err and "model.safetensors" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"garbage")
    (bad / "config.json").write_text(json.dumps({"name": "sora-t"}))
    rc, _, err = export(capsys, str(bad), str(tmp_path / "out"))
    assert rc == 2 and "not a safetensors file" in err
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_file_over_max_mb_and_leaves_nothing(tmp_path, capsys, sora_t):
    src, _ = sora_t
    rc, _, err = export(capsys, "--max-mb", "0.2", str(src), str(tmp_path / "out"))
    assert rc == 2 and "over --max-mb 0.2" in err
    assert list(tmp_path.iterdir()) == [], "no DST, no temporary folder"


def test_info_reports_the_checkpoint_and_its_training(tmp_path, capsys, sora_t):
    src, src_version = sora_t
    run = tmp_path / "run"
    run.mkdir()
    for f in src.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    log = [{"step": 5, "epoch": 0, "loss": 2.5}, {"step": 10, "epoch": 1, "loss": 1.25}]
    (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    (run / "train_config.json").write_text(json.dumps({"variant": "sora-t", "epochs": 2}))

    assert main(["checkpoint", "info", "--json", str(run)]) == 0
    info = json.loads(capsys.readouterr().out)
    params = sum(p.numel() for p in create_model("sora-t").parameters())
    assert info["variant"] == "sora-t" and info["params"] == params
    assert info["model_version"] == src_version and set(info["dtypes"]) == {"float32", "int64"}
    assert (info["train_steps"], info["train_final_loss"]) == (10, 1.25)
    assert info["train_config"]["epochs"] == 2

    assert export(capsys, str(run), str(tmp_path / "half"))[0] == 0
    assert main(["checkpoint", "info", str(tmp_path / "half")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^variant: +sora-t$", out, re.M), out
    assert re.search(r"^dtypes: +float16 x\d+, int64 x\d+", out, re.M), out
    assert re.search(rf"^exported from: +{src_version}$", out, re.M), "provenance kept"
    assert re.search(r"^train steps: +10$", out, re.M) and re.search(r"loss: +1.25$", out, re.M)
    assert re.search(r"^size: +0\.\d\d MB$", out, re.M), out

    assert main(["checkpoint", "info", str(tmp_path / "nowhere")]) == 2
    assert "not a usable checkpoint" in capsys.readouterr().err
