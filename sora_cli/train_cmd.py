"""`sora train encoder DIR...`: self-supervised contrastive training of a Sora encoder.
(`sora train classifier` is train_classifier_cmd.py, registered here under `sora train`.)

    sora train encoder ~/videos --variant sora-s --out runs/sora-s --epochs 10
    sora train encoder --manifest clips/MANIFEST.csv --split train --time-limit 15
    sora train encoder ~/videos --out runs/sora-s --resume      # continue a stopped run

Encoder: videos are decoded once into a cache (--cache), then trained on for --epochs;
progress lines go to stderr; the result in --out is a normal checkpoint for `sora embed
--checkpoint` or SORA_CHECKPOINT. docs/TRAINING.md has the details. The work is in
`sora_encoder.train`; this module parses options, calls it and prints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from . import train_classifier_cmd
from .encoder_options import add_encoder_options
from .output import say

# Options that map onto TrainConfig fields; None means "the config's default" (or, with
# --resume, the saved run's value).
_CONFIG_OPTIONS = {
    "variant": "variant",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "seed": "seed",
    "temperature": "temperature",
    "precision": "precision",
    "log_every": "log_every",
    "checkpoint_every": "checkpoint_every",
    "view_size": "view_size",
    "arrow_weight": "arrow_weight",
    "bn_windows": "bn_windows",
    "init_from": "init_from",
}


def default_cache_dir() -> Path:
    from sora_encoder import cache_dir

    return cache_dir() / "train-clips"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train models (encoder pretraining, classifiers)")
    what = p.add_subparsers(dest="train_what", required=True, metavar="WHAT")
    e = what.add_parser(
        "encoder",
        help="self-supervised contrastive training of the Sora encoder on unlabelled videos",
        description="Two augmented views of each video window are pulled together and "
        "other windows pushed apart (NT-Xent). Writes a normal checkpoint to --out.",
    )
    e.add_argument("paths", nargs="*", metavar="DIR", help="video files or folders (recursive)")
    e.add_argument("--manifest", metavar="CSV", help="a MANIFEST.csv (path,label,group,...)")
    e.add_argument(
        "--split",
        choices=("train", "test", "all"),
        default=None,
        help="with --manifest: which groups to use (default train); a hash of the group "
        "decides, so clips of one source video never straddle the split",
    )
    e.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="DIR",
        help="more videos, used whatever the split (e.g. synthetic ones); repeatable",
    )
    e.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of groups held out (0.2)"
    )
    e.add_argument("--out", metavar="DIR", help="output folder (default ./sora-train/VARIANT)")
    e.add_argument("--epochs", type=int, help="passes over the windows (default 10)")
    e.add_argument("--batch-size", type=int, help="windows per step (default 16)")
    e.add_argument("--lr", type=float, help="peak AdamW learning rate (default 5e-4)")
    e.add_argument("--temperature", type=float, help="NT-Xent temperature (default 0.1)")
    e.add_argument("--seed", type=int, help="seed of init, order, augmentations (default 0)")
    e.add_argument(
        "--config",
        metavar="JSON",
        help="a TrainConfig as JSON (any subset of its fields, e.g. a recipe); the options "
        "above and below override it; with --resume it applies over the saved config",
    )
    e.add_argument(
        "--view-size", type=int, help="side of the training views (default: the model's)"
    )
    e.add_argument(
        "--arrow-weight", type=float, help="weight of the arrow-of-time loss (default 0: off)"
    )
    e.add_argument(
        "--bn-windows",
        type=int,
        help="clean windows to re-estimate BatchNorm on for each saved checkpoint (default 0)",
    )
    add_encoder_options(e, checkpoint=False)  # unset: the recipe's (default sora-s, auto)
    e.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    e.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start from this checkpoint's weights (same variant) instead of the seed's",
    )
    e.add_argument("--max-clips", type=int, metavar="N", help="use only the first N files")
    e.add_argument(
        "--cache", metavar="DIR", help=f"decoded-window cache (default {default_cache_dir()})"
    )
    e.add_argument("--decode-workers", type=int, default=2, help="parallel ffmpeg decodes (2)")
    e.add_argument(
        "--time-limit", type=float, metavar="MIN", help="stop (resumably) after MIN minutes"
    )
    e.add_argument("--max-steps", type=int, help="stop (resumably) after this step")
    e.add_argument("--log-every", type=int, help="steps between progress lines (default 10)")
    e.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (200)")
    e.set_defaults(func=run_encoder)
    train_classifier_cmd.add_parser(what)


def run_encoder(args: argparse.Namespace) -> int:
    from sora_encoder.train import (
        ClipCache,
        TrainConfig,
        WindowDataset,
        decode_spec,
        select_files,
        train_encoder,
    )
    from sora_encoder.train.config import read_recipe, resolve_config

    given = {
        field: getattr(args, opt)
        for opt, field in _CONFIG_OPTIONS.items()
        if getattr(args, opt) is not None
    }
    try:
        recipe = read_recipe(args.config) if args.config else {}
    except ValueError as exc:
        say(f"sora train encoder: cannot use --config {exc}")
        return 2
    try:
        variant = given.get("variant") or recipe.get("variant") or TrainConfig().variant
        out = Path(args.out or Path("sora-train") / str(variant))
        cfg = resolve_config(given, recipe=recipe, resume_dir=out if args.resume else None)
        spec = decode_spec(cfg)  # an unknown variant raises here
    except (ValueError, TypeError, FileNotFoundError) as exc:  # --view-size 8, --variant sora-x
        say(f"sora train encoder: {exc}")
        return 2

    if not args.paths and not args.manifest and not args.also:
        say("sora train encoder: give video folders/files or --manifest")
        return 2
    split = args.split or ("train" if args.manifest else "all")
    try:
        files = select_files(
            args.paths,
            manifest=args.manifest,
            split=split,
            test_fraction=args.test_fraction,
            max_files=args.max_clips,
            extra=args.also,
        )
    except (FileNotFoundError, ValueError) as exc:
        say(f"sora train encoder: {exc}")
        return 2
    if not files:
        say("sora train encoder: no video files found")
        return 2

    cache = ClipCache(args.cache or default_cache_dir(), spec)
    say(
        f"caching {len(files)} video(s) in {cache.root}: {spec.frames} frames of "
        f"{spec.size} px per {spec.span_s:g}-s window"
    )
    t0 = time.perf_counter()

    def on_file(done: int, total: int, path: str, error: Exception | None) -> None:
        if error is not None:
            say(f"  skipped {path}: {error}")
        if done == total or done % 25 == 0:
            say(
                f"  {done}/{total} files, {cache.decoded} decoded, {time.perf_counter() - t0:.1f} s"
            )

    videos, failed = cache.load_many(files, workers=args.decode_workers, on_file=on_file)
    dataset = WindowDataset(videos)
    if len(dataset) < 2:
        say(f"sora train encoder: {len(dataset)} usable window(s); need at least 2")
        return 2
    say(
        f"{len(dataset)} windows from {len(videos)} videos ({dataset.seconds() / 60:.1f} min), "
        f"{len(failed)} skipped; training {cfg.variant} for {cfg.epochs} epoch(s) of "
        f"{len(dataset) // min(cfg.batch_size, len(dataset))} steps -> {out}"
    )
    try:
        result = train_encoder(
            dataset,
            cfg,
            out,
            device=args.device,
            resume=args.resume,
            max_steps=args.max_steps,
            time_limit_s=args.time_limit * 60 if args.time_limit else None,
            progress=lambda p: say(p.line()),
        )
    except (ValueError, FileNotFoundError) as exc:  # a refused resume, too little data
        say(f"sora train encoder: {exc}")
        return 2
    except FloatingPointError as exc:  # the loss diverged
        say(f"sora train encoder: {exc}")
        return 1
    state = "done" if result.finished else "stopped early (--resume continues)"
    say(
        f"{state}: step {result.step}/{result.total_steps}, loss {result.final_loss:.4f}\n"
        f"checkpoint {result.out_dir} (model {result.version}); use it with "
        f"`sora embed --checkpoint {result.out_dir}` or SORA_CHECKPOINT={result.out_dir}"
    )
    return 0
