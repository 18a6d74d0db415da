"""`sora checkpoint export|info|calibrate`: ship a trained encoder checkpoint, look inside
one, store its copy-score calibration.

    sora checkpoint export runs/sora-s-default sora_encoder/checkpoints/sora-s --force
    sora checkpoint info sora_encoder/checkpoints/sora-s
    sora checkpoint calibrate sora_encoder/checkpoints/sora-s --manifest CLIPS/MANIFEST.csv

`export` writes a half-precision copy (fp16 by default: on a seed-initialised sora-s its
vectors are ~40x closer to the float32 model's than bf16's, 1 - cosine 4e-7 against 1.7e-5,
at the same size), reports both model versions and the cosine between the two models'
vectors on random clips, and refuses (exit 2) rather than overwrite a folder, export
something that is not a checkpoint, or ship a file over --max-mb or a copy whose vectors
moved below --min-cosine. The export gets a model version of its own (see
sora_encoder.checkpoint); the source's version, training steps and final loss are kept in
its safetensors metadata. The work is in `sora_encoder.export` and `sora_encoder.copy_score`;
this module parses options and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DTYPES = ("fp16", "bf16")  # sora_encoder.export.DTYPES; listed here so --help needs no torch


def add_parser(sub: Any) -> None:
    p = sub.add_parser("checkpoint", help="export (half precision) or inspect encoder checkpoints")
    what = p.add_subparsers(dest="checkpoint_what", required=True, metavar="WHAT")
    e = what.add_parser(
        "export",
        help="write a half-precision copy of a checkpoint (e.g. the one shipped in the package)",
        description="Store the checkpoint's floating tensors in fp16/bf16 where their values "
        "survive (the rest as they are); the copy loads as a float32 model.",
    )
    e.add_argument("src", metavar="SRC", help="a checkpoint folder (or its model.safetensors)")
    e.add_argument("dst", metavar="DST", help="the folder to write (created)")
    e.add_argument("--dtype", choices=DTYPES, default="fp16", help="storage dtype (fp16)")
    e.add_argument("--force", action="store_true", help="replace the checkpoint in DST")
    e.add_argument(
        "--max-mb", type=float, default=25.0, help="refuse a larger export (25 MB; 1 MB = 1e6 B)"
    )
    e.add_argument(
        "--min-cosine",
        type=float,
        default=0.999,
        help="refuse if the export's vectors are less similar to SRC's than this (0.999)",
    )
    e.add_argument("--clips", type=int, default=4, help="random clips to compare on (4)")
    e.set_defaults(func=run_export)
    i = what.add_parser("info", help="variant, size, dtypes, version and training of a checkpoint")
    i.add_argument("path", metavar="PATH", help="a checkpoint folder (or its model.safetensors)")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=run_info)
    c = what.add_parser(
        "calibrate",
        help="store the copy-score background and threshold beside a checkpoint's weights",
        description="Embed background videos (the training side of a manifest, or folders) "
        "as ingest would; store their vectors and the copy threshold in the checkpoint "
        "folder (copy_calibration.npz). See sora_encoder/copy_score.py.",
    )
    c.add_argument("path", metavar="CHECKPOINT", help="a checkpoint folder")
    _background_options(c)
    c.set_defaults(func=run_calibrate)
    w = what.add_parser(
        "whiten",
        help="write a whitened copy of a checkpoint, with its copy calibration",
        description="Embed background videos (as calibrate does), fit PCA whitening on their "
        "segment vectors, write SRC's weights with the whitening layer on to DST (a new model "
        "version) and DST's copy calibration from the same vectors. See "
        "sora_encoder/whitening.py.",
    )
    w.add_argument("src", metavar="SRC", help="a checkpoint folder (not whitened)")
    w.add_argument("path", metavar="DST", help="the folder to write (created)")
    w.add_argument("--dtype", choices=DTYPES, default="fp16", help="storage dtype (fp16)")
    w.add_argument("--force", action="store_true", help="replace the checkpoint in DST")
    _background_options(w)
    w.set_defaults(func=run_whiten)


def _background_options(p: argparse.ArgumentParser) -> None:
    """The background videos and the threshold rule, shared by calibrate and whiten."""
    p.add_argument(
        "videos",
        nargs="*",
        metavar="DIR",
        help="background videos, each file its own group (clips of one recording: a manifest)",
    )
    p.add_argument("--manifest", metavar="CSV", help="a MANIFEST.csv (path,label,group,...)")
    p.add_argument(
        "--split", choices=("train", "test", "all"), default="train",
        help="with --manifest: which side of the evaluation split (train)",
    )  # fmt: skip
    p.add_argument("--also", nargs="*", default=[], metavar="DIR", help="more videos (own group)")
    p.add_argument("--k", type=int, default=10, help="background neighbours averaged (10)")
    p.add_argument(
        "--quantile", type=float, default=0.99,
        help="share of non-copy queries kept below the threshold (0.99)",
    )  # fmt: skip


def _refuse(what: str, msg: str) -> int:
    print(f"sora checkpoint {what}: {msg}", file=sys.stderr)
    return 2


def run_export(args: argparse.Namespace) -> int:
    from sora_encoder.export import ExportRefused, export_checkpoint

    try:
        report = export_checkpoint(
            args.src,
            args.dst,
            dtype=args.dtype,
            clips=args.clips,
            max_mb=args.max_mb,
            min_cosine=args.min_cosine,
            force=args.force,
        )
    except ExportRefused as exc:
        if len(exc.args) > 1:  # measured, then refused: the numbers say why
            _print_export(exc.args[1], args)
        return _refuse("export", str(exc.args[0]))
    _print_export(report, args)
    print(f"wrote {args.dst}")
    return 0


def _print_export(r: Any, args: argparse.Namespace) -> None:
    print(f"source:   {r.src_version}  {r.src_size_mb:.2f} MB  ({', '.join(r.src_dtypes)})")
    print(f"exported: {r.version}  {r.size_mb:.2f} MB  ({args.dtype})")
    print(
        f"cosine source vs export on {args.clips} random clips: "
        f"min {r.cos_min:.7f}, mean {r.cos_mean:.7f}"
    )
    print(f"kept as stored ({len(r.kept)}): {', '.join(r.kept) or '-'}")


def run_info(args: argparse.Namespace) -> int:
    from sora_encoder.export import checkpoint_info

    try:
        info = checkpoint_info(args.path)
    except (OSError, ValueError, TypeError) as exc:
        return _refuse("info", f"{args.path} is not a usable checkpoint: {exc}")
    if args.json:
        print(json.dumps(info))
        return 0
    dtypes = ", ".join(f"{d} x{n}" for d, n in info["dtypes"].items())
    print(f"path:          {info['path']}")
    print(f"variant:       {info['variant']}")
    print(f"params:        {info['params']:,}")
    print(f"dtypes:        {dtypes} (tensors)")
    print(f"size:          {info['size_mb']:.2f} MB")
    print(f"model version: {info['model_version']}")
    if "exported_from" in info:
        print(f"exported from: {info['exported_from']}")
    if "train_steps" in info:
        print(f"train steps:   {info['train_steps']}")
    if "train_final_loss" in info:
        print(f"final loss:    {info['train_final_loss']}")
    if "train_config" in info:
        print(f"train config:  {json.dumps(info['train_config'], sort_keys=True)}")
    return 0


def _on_background_file(done: int, total: int, path: Any, error: Exception | None) -> None:
    if error is not None:
        print(f"  skipped {path}: {error}", file=sys.stderr)
    if done == total or done % 25 == 0:
        print(f"  {done}/{total} videos embedded", file=sys.stderr)


def _embedded_background(what: str, args: argparse.Namespace, folder: Path) -> Any:
    """(model version, video vectors, segment vectors, groups) of the background by
    `folder`'s model, or an exit code after a refusal."""
    from sora_encoder import load_embedder
    from sora_encoder.copy_score import embed_background
    from sora_encoder.eval.data import background_files

    try:
        files = background_files(
            args.manifest, split=args.split, folders=[*args.videos, *args.also]
        )
    except (OSError, ValueError) as exc:
        return _refuse(what, str(exc))
    if not files:
        return _refuse(what, "no background videos: give --manifest and/or folders")
    embedder = load_embedder(folder)
    try:
        return embedder.model_version, *embed_background(
            embedder, files, on_file=_on_background_file
        )
    except ValueError as exc:
        return _refuse(what, str(exc))


