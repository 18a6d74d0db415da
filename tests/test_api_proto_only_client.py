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


def test_plain_protoc_client_filters_on_external_ids_and_metadata(api, tmp_path):  # noqa: F811
    """Asset identity from the .proto alone: ingest an upload with an external id and user
    metadata, look it up by the id, and filter searches and listings on both."""
    from services.store import register_video

    rng = np.random.default_rng(5)
    base = rng.standard_normal(DIM)
    for ext, reel in (("A", "1"), ("B", "2")):
        vid = add_video(api.store, unit(base + 0.1 * rng.standard_normal((2, DIM))))
        with api.store.ReadSession.begin() as s:
            from services.store import get_video

            row = get_video(s, vid)
        with api.store.Session.begin() as s:  # the same bytes again, now with an id
            register_video(s, uri=row.uri, content_sha256=row.content_sha256,
                           size_bytes=row.size_bytes, collection="c", external_id=ext,
                           user_metadata={"reel": reel})  # fmt: skip
    api.sync()
    gen = tmp_path / "gen"
    gen.mkdir()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
         f"--python_out={gen}", f"--grpc_python_out={gen}", "sora/v1/sora.proto"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    query = ",".join(f"{x:.7f}" for x in unit(base))
    script = textwrap.dedent(f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", {str(ROOT)!r})]
        sys.path.insert(0, {str(gen)!r})
        import grpc
        from sora.v1 import sora_pb2 as pb, sora_pb2_grpc as rpc
        assert "services" not in sys.modules
        stub = rpc.SoraIndexStub(grpc.insecure_channel({api.address!r}))
        md = [("authorization", "Bearer {TOKEN}")]
        def search(**o):
            r = stub.Search(pb.SearchRequest(vector=pb.VectorQuery(values=[{query}]),
                            options=pb.SearchOptions(top_k=5, **o)), metadata=md, timeout=10)
            return sorted(h.video.external_id for h in r.hits)
        print(search())
        print(search(user_metadata={{"reel": "2"}}))
        print(search(external_ids=["A"]))
        v = stub.GetVideo(pb.GetVideoRequest(external_id="B", collection="c"), metadata=md,
                          timeout=10)
        print(v.external_id, dict(v.user_metadata))
        r = stub.ListVideos(pb.ListVideosRequest(user_metadata={{"reel": "1"}}), metadata=md,
                            timeout=10)
        print([x.external_id for x in r.videos])
        up = stub.UploadVideo(iter([
            pb.UploadVideoRequest(metadata=pb.UploadMetadata(
                filename="x.mp4", original_path="C:/media/x.mp4",
                metadata=pb.VideoMetadata(external_id="X", collection="c",
                                          user_metadata={{"k": "v"}}))),
            pb.UploadVideoRequest(chunk=b"not really a video, but bytes"),
        ]), metadata=md, timeout=10)
        v = stub.GetVideo(pb.GetVideoRequest(video_id=up.video_id), metadata=md, timeout=10)
        print(v.external_id, v.original_name, v.original_path, dict(v.user_metadata))
        try:
            stub.UploadVideo(iter([
                pb.UploadVideoRequest(metadata=pb.UploadMetadata(filename="y.mp4",
                    metadata=pb.VideoMetadata(external_id="X", collection="c"))),
                pb.UploadVideoRequest(chunk=b"other bytes"),
            ]), metadata=md, timeout=10)
        except grpc.RpcError as e:
            print(e.code().name)
    """)
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "['A', 'B']",
        "['B']",
        "['A']",
        "B {'reel': '2'}",
        "['A']",
        "X x.mp4 C:/media/x.mp4 {'k': 'v'}",
        "ALREADY_EXISTS",
    ]
