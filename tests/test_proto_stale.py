"""The committed generated code matches proto/: regenerate it into a temporary folder with
the same commands as `make proto` and compare byte for byte."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("proto/sora/v1/sora.proto")
GEN = ROOT / "services/api/gen"
FILES = ("sora/v1/sora_pb2.py", "sora/v1/sora_pb2_grpc.py", "sora/v1/sora_pb2.pyi")


def _make_proto_into(out: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates the code")
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", "-I", "proto",
            f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}", str(PROTO),
        ],
        cwd=ROOT, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # The Makefile's sed: protoc writes imports relative to the proto root.
    grpc_file = out / "sora/v1/sora_pb2_grpc.py"
    text = grpc_file.read_text()
    fixed = re.sub(
        r"^from sora\.v1 import", "from services.api.gen.sora.v1 import", text, flags=re.M
    )
    grpc_file.write_text(fixed)


def test_generated_code_is_up_to_date(tmp_path):
    _make_proto_into(tmp_path)
    stale = [
        name
        for name in FILES
        if not (GEN / name).exists() or (GEN / name).read_bytes() != (tmp_path / name).read_bytes()
    ]
    assert not stale, f"generated code is stale ({', '.join(stale)}): run make proto"


def test_the_makefile_runs_the_same_commands():
    """This test mirrors `make proto`; fail if the Makefile's recipe moves away from it."""
    makefile = (ROOT / "Makefile").read_text()
    assert "-m grpc_tools.protoc -I proto --python_out=$(PROTO_OUT)" in makefile
    assert "--grpc_python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) proto/sora/v1/sora.proto" in (
        makefile
    )
    assert "s/^from sora\\.v1 import/from services.api.gen.sora.v1 import/" in makefile
    assert "PROTO_OUT := services/api/gen" in makefile
