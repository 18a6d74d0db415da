"""`sora train encoder DIR...`: self-supervised contrastive training of a Sora encoder.
`sora train classifier DIR`: a classifier head from labelled videos, optionally with the
encoder fine-tuned end to end.

    sora train encoder ~/videos --variant sora-s --out runs/sora-s --epochs 10
    sora train encoder --manifest clips/MANIFEST.csv --split train --time-limit 15
    sora train encoder ~/videos --out runs/sora-s --resume      # continue a stopped run

    sora train classifier ~/labelled --store sport               # ~/labelled/<label>/*.mp4
    sora train classifier --csv clips/MANIFEST.csv --labels fight,no_fight --out head.st
    sora train classifier ~/labelled --finetune --epochs 5 --out-checkpoint runs/ft --store sport

Encoder: videos are decoded once into a cache (--cache), then trained on for --epochs;
progress lines go to stderr; the result in --out is a normal checkpoint for `sora embed
--checkpoint` or SORA_CHECKPOINT. docs/TRAINING.md has the details. Classifier: see
docs/CLASSIFIERS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .encoder_options import add_encoder_options, encoder_choice

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
    _add_classifier_parser(what)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
        _say(f"sora train encoder: cannot use --config {exc}")
        return 2
    try:
        variant = given.get("variant") or recipe.get("variant") or TrainConfig().variant
        out = Path(args.out or Path("sora-train") / str(variant))
        cfg = resolve_config(given, recipe=recipe, resume_dir=out if args.resume else None)
        spec = decode_spec(cfg)  # an unknown variant raises here
    except (ValueError, TypeError, FileNotFoundError) as exc:  # --view-size 8, --variant sora-x
        _say(f"sora train encoder: {exc}")
        return 2

    if not args.paths and not args.manifest and not args.also:
        _say("sora train encoder: give video folders/files or --manifest")
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
        _say(f"sora train encoder: {exc}")
        return 2
    if not files:
        _say("sora train encoder: no video files found")
        return 2

    cache = ClipCache(args.cache or default_cache_dir(), spec)
    _say(
        f"caching {len(files)} video(s) in {cache.root}: {spec.frames} frames of "
        f"{spec.size} px per {spec.span_s:g}-s window"
    )
    t0 = time.perf_counter()

    def on_file(done: int, total: int, path: str, error: Exception | None) -> None:
        if error is not None:
            _say(f"  skipped {path}: {error}")
        if done == total or done % 25 == 0:
            _say(
                f"  {done}/{total} files, {cache.decoded} decoded, {time.perf_counter() - t0:.1f} s"
            )

    videos, failed = cache.load_many(files, workers=args.decode_workers, on_file=on_file)
    dataset = WindowDataset(videos)
    if len(dataset) < 2:
        _say(f"sora train encoder: {len(dataset)} usable window(s); need at least 2")
        return 2
    _say(
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
            progress=lambda p: _say(p.line()),
        )
    except (ValueError, FileNotFoundError) as exc:  # a refused resume, too little data
        _say(f"sora train encoder: {exc}")
        return 2
    except FloatingPointError as exc:  # the loss diverged
        _say(f"sora train encoder: {exc}")
        return 1
    state = "done" if result.finished else "stopped early (--resume continues)"
    _say(
        f"{state}: step {result.step}/{result.total_steps}, loss {result.final_loss:.4f}\n"
        f"checkpoint {result.out_dir} (model {result.version}); use it with "
        f"`sora embed --checkpoint {result.out_dir}` or SORA_CHECKPOINT={result.out_dir}"
    )
    return 0


# ---- sora train classifier ---------------------------------------------------------------------
# Fine-tuning options: None means "not given" (refused without --finetune), then the default.
_FINETUNE_OPTIONS = ("epochs", "batch_size", "lr", "out_checkpoint")


def _add_classifier_parser(what: Any) -> None:
    c = what.add_parser(
        "classifier",
        help="a classifier from labelled videos: a head on frozen Sora vectors, or with "
        "--finetune the encoder fine-tuned end to end",
        description="Labelled videos come from DIR/<label>/*.mp4 or a CSV (path,label"
        "[,group]). Each video is embedded as the service embeds it, a softmax head is "
        "trained and measured on held-out videos (whole groups are held out), and the head "
        "is written to --out and/or stored as classifier --store NAME for the API's "
        "classify call. docs/CLASSIFIERS.md has the details.",
    )
    c.add_argument("dir", nargs="?", metavar="DIR", help="a folder with one sub-folder per label")
    c.add_argument("--csv", metavar="FILE", help="a CSV with columns path,label[,group]")
    c.add_argument("--labels", metavar="A,B", help="use only these labels (comma-separated)")
    add_encoder_options(c)
    c.add_argument("--out", metavar="FILE", help="write the head (safetensors) to FILE")
    c.add_argument("--store", metavar="NAME", help="save as classifier NAME in the service's store")
    c.add_argument(
        "--holdout", type=float, default=0.25, help="share of each label held out (0.25)"
    )
    c.add_argument("--seed", type=int, default=0, help="seed of the split and fine-tuning (0)")
    c.add_argument("--l2", type=float, help="L2 penalty of the head (default 1e-3)")
    f = c.add_argument_group("fine-tuning (--finetune)")
    f.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the encoder with a linear head end to end (AdamW); writes a new "
        "encoder checkpoint, and the head is keyed by that checkpoint's model version",
    )
    f.add_argument("--epochs", type=int, help="passes over the train segments (default 5)")
    f.add_argument("--batch-size", type=int, help="segments per step (default 8)")
    f.add_argument(
        "--lr", type=float, help="head learning rate; the encoder gets lr/10 (default 3e-4)"
    )
    f.add_argument("--out-checkpoint", metavar="DIR", help="where the fine-tuned encoder goes")
    c.set_defaults(func=run_classifier)


class _Refused(Exception):
    """Arguments or data that cannot be trained on: exit 2 with the message."""


def _check_options(args: argparse.Namespace) -> None:
    if not args.finetune:
        given = [o for o in _FINETUNE_OPTIONS if getattr(args, o) is not None]
        if given:
            shown = ", ".join("--" + o.replace("_", "-") for o in given)
            raise _Refused(f"{shown} only apply with --finetune")
    elif not args.out_checkpoint:
        raise _Refused(
            "--finetune needs --out-checkpoint DIR: the head only works with the fine-tuned "
            "encoder, so that encoder must be saved"
        )
    if not 0.0 < args.holdout < 1.0:
        raise _Refused(f"--holdout must be between 0 and 1, got {args.holdout}")
    if args.store is not None and not (0 < len(args.store.strip()) <= 128):
        raise _Refused("--store NAME must be 1 to 128 characters")


def _progress(verb: str) -> Any:
    def on_file(done: int, total: int, path: Path, error: Exception | None) -> None:
        if error is not None:
            _say(f"  skipped {path}: {error}")
        if done == total or done % 10 == 0:
            _say(f"  {verb} {done}/{total}")

    return on_file


def _print_metrics(head: Any) -> None:
    m = head.metrics
    print(
        f"holdout: {m['holdout_examples']} videos (trained on {m['train_examples']}): "
        f"accuracy {m['holdout_accuracy']:.3f}, macro-F1 {m['holdout_macro_f1']:.3f}"
    )
    width = max(len(y) for y in head.labels)
    cols = [max(len(y), 4) for y in head.labels]

    def line(first: str, cells: list) -> str:
        return f"  {first:<{width}}  " + " ".join(
            f"{c:>{w}}" for c, w in zip(cells, cols, strict=True)
        )

    print("confusion on the holdout (rows: true label, columns: predicted):")
    print(line("", head.labels))
    for label, row in zip(head.labels, m["confusion"], strict=True):
        print(line(label, row))
    print("the saved head is refit on all the videos")


def run_classifier(args: argparse.Namespace) -> int:
    from sora_encoder.heads.dataset import DatasetError, check_trainable, read_examples

    try:
        _check_options(args)
        labels = [y.strip() for y in (args.labels or "").split(",") if y.strip()]
        examples = read_examples(args.dir or None, csv=args.csv or None, labels=labels)
        counts = check_trainable(examples)
    except (_Refused, DatasetError) as exc:
        _say(f"sora train classifier: {exc}")
        return 2
    grouped = any(e.group is not None for e in examples)
    print(
        f"{len(examples)} videos, {len(counts)} labels"
        + (f", {len({e.group for e in examples})} groups" if grouped else "")
        + ": "
        + ", ".join(f"{y} {n}" for y, n in counts.items())
    )
    from services.settings import Settings

    settings = Settings.from_env()
    if args.store:
        from .classifier_store import open_classifier_store

        try:  # fail now, not after the training
            open_classifier_store(settings.database_url).dispose()
        except Exception as exc:  # noqa: BLE001 - any driver error: report and stop
            _say(f"sora train classifier: cannot open the store {settings.database_url}: {exc}")
            return 1
    try:
        if args.finetune:
            head, version = _finetuned(args, examples, settings)
        else:
            head, version = _frozen(args, examples, settings)
    except (_Refused, DatasetError, ValueError, FileNotFoundError) as exc:
        _say(f"sora train classifier: {exc}")
        return 2
    except FloatingPointError as exc:
        _say(f"sora train classifier: {exc}")
        return 1
    _print_metrics(head)
    return _save(args, head, version, settings)


def _frozen(args: argparse.Namespace, examples: list, settings: Any) -> tuple[Any, str]:
    from sora_encoder import load_embedder
    from sora_encoder.heads.dataset import check_trainable
    from sora_encoder.heads.offline import embed_examples, fit_head

    enc = encoder_choice(args, settings)
    embedder = load_embedder(
        enc.checkpoint,
        variant=enc.variant,
        device=enc.device,
        precision=enc.precision,
        segment_s=settings.segment_s,
    )
    print(f"embedding with model {embedder.model_version} on {embedder.runtime.device}")
    embedded = embed_examples(examples, embedder, on_file=_progress("embedded"))
    if embedded.failed:
        print(f"{len(embedded.failed)} video(s) skipped (undecodable); see above")
        check_trainable(embedded.examples)
    kwargs = {"l2": args.l2} if args.l2 is not None else {}
    head = fit_head(
        embedded.examples,
        embedded.xb,
        model_version=embedded.model_version,
        holdout_fraction=args.holdout,
        seed=args.seed,
        provenance={"mode": "frozen"},
        **kwargs,
    )
    return head, embedded.model_version


def _finetuned(args: argparse.Namespace, examples: list, settings: Any) -> tuple[Any, str]:
    from sora_encoder.heads.dataset import check_trainable
    from sora_encoder.heads.finetuned import HEAD_NAME, decode_examples, finetune_classifier
    from sora_encoder.runtime import InputSpec
    from sora_encoder.train.finetune import FinetuneConfig, load_model

    given = {
        k: getattr(args, k) for k in ("epochs", "batch_size", "lr") if getattr(args, k) is not None
    }
    cfg = FinetuneConfig(**given)
    enc = encoder_choice(args, settings)
    model, config, start = load_model(enc.checkpoint, variant=enc.variant)
    spec = InputSpec(frames=config.input.num_frames, size=config.input.image_size)
    print(f"decoding {len(examples)} videos for {start}")
    decoded = decode_examples(
        examples, spec, segment_s=settings.segment_s, on_file=_progress("decoded")
    )
    if decoded.failed:
        print(f"{len(decoded.failed)} video(s) skipped (undecodable); see above")
        check_trainable(decoded.examples)
    segments = sum(len(c) for c in decoded.clips)
    print(
        f"fine-tuning {start}: {cfg.epochs} epoch(s), batch {cfg.batch_size}, lr {cfg.lr:g} "
        f"(encoder {cfg.lr * cfg.encoder_lr_scale:g}), {segments} segments; epoch 0 is the "
        "starting encoder with a linear probe"
    )
    kwargs = {"l2": args.l2} if args.l2 is not None else {}
    result = finetune_classifier(
        decoded,
        model=model,
        config=config,
        start_version=start,
        out_dir=args.out_checkpoint,
        cfg=cfg,
        holdout_fraction=args.holdout,
        seed=args.seed,
        device=enc.device,
        precision=enc.precision,
        on_epoch=lambda stats: print(stats.line(), flush=True),
        **kwargs,
    )
    best = result.history[result.best_epoch]
    print(
        f"best epoch {result.best_epoch} (holdout accuracy {best.holdout_accuracy:.3f}); "
        f"checkpoint {result.checkpoint_dir} (model {result.model_version}), head "
        f"{result.checkpoint_dir / HEAD_NAME}"
    )
    if best.holdout_accuracy < result.history[0].holdout_accuracy:
        print(
            "warning: the starting encoder with a linear probe did better on the holdout "
            f"({result.history[0].holdout_accuracy:.3f}); consider the head on frozen vectors "
            "(no --finetune)"
        )
    print(f"head on the fine-tuned encoder's vectors (model {result.model_version}):")
    return result.head, result.model_version


def _save(args: argparse.Namespace, head: Any, version: str, settings: Any) -> int:
    from services.errors import ServiceError
    from sora_encoder.heads.offline import write_head_file

    from .classifier_store import store_head

    if args.out:
        print(f"wrote {write_head_file(args.out, head)} (model {version})")
    if args.store:
        try:
            stored = store_head(settings.database_url, args.store.strip(), head)
        except ServiceError as exc:
            _say(f"sora train classifier: cannot store the classifier: {exc}")
            return 2
        print(f"stored classifier {stored.name!r} (id {stored.classifier_id}) for model {version}")
        if args.finetune:
            print(
                "the API uses it only when the service serves this fine-tuned encoder: set "
                f"SORA_CHECKPOINT={Path(args.out_checkpoint).resolve()} for `sora serve` and "
                "the workers, then `sora reindex` so that every video has its vectors"
            )
        elif stored.serving_version is None:
            print(
                "no video in the store has vectors yet; the API classifies with it once "
                f"videos are ingested with model {version}"
            )
        elif stored.serving_version != version:
            print(
                f"note: the store's videos are served with model {stored.serving_version}: "
                "the API refuses this classifier (FAILED_PRECONDITION) until it serves "
                f"{version} (SORA_CHECKPOINT, then `sora reindex`)"
            )
        else:
            print("the API's classify call uses it now")
    if not args.out and not args.store and not args.finetune:
        print("nothing saved: give --out FILE and/or --store NAME to keep the head")
    return 0
