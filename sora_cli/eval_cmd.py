"""`sora eval neardup DIR` and `sora eval classify DIR --manifest CSV`: measure the encoder.

Both compare, in one run on the same clips and the same group split, the Sora encoder
(`--checkpoint`, else $SORA_CHECKPOINT / the shipped one, else a seed-initialised
`--variant`), the untrained encoder of the same architecture, the CNN-only ablation
(frame vectors mean-pooled) and the 8x8 tiny-image descriptor; `neardup` adds the
perceptual-hash anchors users deploy today (vPDQ, videohash) when their optional packages
are installed, and says why when they are not. The work is in `sora_encoder.eval`; this
module parses options and prints.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sora_encoder.eval import classify, neardup
from sora_encoder.eval.anchors import ANCHOR_NAMES, DEFAULT_ANCHORS, build_anchors
from sora_encoder.eval.baselines import EMBEDDER_NAMES, build_embedders
from sora_encoder.eval.data import load_items, read_manifest
from sora_encoder.eval.png import write_png
from sora_encoder.eval.report import (
    classify_markdown,
    confusion_image,
    neardup_markdown,
    write_json,
    write_text,
)
from sora_encoder.eval.splits import DEFAULT_SALT, DEFAULT_TEST_FRACTION, on_side
from sora_encoder.eval.transforms import FAMILIES, families_from

from .encoder_options import add_encoder_options

SERVICE = "sora@service"  # the service's own search path (workers.eval_search), on request
# The same with clip query regions always / never searched (the service's default is
# "auto": only for a query whose whole picture found no copy)
SERVICE_REGIONS = "sora@service+regions"
SERVICE_WHOLE = "sora@service+whole"
SERVICE_REGION_MODES = {SERVICE: "auto", SERVICE_REGIONS: "always", SERVICE_WHOLE: "never"}
CANDIDATE = "candidate"  # --candidate CKPT: a second Sora checkpoint in the same run


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate the encoder: near-duplicates, classification")
    ev = p.add_subparsers(dest="eval_command", required=True, metavar="EVAL")

    n = ev.add_parser(
        "neardup",
        help="recall@1, recall@10 and mAP of transformed copies, per transformation family",
        description="One clip per test-side group is transformed by every family; the copies "
        "search a database of all test-side clips plus distractors from the train side.",
    )
    n.add_argument("dir", metavar="DIR", nargs="?", help="folder of videos")
    n.add_argument(
        "--manifest",
        metavar="CSV",
        help="path,label,group CSV (default: DIR/MANIFEST.csv if present, else every video "
        "file under DIR, each its own group)",
    )
    n.add_argument("--limit", type=int, metavar="N", help="at most N originals (groups)")
    n.add_argument(
        "--distractors",
        type=int,
        metavar="N",
        help="at most N train-side clips added to the database (default: all)",
    )
    n.add_argument(
        "--families",
        metavar="A,B",
        help="transformation families (default: all; `--families list` lists them)",
    )
    n.add_argument(
        "--non-copies",
        type=int,
        metavar="N",
        help="hold N groups of the side out of the database; their transformed clips are "
        "queries with no copy to find (default: a quarter of the side's groups)",
    )
    n.add_argument(
        "--side",
        choices=("test", "train", "all"),
        default="test",
        help="which side of the group split gives the originals (default: test)",
    )
    n.add_argument(
        "--work-dir",
        metavar="DIR",
        help="keep the transformed copies here and reuse them on the next run "
        "(default: a temporary folder, removed)",
    )
    n.add_argument(
        "--candidate",
        metavar="CKPT",
        help="also evaluate this checkpoint (as `candidate`, with its own copy calibration) "
        "in the same run: the gate before it replaces the shipped one",
    )
    n.add_argument("--json", metavar="OUT", help="write the results as JSON")
    n.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    _common(n, EMBEDDER_NAMES + DEFAULT_ANCHORS, also=(*ANCHOR_NAMES, *SERVICE_REGION_MODES))
    n.set_defaults(func=run_neardup)

    c = ev.add_parser(
        "classify",
        help="accuracy, macro-F1 and confusion of heads on frozen vectors, group split",
        description="Heads (sora_encoder.heads.train_head) fitted on the train-side groups, "
        "scored on the test-side groups; plus telling clips from their time-reversed copies.",
    )
    c.add_argument("dir", metavar="DIR", help="folder of videos (paths in the CSV are under it)")
    c.add_argument("--manifest", metavar="CSV", required=True, help="path,label,group CSV")
    c.add_argument(
        "--labels",
        metavar="A,B",
        action="append",
        help="a task over these labels (repeat for several; default: fight,no_fight and "
        "typing,doing_exercises where present, else all labels in one task)",
    )
    c.add_argument("--limit", type=int, metavar="N", help="at most N clips per label")
    c.add_argument("--no-time-reversal", action="store_true", help="skip the time-reversal task")
    c.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="also grouped K-fold cross-validation over every clip of each task (a steadier "
        "figure than a small test side; the encoder has seen the train-side clips)",
    )
    c.add_argument("--png", metavar="OUT", help="write the confusion matrices as a PNG")
    c.add_argument("--json", metavar="OUT", help="write the results as JSON")
    c.add_argument("--markdown", metavar="OUT", help="write the tables as Markdown")
    _common(c, EMBEDDER_NAMES)
    c.set_defaults(func=run_classify)

    e = ev.add_parser(
        "edits",
        help="copies under random edit chains: top-1, AUC and recall at 1%% false positives",
        description="Random chains of 2-5 edits (crop, rescale, grade, grey, blur, noise, "
        "borders, captions, frame rate, trim, re-encode) of one clip per group search the "
        "side's videos as ingest embeds them; copy scores leave-one-group-out. The study "
        "behind whitening (sora_encoder/eval/edit_study.py): it compares models, on the train "
        "side by default; neardup reports.",
    )
    e.add_argument("dir", metavar="DIR", help="folder of videos")
    e.add_argument("--manifest", metavar="CSV", help="path,label,group CSV (default: DIR's)")
    e.add_argument("--side", choices=("train", "test", "all"), default="train",
                   help="which side of the group split (train)")  # fmt: skip
    e.add_argument("--per-group", type=int, default=2, help="edited copies per group (2)")
    e.add_argument("--seed", type=int, default=7, help="seed of the edits (7)")
    e.add_argument("--candidate", metavar="CKPT", help="also this checkpoint, same edits")
    e.add_argument("--work-dir", metavar="DIR", help="keep the edited files here and reuse them")
    e.add_argument("--json", metavar="OUT", help="write the results as JSON")
    add_encoder_options(e, precision=False)
    _split_options(e)
    e.set_defaults(func=run_edits)


def _common(
    p: argparse.ArgumentParser, embedders: tuple[str, ...], *, also: tuple[str, ...] = ()
) -> None:
    add_encoder_options(p, precision=False)
    p.add_argument(
        "--embedders",
        metavar="A,B",
        default=",".join(embedders),
        help=f"which embedders (default: {','.join(embedders)}"
        + (f"; also: {','.join(n for n in also if n not in embedders)})" if also else ")"),
    )
    _split_options(p)


def _split_options(p: argparse.ArgumentParser) -> None:
    """The group split every eval command uses, and its progress switch."""
    p.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_TEST_FRACTION,
        help=f"share of groups on the test side (default {DEFAULT_TEST_FRACTION})",
    )
    p.add_argument("--salt", default=DEFAULT_SALT, help=f"split salt (default {DEFAULT_SALT!r})")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _split_names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


class _Progress:
    """One self-overwriting line per stage on stderr (CLI only)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, stage: str, n: int, total: int) -> None:
        if self.quiet:
            return
        end = "\n" if n == total else ""
        dt = time.perf_counter() - self.t0
        print(f"\r{stage}: {n}/{total}  ({dt:.0f} s)", end=end, file=sys.stderr, flush=True)


