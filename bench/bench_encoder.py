"""Benchmark: Sora encoder throughput against this machine's fp32 matmul rate, in one run.

    reference:  fp32 torch.matmul on square matrices (MKL sgemm), best of several sizes and
                of the rounds below; for context, bf16 torch.matmul and the fp32 and bf16
                rates of a 3x3 conv (oneDNN, channels_last), the model's main kernel
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
import copy
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


def reference_kernels(repeats: int) -> tuple[dict, dict[str, tuple[Callable, float]]]:
    """({fp32 matmul GFLOP/s by size}, {kernel name: (run it once, its FLOPs)}).

    The kernels: fp32 square matmul at the best size of a sweep (the issue's reference),
    and for context bf16 matmul and the model's main kernel, a 3x3 conv with 256 channels in
    channels_last (oneDNN), in fp32 and bf16. On some CPUs (AMD ones) MKL's sgemm does not
    use all of AVX-512, and the fp32 conv runs well above the matmul rate.
    """
    by_size = {}
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        by_size[n] = 2 * n**3 / best_seconds(lambda a=a, b=b: a @ b, repeats) / 1e9
    n = max(by_size, key=by_size.get)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    conv16 = copy.deepcopy(conv).bfloat16()
    x = torch.randn(128, 256, 14, 14).to(memory_format=torch.channels_last)  # (N, C, H, W)
    x16 = x.bfloat16()
    conv_flops = 2 * 256 * 256 * 9 * 14 * 14 * 128
    kernels = {
        "fp32 matmul": (lambda: a @ b, 2 * n**3),
        "bf16 matmul": (lambda: a16 @ b16, 2 * n**3),
        "fp32 conv3x3": (lambda: conv(x), conv_flops),
        "bf16 conv3x3": (lambda: conv16(x16), conv_flops),
    }
    return by_size, kernels


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
    by_size, kernels = reference_kernels(args.repeats)
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
    best = {name: float("inf") for name in [*settings, "runtime", *kernels]}
    with torch.inference_mode():
        for fn, _ in kernels.values():
            fn()  # warm-up
    for _ in range(args.repeats):  # rounds: every setting and reference kernel once per round
        for name, (fn, amp) in settings.items():
            best[name] = min(best[name], best_seconds(lambda fn=fn, amp=amp: run(fn, amp), 1, 0))
        t = best_seconds(lambda: runtime.encode_clips(clips), 1, 0)
        best["runtime"] = min(best["runtime"], t)
        with torch.inference_mode():
            for name, (fn, _) in kernels.items():
                best[name] = min(best[name], best_seconds(fn, 1, 0))
    ref = {name: flops / best[name] / 1e9 for name, (_, flops) in kernels.items()}
    ref["fp32 matmul"] = max(ref["fp32 matmul"], *by_size.values())

    precision = {name: "bf16" if amp else "fp32" for name, (_, amp) in settings.items()}
    precision["runtime"] = runtime.precision
    center = reference.mean(0)
    rows = []
    for name in [*settings, "runtime"]:
        clips_s = args.batch / best[name]
        row = {
            "setting": name if name != "runtime" else f"runtime.encode_clips ({runtime.precision})",
            "clips_s": clips_s,
            "ms_batch": best[name] * 1e3,
            "gflops": gflop_clip * clips_s,
            "ratio_matmul": gflop_clip * clips_s / ref["fp32 matmul"],
            "ratio_conv": gflop_clip * clips_s / ref[f"{precision[name]} conv3x3"],
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
    sizes = ", ".join(f"{n}: {g:.0f}" for n, g in by_size.items())
    print(f"fp32 matmul: {ref['fp32 matmul']:.0f} GFLOP/s (best of the rounds and of n = {sizes}); "
          f"bf16 matmul {ref['bf16 matmul']:.0f}; 3x3 conv 256 ch: fp32 "
          f"{ref['fp32 conv3x3']:.0f}, bf16 {ref['bf16 conv3x3']:.0f}")  # fmt: skip
    print(f"{cfg.name}: {gflop_clip:.2f} GFLOP/clip (LSTM not counted, ~0.01; "
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
            ("ratio_conv", "x conv same prec.", "{:.2f}"),
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
                "reference_gflops": ref,
                "fp32_matmul_gflops_by_size": by_size,
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
