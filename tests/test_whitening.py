"""PCA whitening of Sora vectors (sora_encoder/whitening.py) and `sora checkpoint whiten`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sora_encoder.checkpoint import load_checkpoint, model_version, save_checkpoint
from sora_encoder.config import SoraConfig
from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config
from sora_encoder.whitening import apply_whitening, fit_whitening, whitened_model


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _crowded(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors that all share one strong direction (what unrelated clips look like to
    a contrastive encoder: cosine ~0.9 to each other)."""
    rng = np.random.default_rng(seed)
    common = np.zeros(d)
    common[0] = 3.0
    return _unit(common + rng.normal(size=(n, d)) * np.linspace(1.0, 0.1, d))


def test_whitened_training_vectors_have_unit_spread_in_every_direction():
    x = _crowded(600, 16)
    w, b = fit_whitening(x, eps_share=1e-9)
    y = x @ w.T + b  # before the final normalisation
    assert np.abs(y.mean(axis=0)).max() < 1e-4
    assert np.allclose(np.cov(y.T), np.eye(16), atol=2e-3)


def test_whitening_pulls_unrelated_vectors_apart_and_keeps_copies_close():
    x = _crowded(600, 16)
    w, b = fit_whitening(x)
    fresh = _crowded(50, 16, seed=1)  # vectors it was not fitted on
    copies = _unit(fresh + 0.02 * np.random.default_rng(2).normal(size=fresh.shape))
    raw = fresh @ fresh.T
    white = apply_whitening(fresh, w, b) @ apply_whitening(fresh, w, b).T
    off = ~np.eye(50, dtype=bool)
    assert raw[off].mean() > 0.5 and abs(white[off].mean()) < 0.1  # crowd spread out
    kept = np.sum(apply_whitening(fresh, w, b) * apply_whitening(copies, w, b), axis=1)
    assert kept.min() > white[off].max()  # every copy still beats every unrelated pair


def test_fit_refuses_too_few_or_broken_vectors():
    with pytest.raises(ValueError, match="more vectors than dimensions"):
        fit_whitening(_crowded(10, 16))
    bad = _crowded(40, 16)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_whitening(bad)


def test_the_whitened_model_computes_what_apply_whitening_says():
    cfg = get_model_config("sora-t")
    model = create_model(cfg).eval()
    w, b = fit_whitening(_crowded(200, cfg.projection.out_dim))
    white, wcfg = whitened_model(model, cfg, w, b)
    assert wcfg.projection.whiten and not cfg.projection.whiten
    clips = torch.randn(3, cfg.input.num_frames, 3, cfg.input.image_size, cfg.input.image_size)
    with torch.no_grad():
        plain = model.encode_video(clips).numpy()
        whitened = white.encode_video(clips).numpy()
    np.testing.assert_allclose(whitened, apply_whitening(plain, w, b), atol=1e-5)
    with pytest.raises(ValueError, match="whitened already"):
        whitened_model(white, wcfg, w, b)


def test_whitening_is_part_of_the_version_and_older_configs_keep_theirs(tmp_path):
    cfg = get_model_config("sora-t")
    assert "whiten" not in cfg.to_dict()["projection"]  # unchanged JSON: unchanged versions
    assert SoraConfig.from_json(cfg.canonical_json()) == cfg
    model = create_model(cfg)
    w, b = fit_whitening(_crowded(200, cfg.projection.out_dim))
    white, wcfg = whitened_model(model, cfg, w, b)
    assert json.loads(wcfg.canonical_json())["projection"]["whiten"] is True
    assert model_version(white, wcfg) != model_version(model, cfg)
    version = save_checkpoint(white, wcfg, tmp_path / "white", dtype=torch.float16)
    loaded, lcfg, lversion = load_checkpoint(tmp_path / "white")
    assert lversion == version and lcfg == wcfg and loaded.whitening is not None


def test_cli_whiten_refuses_a_whitened_source_and_a_full_destination(tmp_path, capsys):
    from sora_cli.main import main

    cfg = get_model_config("sora-t")
    w, b = fit_whitening(_crowded(200, cfg.projection.out_dim))
    white, wcfg = whitened_model(create_model(cfg), cfg, w, b)
    save_checkpoint(white, wcfg, tmp_path / "white")
    assert main(["checkpoint", "whiten", str(tmp_path / "white"), str(tmp_path / "out")]) == 2
    assert "whitened already" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert main(["checkpoint", "whiten", str(tmp_path / "white"), str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err
