"""What every client command shares: where the server is, how to authenticate, and how
an RPC error reaches a person."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_ADDRESS = "127.0.0.1:50051"


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        default=os.environ.get("SORA_ADDRESS", DEFAULT_ADDRESS),
        help=f"server host:port (default $SORA_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("SORA_API_TOKEN"),
        help="bearer token (default $SORA_API_TOKEN)",
    )
    p.add_argument("--tls-ca", metavar="PEM", help="CA certificate: connect with TLS")


def connect(args: argparse.Namespace):
    from services.api.client import SoraClient

    ca = Path(args.tls_ca).read_bytes() if args.tls_ca else None
    return SoraClient(args.address, token=args.token, tls_ca=ca)


def report_rpc_error(exc) -> int:
    """Print `sora: CODE: message` (the server's message says what to do) -> exit code 1."""
    code = exc.code().name if hasattr(exc, "code") and exc.code() else "ERROR"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    print(f"sora: {code}: {details}", file=sys.stderr)
    return 1


def read_vector_file(path: str) -> np.ndarray:
    """A query vector from a .npy file, a JSON list, or `sora embed --json` output."""
    p = Path(path)
    if p.suffix == ".npy":
        return np.asarray(np.load(p, allow_pickle=False), dtype=np.float32).reshape(-1)
    data = json.loads(p.read_text().splitlines()[0] if p.suffix == ".jsonl" else p.read_text())
    if isinstance(data, dict):
        data = data.get("vector")
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a JSON list of numbers or an object with 'vector'")
    return np.asarray(data, dtype=np.float32)


def read_vectors_file(path: str) -> np.ndarray:
    """Query vectors (n, d) from a .npy file (n, d) or a JSON list of lists (or a .jsonl of
    `sora embed --json` lines, one vector each)."""
    p = Path(path)
    if p.suffix == ".npy":
        x = np.asarray(np.load(p, allow_pickle=False), dtype=np.float32)
        return x.reshape(1, -1) if x.ndim == 1 else x
    if p.suffix == ".jsonl":
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        data = [r.get("vector") if isinstance(r, dict) else r for r in rows]
    else:
        data = json.loads(p.read_text())
    if not isinstance(data, list) or not data or not all(isinstance(r, list) for r in data):
        raise ValueError(f"{path}: expected a JSON list of vectors (lists of numbers)")
    return np.asarray(data, dtype=np.float32)