def run_calibrate(args: argparse.Namespace) -> int:
    folder = Path(args.path)
    if not folder.is_dir():
        return _refuse("calibrate", f"{folder} is not a checkpoint folder")
    embedded = _embedded_background("calibrate", args, folder)
    if isinstance(embedded, int):
        return embedded
    return _calibrate(folder, args, *embedded)


def _calibrate(folder: Path, args: argparse.Namespace, version, videos, segments, groups) -> int:
    from sora_encoder.copy_score import build_calibration

    try:
        cal = build_calibration(
            version, videos, segments, groups, k=args.k, quantile=args.quantile,
            meta={"source": args.manifest or ",".join(map(str, args.videos)),
                  "split": args.split if args.manifest else "all"},
        )  # fmt: skip
    except ValueError as exc:
        return _refuse("calibrate", str(exc))
    out = cal.save(folder)
    best = cal.meta["non_copy_best"]
    print(
        f"{out}: {cal.meta['videos']} videos ({cal.meta['groups']} groups), "
        f"{cal.meta['segments']} segments, k {cal.k}; threshold {cal.threshold:.4f} "
        f"(non-copy best score: median {best['median']:.4f}, max {best['max']:.4f})"
    )
    return 0


def run_whiten(args: argparse.Namespace) -> int:
    import torch

    from sora_encoder.checkpoint import load_checkpoint, weights_path
    from sora_encoder.whitening import whiten_checkpoint

    src, dst = Path(args.src), Path(args.path)
    if dst.exists() and not dst.is_dir():
        return _refuse("whiten", f"{dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not args.force:
        return _refuse("whiten", f"{dst} is not empty; add --force to replace its checkpoint")
    try:
        _, config, _ = load_checkpoint(src)
    except (OSError, ValueError, TypeError) as exc:
        return _refuse("whiten", f"{src} is not a usable checkpoint: {exc}")
    if config.projection.whiten:
        return _refuse("whiten", f"{src} is whitened already: whiten the one it came from")
    embedded = _embedded_background("whiten", args, weights_path(src).parent)
    if isinstance(embedded, int):
        return embedded
    _, _, segments, groups = embedded
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    try:
        w = whiten_checkpoint(src, dst, segments, dtype=dtype)
    except ValueError as exc:
        return _refuse("whiten", f"{exc} (add background videos)")
    n = sum(len(s) for s in segments)
    print(f"{dst}: {w.version}, whitened from {w.source_version} on {n} segment vectors "
          f"of {len(segments)} videos")  # fmt: skip
    return _calibrate(dst, args, w.version, w.videos, w.segments, groups)
