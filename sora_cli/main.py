"""The `sora` command: one sub-command per module, wired here and nowhere else."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import (
    checkpoint_cmd,
    classify_cmd,
    demo_cmd,
    duplicates_cmd,
    embed_cmd,
    eval_cmd,
    export_cmd,
    ingest_cmd,
    reindex_cmd,
    samples_cmd,
    search_cmd,
    serve_cmd,
    train_cmd,
    videos_cmd,
    worker_cmd,
)

# Each module exposes `add_parser(subparsers)` that registers its sub-command and sets
# `func(args) -> int` as the handler; adding a command is one line here.
COMMANDS = (
    demo_cmd,
    serve_cmd,
    worker_cmd,
    ingest_cmd,
    search_cmd,
    duplicates_cmd,
    videos_cmd,
    classify_cmd,
    reindex_cmd,
    embed_cmd,
    export_cmd,
    eval_cmd,
    samples_cmd,
    train_cmd,
    checkpoint_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sora", description="Sora video index: embed, index and search videos."
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (`| head`) went away: stop quietly, as Unix tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the closed pipe
        return 141
    except Exception as exc:
        # A server's refusal (grpc.RpcError) carries a status code and an actionable message.
        if type(exc).__module__.startswith("grpc"):
            from .client_options import report_rpc_error

            return report_rpc_error(exc)
        raise


if __name__ == "__main__":
    sys.exit(main())
