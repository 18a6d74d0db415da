"""A client that has only proto/sora/v1/sora.proto (no code of this project) can call the
service: generate plain protoc output into an empty folder, and use it from a separate
Python process whose path holds that folder and nothing of ours."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from tests.test_api_harness import *  # noqa: F403 - the fixtures (api, db, ...)
from tests.test_api_harness import DIM, TOKEN, add_video, unit

ROOT = Path(__file__).resolve().parent.parent


def test_plain_protoc_output_is_enough_to_search(api, tmp_path):  # noqa: F811
    rng = np.random.default_rng(3)
    target = unit(rng.standard_normal((3, DIM)))
    video_id = add_video(api.store, target, title="the one")
    add_video(api.store, unit(rng.standard_normal((2, DIM))), title="another")
    api.sync()

    gen = tmp_path / "gen"
    gen.mkdir()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
         f"--python_out={gen}", f"--grpc_python_out={gen}", "sora/v1/sora.proto"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    query = ",".join(f"{x:.7f}" for x in unit(target.mean(axis=0)))
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        sys.path.insert(0, {str(gen)!r})
        import grpc
        from sora.v1 import sora_pb2 as pb, sora_pb2_grpc as rpc
        assert "services" not in sys.modules
        stub = rpc.SoraIndexStub(grpc.insecure_channel({api.address!r}))
        md = [("authorization", "Bearer {TOKEN}")]
        r = stub.Search(pb.SearchRequest(vector=pb.VectorQuery(values=[{query}]),
                        options=pb.SearchOptions(top_k=2)), metadata=md, timeout=10)
        print(r.hits[0].video.id, r.hits[0].video.title)
        try:
            stub.GetVideo(pb.GetVideoRequest(video_id=1), timeout=10)
        except grpc.RpcError as e:
            print(e.code().name)
    """)
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert first == f"{video_id} the one"
    assert second == "UNAUTHENTICATED"
