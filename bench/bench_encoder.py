"""Benchmark: Sora encoder throughput against this machine's fp32 matmul rate, in one run.

    reference:  fp32 torch.matmul on square matrices (MKL sgemm), best of several sizes and
                of the rounds below (+ for context: fp32 oneDNN linear, bf16 torch.matmul)
    model:      GFLOP per clip counted by torch.utils.flop_counter.FlopCounterMode
                (a multiply-add is 2 FLOPs), by part
    settings:   fp32 eager (as built: NCHW, BatchNorm unfolded)
                fp32 channels_last + BatchNorm folded (the runtime's fp32 model)
                bf16 autocast, channels_last, folded (the runtime's bf16 model)
                the same two compiled with inductor (freezing), unless --no-compile
                runtime: EncoderRuntime.encode_clips on uint8 clips, end to end
    per setting: clips/s at --batch, achieved GFLOP/s, its ratio to the fp32 matmul rate,
                and the smallest cosine to the fp32 eager vectors (raw, and centred on the
                batch mean: the part of a vector that tells clips apart)

Settings and the matmul reference are timed in rounds (one run of each per round, best of
--repeats) so that drift in the machine's load hits all of them alike.

    python bench/bench_encoder.py [--model sora-s] [--batch 8] [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _common import machine_info, print_table, write_json
from torch.utils.flop_counter import FlopCounterMode

from sora_encoder.factory import create_model
from sora_encoder.registry import get_model_config
from sora_encoder.runtime import EncoderRuntime, prepare_for_inference, synthetic_frames

log = logging.getLogger("bench_encoder")


def best_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_reference(repeats: int) -> dict:
    """GFLOP/s of fp32 (and bf16) square matmuls, the best over a few sizes."""
    out: dict = {"fp32_by_size": {}}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = best_seconds(lambda a=a, b=b: a @ b, repeats)
        out["fp32_by_size"][n] = 2 * n**3 / t / 1e9
    out["fp32_gflops"] = max(out["fp32_by_size"].values())
    n = 2048
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    out["bf16_gflops"] = 2 * n**3 / best_seconds(lambda: a @ b, repeats) / 1e9
    try:  # oneDNN's fp32 kernel, the one the convs use (MKL may not use all of AVX-512 here)
        from torch.utils import mkldnn as mkldnn_utils

        lin = mkldnn_utils.to_mkldnn(torch.nn.Linear(n, n, bias=False))
        x = torch.randn(2 * n, n).to_mkldnn()
        out["fp32_onednn_gflops"] = 2 * 2 * n**3 / best_seconds(lambda: lin(x), repeats) / 1e9
    except Exception as e:  # not built with mkldnn, or the API is gone
        log.info("no oneDNN linear reference: %s", e)
        out["fp32_onednn_gflops"] = None
    return out


def count_flops(model: torch.nn.Module, frames: torch.Tensor) -> tuple[float, dict]:
    """(GFLOP per clip, {part: GFLOP per clip}) for one forward pass."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(frames)  # forward == encode_video; called as a module so parts get named
    b = frames.shape[0]
    by_module = counter.get_flop_counts()
    root = type(model).__name__
    parts = {
        name: sum(by_module.get(f"{root}.{name}", {}).values()) / b / 1e9
        for name, _ in model.named_children()
        if name != "heads"
    }
    return counter.get_total_flops() / b / 1e9, parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sora-s")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled settings")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    machine = machine_info()
    log.info("machine: %s", machine)
    ref = matmul_reference(args.repeats)
    cfg = get_model_config(args.model)
    model = create_model(cfg).eval()
    frames = synthetic_frames(cfg, args.batch, seed=1)  # (B, T, 3, S, S)
    gflop_clip, parts = count_flops(model, frames)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %.2f GFLOP/clip %s, %.2f M params", cfg.name, gflop_clip, parts, n_params / 1e6)

    cpu = torch.device("cpu")
    fp32 = prepare_for_inference(model, device=cpu, precision="fp32")
    bf16 = prepare_for_inference(model, device=cpu, precision="bf16")
    settings: dict[str, tuple[Callable, bool]] = {  # name -> (encode function, bf16 autocast)
        "fp32 eager (NCHW, BN)": (model.encode_video, False),
        "fp32 channels_last, BN folded": (fp32.encode_video, False),
        "bf16 autocast, channels_last, folded": (bf16.encode_video, True),
    }
    compile_s = {}
    if not args.no_compile:
        for name, m, amp in (("fp32 compiled", fp32, False), ("bf16 compiled", bf16, True)):
            fn = torch.compile(m.encode_video, dynamic=False, options={"freezing": True})
            t0 = time.perf_counter()
            try:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=amp):
                    fn(frames)
            except Exception as e:
                log.warning("%s failed: %s", name, e)
                continue
            compile_s[name] = time.perf_counter() - t0
            settings[name] = (fn, amp)
            log.info("%s: first call (compiling) %.1f s", name, compile_s[name])

    t0 = time.perf_counter()
    runtime = EncoderRuntime(model, cfg, device="cpu", batch_size=args.batch)
    runtime_start_s = time.perf_counter() - t0
    shape = (args.batch, cfg.input.num_frames, cfg.input.image_size, cfg.input.image_size, 3)
    clips = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)  # (B, T, S, S, 3)

    def run(fn: Callable, amp: bool) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=amp):
            return fn(frames).float()

    with torch.inference_mode():
        reference = model.encode_video(frames)  # (B, D), fp32 eager
    vectors = {name: run(fn, amp) for name, (fn, amp) in settings.items()}
    best = {name: float("inf") for name in [*settings, "runtime"]}
    n = max(ref["fp32_by_size"], key=ref["fp32_by_size"].get)  # the best size of the sweep
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(args.repeats):  # rounds: every setting, and the reference, once per round
        for name, (fn, amp) in settings.items():
            best[name] = min(best[name], best_seconds(lambda fn=fn, amp=amp: run(fn, amp), 1, 0))
        t = best_seconds(lambda: runtime.encode_clips(clips), 1, 0)
        best["runtime"] = min(best["runtime"], t)
        gflops = 2 * n**3 / best_seconds(lambda: a @ b, 1, 0) / 1e9
        ref["fp32_gflops"] = max(ref["fp32_gflops"], gflops)

    center = reference.mean(0)
    rows = []
    for name in [*settings, "runtime"]:
        clips_s = args.batch / best[name]
        row = {
            "setting": name if name != "runtime" else f"runtime.encode_clips ({runtime.precision})",
            "clips_s": clips_s,
            "ms_batch": best[name] * 1e3,
            "gflops": gflop_clip * clips_s,
            "ratio_matmul": gflop_clip * clips_s / ref["fp32_gflops"],
            "compile_s": compile_s.get(name),
        }
        if name in vectors:
            v = vectors[name]
            row["cosine"] = (v * reference).sum(-1).min().item()
            row["cosine_centered"] = (
                F.cosine_similarity(v - center, reference - center).min().item()
            )
        rows.append(row)

    print()
    print(f"machine: {machine['cpu']}, {machine['cpus']} CPUs, torch {machine['torch']}, "
          f"{machine['torch_threads']} threads, load {machine['loadavg_1m']}")  # fmt: skip
    by_size = ", ".join(f"{n}: {g:.0f}" for n, g in ref["fp32_by_size"].items())
    print(f"fp32 matmul: {ref['fp32_gflops']:.0f} GFLOP/s (best of n = {by_size}); "
          f"bf16 matmul {ref['bf16_gflops']:.0f}; fp32 oneDNN linear "
          f"{ref['fp32_onednn_gflops'] or 0:.0f}")  # fmt: skip
    print(f"{cfg.name}: {gflop_clip:.2f} GFLOP/clip ("
          + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
          + f"), {n_params / 1e6:.2f} M params, batch {args.batch}, "
          f"{cfg.input.num_frames} x {cfg.input.image_size} px")  # fmt: skip
    if runtime.calibration is not None:
        cal = runtime.calibration
        print(f"runtime: start {runtime_start_s:.2f} s; calibration bf16 {cal.speedup:.2f}x, "
              f"cosine {cal.cosine:.5f} -> {runtime.precision}")  # fmt: skip
    inter = (reference @ reference.T)[~torch.eye(args.batch, dtype=torch.bool)].mean().item()
    print(f"mean cosine between different clips (fp32): {inter:.4f}")
    print()
    print_table(
        rows,
        [
            ("setting", "setting", "{}"),
            ("clips_s", "clips/s", "{:.1f}"),
            ("ms_batch", "ms/batch", "{:.0f}"),
            ("gflops", "GFLOP/s", "{:.0f}"),
            ("ratio_matmul", "x fp32 matmul", "{:.2f}"),
            ("cosine", "cos vs fp32", "{:.6f}"),
            ("cosine_centered", "centred cos", "{:.4f}"),
            ("compile_s", "compile s", "{:.1f}"),
        ],
    )
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine,
                "matmul": ref,
                "model": {
                    "name": cfg.name,
                    "config": cfg.to_dict(),
                    "params": n_params,
                    "gflop_per_clip": gflop_clip,
                    "gflop_per_clip_by_part": parts,
                    "batch": args.batch,
                    "mean_interclip_cosine": inter,
                },
                "runtime": {
                    "precision": runtime.precision,
                    "start_s": runtime_start_s,
                    "calibration": None
                    if runtime.calibration is None
                    else {**runtime.calibration.__dict__, "speedup": runtime.calibration.speedup},
                },
                "results": rows,
            },
        )
        log.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
