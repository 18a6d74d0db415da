"""`sora train classifier DIR`: a classifier head from labelled videos, optionally with the
encoder fine-tuned end to end.

    sora train classifier ~/labelled --store sport               # ~/labelled/<label>/*.mp4
    sora train classifier --csv clips/MANIFEST.csv --labels fight,no_fight --out head.st
    sora train classifier ~/labelled --finetune --epochs 5 --out-checkpoint runs/ft --store sport

The work is in `sora_encoder.heads` (reading the labelled files, embedding, fitting,
fine-tuning); storing the head for the API is `classifier_store`. docs/CLASSIFIERS.md has
the details.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .encoder_options import add_encoder_options, encoder_choice
from .output import say

# Fine-tuning options: None means "not given" (refused without --finetune), then the default.
_FINETUNE_OPTIONS = ("epochs", "batch_size", "lr", "out_checkpoint")


def add_parser(what: Any) -> None:
    """Registers `classifier` under `sora train` (the `what` subparsers)."""
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
            say(f"  skipped {path}: {error}")
        if done == total or done % 10 == 0:
            say(f"  {verb} {done}/{total}")

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
        say(f"sora train classifier: {exc}")
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
            say(f"sora train classifier: cannot open the store {settings.database_url}: {exc}")
            return 1
    try:
        if args.finetune:
            head, version = _finetuned(args, examples, settings)
        else:
            head, version = _frozen(args, examples, settings)
    except (_Refused, DatasetError, ValueError, FileNotFoundError) as exc:
        say(f"sora train classifier: {exc}")
        return 2
    except FloatingPointError as exc:
        say(f"sora train classifier: {exc}")
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
            say(f"sora train classifier: cannot store the classifier: {exc}")
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