def _write_outputs(args: argparse.Namespace, result: Any, markdown: str) -> None:
    if args.json:
        write_json(args.json, result.to_json())
    if args.markdown:
        write_text(args.markdown, markdown)


def _guarded(fn):
    """Bad options and missing files end with a message and status 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ValueError, FileNotFoundError) as exc:
            print(f"sora eval {args.eval_command}: {exc}", file=sys.stderr)
            return 2

    return run


def _neardup_embedders(args: argparse.Namespace) -> tuple[list[Any], dict[str, str]]:
    """The asked-for embedders in the order asked: clip embedders (baselines), anchors
    whose packages are installed, `sora@service`; and {anchor: why it was skipped}."""
    names = _split_names(args.embedders)
    if getattr(args, "candidate", None) and CANDIDATE not in names:
        names.insert(names.index("sora") + 1 if "sora" in names else 0, CANDIDATE)
    known = EMBEDDER_NAMES + ANCHOR_NAMES + (*SERVICE_REGION_MODES, CANDIDATE)
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown embedders {unknown}; known: {list(known)}")
    anchors, skipped = build_anchors([n for n in names if n in ANCHOR_NAMES])
    for service, regions in SERVICE_REGION_MODES.items():
        if service in names:
            from sora_encoder import load_embedder
            from workers.eval_search import ServiceSearchMatcher

            embedder = load_embedder(args.checkpoint, variant=args.variant, device=args.device)
            anchors.append(
                ServiceSearchMatcher(
                    embedder,
                    name=service,
                    checkpoint=args.checkpoint,
                    regions=regions,
                )  # fmt: skip
            )
    if CANDIDATE in names:
        if not getattr(args, "candidate", None):
            raise ValueError("the candidate embedder needs --candidate CKPT")
        [candidate] = build_embedders(["sora"], checkpoint=args.candidate, device=args.device)
        candidate.name = CANDIDATE  # listed under its model version (the table's name)
        anchors.append(candidate)
    for name, why in skipped.items():
        print(f"sora eval neardup: skipping {name}: {why}", file=sys.stderr)
    clip_names = [n for n in names if n in EMBEDDER_NAMES]
    built = {e.name: e for e in anchors}
    if clip_names:
        built.update(
            (e.name, e)
            for e in build_embedders(
                clip_names, checkpoint=args.checkpoint, variant=args.variant, device=args.device
            )
        )
    embedders = [built[n] for n in names if n in built]  # the order asked for
    if not embedders:
        raise ValueError("no embedder can run (see the reasons above)")
    return embedders, skipped


@_guarded
def run_neardup(args: argparse.Namespace) -> int:
    if args.families == "list":
        for f in FAMILIES.values():
            print(f"{f.name:24s} {f.description}")
        return 0
    if args.dir is None:
        raise ValueError("DIR is required")
    root = Path(args.dir)
    items = load_items(root, args.manifest)
    families = families_from(_split_names(args.families))
    setup = neardup.select(
        items,
        side=args.side,
        limit=args.limit,
        distractors=args.distractors,
        non_copies=args.non_copies,
        test_fraction=args.test_fraction,
        salt=args.salt,
    )
    embedders, skipped = _neardup_embedders(args)
    progress = _Progress(args.quiet)
    extra = {"test_fraction": args.test_fraction, "salt": args.salt, "dir": str(root)}
    with tempfile.TemporaryDirectory(prefix="sora-eval-") as tmp:
        work = args.work_dir or tmp
        result = neardup.run_neardup(
            setup,
            embedders,
            families,
            work,
            progress=progress,
            extra_setup=extra,
            skipped=skipped,
        )
    markdown = neardup_markdown(result)
    _write_outputs(args, result, markdown)
    print(markdown)
    return 0


@_guarded
def run_classify(args: argparse.Namespace) -> int:
    items = read_manifest(args.manifest, root=args.dir)
    label_sets = [_split_names(x) for x in args.labels] if args.labels else None
    tasks = classify.tasks_for(items, label_sets)
    wanted = {y for t in tasks for y in t.labels}
    items = classify.limit_per_label(
        [it for it in items if it.label in wanted], args.limit, salt=args.salt
    )
    embedders = build_embedders(
        _split_names(args.embedders),
        checkpoint=args.checkpoint,
        variant=args.variant,
        device=args.device,
    )
    result = classify.run_classify(
        items,
        embedders,
        tasks,
        time_reversal=not args.no_time_reversal,
        test_fraction=args.test_fraction,
        salt=args.salt,
        folds=args.folds,
        progress=_Progress(args.quiet),
    )
    result.setup["limit_per_label"] = args.limit
    markdown = classify_markdown(result)
    _write_outputs(args, result, markdown)
    if args.png:
        write_png(args.png, confusion_image(result))
    print(markdown)
    return 0


@_guarded
def run_edits(args: argparse.Namespace) -> int:
    from sora_encoder import load_embedder
    from sora_encoder.eval.edit_study import run_edit_study

    items = [
        it for it in load_items(Path(args.dir), args.manifest)
        if on_side(it.group, args.side, test_fraction=args.test_fraction, salt=args.salt)
    ]  # fmt: skip
    if not items:
        raise ValueError(f"no videos on the {args.side} side")
    embedders = {"sora": load_embedder(args.checkpoint, variant=args.variant, device=args.device)}
    if args.candidate:
        embedders[CANDIDATE] = load_embedder(args.candidate, device=args.device)
    with tempfile.TemporaryDirectory(prefix="sora-eval-edits-") as tmp:
        result = run_edit_study(
            items, embedders, args.work_dir or tmp, per_group=args.per_group, seed=args.seed,
            progress=_Progress(args.quiet),
        )  # fmt: skip
    if args.json:
        write_json(args.json, result)
    s = result["setup"]
    print(f"{s['queries']} edited copies of {s['library']} videos ({args.side} side); edits: "
          + ", ".join(f"{k} {v}" for k, v in s["edits"].items()))  # fmt: skip
    print("| embedder | model version | top-1 | AUC | recall at 1% false positives |")
    print("| --- | --- | --- | --- | --- |")
    for name, m in result["metrics"].items():
        print(f"| {name} | {m['model_version']} | {m['top1']:.3f} | {m['auc']:.3f} | "
              f"{m['recall@fpr1%']:.3f} |")  # fmt: skip
    return 0
