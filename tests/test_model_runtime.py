"""EncoderRuntime: the bf16 policy, calibration caching, encode_clips, compile fallback, and
(behind @pytest.mark.gpu) CUDA. The transforms are tested here too."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import sora_encoder.runtime as rt
from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config
from sora_encoder.runtime import Calibration, EncoderRuntime, choose_precision, fold_batchnorm
from sora_encoder.transforms import clips_to_frames

CFG = get_model_config("sora-t")
T, S = CFG.input.num_frames, CFG.input.image_size


def uint8_clips(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, T, S, S, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def no_shared_calibrations(monkeypatch):
    monkeypatch.setattr(rt, "_CALIBRATIONS", {})


def fake_calibrate(result: Calibration, calls: list):
    def calibrate(model, config, *, device):
        calls.append(config.name)
        return result

    return calibrate


# -- the bf16 decision -------------------------------------------------------------------
@pytest.mark.parametrize(
    "fp32_s, bf16_s, cosine, expected",
    [
        (1.0, 0.5, 0.99995, "bf16"),  # twice as fast and accurate
        (1.0, 0.5, 0.9989, "fp32"),  # fast but not accurate enough
        (1.0, 0.95, 0.99999, "fp32"),  # accurate, but 5 % is within timing noise
        (1.0, 1.5, 1.0, "fp32"),  # slower (a CPU without bf16 instructions)
        (1.0, 1 / 1.1, 0.999, "bf16"),  # exactly on both thresholds
    ],
)
def test_choose_precision(fp32_s, bf16_s, cosine, expected):
    assert choose_precision(Calibration(fp32_s, bf16_s, cosine)) == expected


def test_auto_precision_on_cpu_follows_the_calibration(monkeypatch):
    calls: list = []
    monkeypatch.setattr(rt, "calibrate", fake_calibrate(Calibration(1.0, 0.4, 0.9995), calls))
    assert EncoderRuntime.untrained(CFG, device="cpu").precision == "bf16"
    monkeypatch.setattr(rt, "_CALIBRATIONS", {})
    monkeypatch.setattr(rt, "calibrate", fake_calibrate(Calibration(1.0, 0.4, 0.998), calls))
    run = EncoderRuntime.untrained(CFG, device="cpu")
    assert run.precision == "fp32" and run.calibration.cosine == 0.998
    assert calls == ["sora-t", "sora-t"]


def test_explicit_precision_skips_the_calibration(monkeypatch):
    calls: list = []
    monkeypatch.setattr(rt, "calibrate", fake_calibrate(Calibration(1.0, 0.4, 1.0), calls))
    run = EncoderRuntime.untrained(CFG, device="cpu", precision="fp32")
    assert run.precision == "fp32" and run.calibration is None and calls == []
    with pytest.raises(ValueError, match="precision"):
        EncoderRuntime.untrained(CFG, device="cpu", precision="fp16")


def test_calibration_is_cached_in_process_and_on_disk(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr(rt, "calibrate", fake_calibrate(Calibration(1.0, 0.4, 0.9995), calls))
    monkeypatch.setattr(rt, "_busy", lambda: "")  # a quiet machine, whatever the test host's load
    cache = tmp_path / "cal.json"
    EncoderRuntime.untrained(CFG, device="cpu", calibration_cache=cache)
    EncoderRuntime.untrained(CFG, device="cpu", calibration_cache=cache)
    assert calls == ["sora-t"], "the second runtime must reuse the first one's measurement"
    monkeypatch.setattr(rt, "_CALIBRATIONS", {})  # a new process: only the file remains
    run = EncoderRuntime.untrained(CFG, device="cpu", calibration_cache=cache)
    assert calls == ["sora-t"] and run.calibration == Calibration(1.0, 0.4, 0.9995)
    [key] = json.loads(cache.read_text())
    assert key.startswith(run.model_version), "keyed by model version (and machine)"
    EncoderRuntime.untrained("sora-s", device="cpu", calibration_cache=cache)
    assert calls == ["sora-t", "sora-s"], "another model is measured again"


def test_a_calibration_on_a_busy_machine_is_not_kept_on_disk(monkeypatch, tmp_path):
    calls: list = []
    monkeypatch.setattr(rt, "calibrate", fake_calibrate(Calibration(1.0, 2.0, 0.9995), calls))
    monkeypatch.setattr(rt, "_busy", lambda: "load 9.0 on 2 CPUs")
    cache = tmp_path / "cal.json"
    assert EncoderRuntime.untrained(CFG, device="cpu", calibration_cache=cache).precision == "fp32"
    assert not cache.exists() and calls == ["sora-t"]


def test_real_calibration_measures_something():
    model = create_model(CFG)
    cal = rt.calibrate(model, CFG, device=torch.device("cpu"))
    assert cal.fp32_s > 0 and cal.bf16_s > 0
    assert 0.99 < cal.cosine <= 1.0 + 1e-6


# -- encode_clips ------------------------------------------------------------------------
def test_encode_clips_matches_the_model_in_fp32():
    model = create_model(CFG).eval()
    run = EncoderRuntime(model, CFG, device="cpu", precision="fp32", batch_size=3)
    clips = uint8_clips(7)
    vec = run.encode_clips(clips)
    assert vec.shape == (7, CFG.projection.out_dim) and vec.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        ref = model.encode_video(clips_to_frames(clips, CFG.input)).numpy()
    np.testing.assert_allclose(vec, ref, atol=1e-5)  # folded BatchNorm, same function
    np.testing.assert_allclose(run.encode_clips(clips[4:5])[0], vec[4], atol=1e-5)
    assert run.encode_clips(clips[:0]).shape == (0, CFG.projection.out_dim)
    assert run.input_spec == rt.InputSpec(frames=T, size=S) and run.dim == 64


def test_encode_clips_in_bf16_stays_close_to_fp32():
    model = create_model(CFG)
    clips = uint8_clips(4)
    v32 = EncoderRuntime(model, CFG, device="cpu", precision="fp32").encode_clips(clips)
    v16 = EncoderRuntime(model, CFG, device="cpu", precision="bf16").encode_clips(clips)
    assert v16.dtype == np.float32
    assert (v32 * v16).sum(axis=1).min() > 0.999
    assert not np.array_equal(v32, v16), "bf16 really ran in bf16"


def test_encode_clips_rejects_bad_input():
    run = EncoderRuntime.untrained(CFG, device="cpu", precision="fp32")
    with pytest.raises(TypeError, match="uint8"):
        run.encode_clips(uint8_clips(1).astype(np.float32))
    with pytest.raises(TypeError, match="uint8"):
        run.encode_clips(torch.zeros(1, T, S, S, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(N, 4, 32, 32, 3\)"):
        run.encode_clips(np.zeros((1, T, S + 4, S + 4, 3), np.uint8))
    with pytest.raises(ValueError):
        run.encode_clips(np.zeros((T, S, S, 3), np.uint8))  # one clip without the batch axis


def test_a_failing_compile_falls_back_to_eager(monkeypatch):
    def broken_compile(fn, **kwargs):
        def compiled(x):
            raise RuntimeError("inductor: no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    run = EncoderRuntime.untrained(CFG, device="cpu", precision="fp32", compile=True, batch_size=4)
    assert run.compiled
    clips = uint8_clips(3)
    vec = run.encode_clips(clips)
    assert not run.compiled and vec.shape == (3, 64)
    ref = EncoderRuntime.untrained(CFG, device="cpu", precision="fp32").encode_clips(clips)
    np.testing.assert_allclose(vec, ref, atol=1e-6)


def test_fold_batchnorm_keeps_the_function():
    model = create_model(CFG)
    with torch.no_grad():
        for _ in range(3):  # move the BatchNorm statistics away from (0, 1)
            model.train().encode_video(torch.randn(2, T, 3, S, S) * 2 + 1)
    model.eval()
    x = torch.randn(2, T, 3, S, S)
    with torch.no_grad():
        ref = model.encode_video(x)
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded.encode_video(x), ref, atol=1e-5, rtol=0)


# -- transforms --------------------------------------------------------------------------
def test_clips_to_frames_normalises_and_keeps_channels_last_memory():
    clips = uint8_clips(2)
    clips[0, 0, 0, 0] = [0, 128, 255]
    x = clips_to_frames(clips, CFG.input)
    assert x.shape == (2, T, 3, S, S) and x.dtype == torch.float32
    mean, std = CFG.input.mean, CFG.input.std
    expected = [(v / 255 - m) / s for v, m, s in zip([0, 128, 255], mean, std, strict=True)]
    torch.testing.assert_close(x[0, 0, :, 0, 0], torch.tensor(expected))
    n, t, i, j = 1, 2, 5, 7
    torch.testing.assert_close(
        x[n, t, :, i, j], (torch.tensor(clips[n, t, i, j] / 255.0) - 0.45).float() / 0.225
    )
    assert x.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_clips_to_frames_rejects_bad_input():
    with pytest.raises(TypeError):
        clips_to_frames(np.zeros((1, T, S, S, 3), np.float32), CFG.input)
    with pytest.raises(ValueError):
        clips_to_frames(np.zeros((1, T, S, S, 4), np.uint8), CFG.input)
    with pytest.raises(ValueError, match="square"):
        clips_to_frames(np.zeros((1, T, S, S + 2, 3), np.uint8), CFG.input)


# -- CUDA --------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_runtime_defaults_to_fp32_and_agrees_with_cpu():
    model = create_model(get_model_config("sora-s"))
    clips = np.random.default_rng(0).integers(0, 256, (5, 16, 112, 112, 3), dtype=np.uint8)
    gpu = EncoderRuntime(model, get_model_config("sora-s"))
    assert gpu.device.type == "cuda" and gpu.precision == "fp32" and gpu.calibration is None
    cpu = EncoderRuntime(model, get_model_config("sora-s"), device="cpu", precision="fp32")
    v_gpu, v_cpu = gpu.encode_clips(clips), cpu.encode_clips(clips)
    assert v_gpu.shape == (5, 256) and v_gpu.dtype == np.float32
    assert (v_gpu * v_cpu).sum(axis=1).min() > 0.9999  # bf16 gave 0.995 on a trained model
    bf16 = EncoderRuntime(model, get_model_config("sora-s"), precision="bf16")
    assert bf16.precision == "bf16" and (bf16.encode_clips(clips) * v_cpu).sum(axis=1).min() > 0.99


@pytest.mark.slow
def test_real_compile_matches_eager_and_compiles_once():
    """~10 s on 2 cores: inductor with freezing, the last batch padded to the same shape."""
    model = create_model(CFG)
    clips = uint8_clips(5)
    eager = EncoderRuntime(model, CFG, device="cpu", precision="fp32").encode_clips(clips)
    run = EncoderRuntime(model, CFG, device="cpu", precision="fp32", compile=True, batch_size=4)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        vec = run.encode_clips(clips)  # a batch of 4, then 1 padded to 4: one graph
        assert run.compiled, "compilation failed and fell back to eager"
    np.testing.assert_allclose(vec, eager, atol=1e-5)
