"""The service as users run it: `sora serve` and `sora worker` in their own processes on a
real port, driven by the `sora` CLI (the gRPC client), on both stacks:

    embedded:        `sora serve --embedded` (SQLite, SQLite broker, a worker child)
    redis-postgres:  `sora serve` + `sora worker`, PostgreSQL + a Redis of the test's own

A copy of a video (trimmed to its middle, cropped, scaled, re-encoded at low quality) must
find the original first, with the matched ranges in both: query 0-12 s = target 8-20 s."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import _empty_database
from tests.media_factory import ffmpeg_run, make_video
from tests.workers_harness import ROOT, IngestEnv, RedisServer, wait_for

pytestmark = pytest.mark.slow

TOKEN = "e2e-token"
SCENES = (
    "testsrc2=size=320x240:rate=25",
    "mandelbrot=size=320x240:rate=25",
    "life=size=320x240:rate=25:mold=10:ratio=0.1",
    "smptebars=size=320x240:rate=25",
    "cellauto=size=320x240:rate=25:rule=110",
    "sierpinski=size=320x240:rate=25",
)


def make_scenes(path: Path, scene_s: float = 4.0) -> Path:
    """One video of distinct 4-s scenes, one per lavfi source, cut end to end."""
    inputs, chains = [], []
    for n, src in enumerate(SCENES):
        inputs += ["-f", "lavfi", "-t", str(scene_s), "-i", src]
        chains.append(f"[{n}:v]format=yuv420p,setsar=1[s{n}]")
    graph = ";".join(chains) + ";" + "".join(f"[s{n}]" for n in range(len(SCENES)))
    graph += f"concat=n={len(SCENES)}:v=1[v]"
    ffmpeg_run([*inputs, "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264",
                "-pix_fmt", "yuv420p", str(path)])  # fmt: skip
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    lib = d / "library"
    lib.mkdir()
    orig = make_scenes(lib / "orig.mp4")
    # A moving zone plate drawn with geq: the `zoneplate` source is ffmpeg 6.1+ only, and
    # the suite runs on ffmpeg 4.4 and newer (see sora_encoder/media/binary.py).
    zone = "geq=lum='128+127*cos((X*X+Y*Y)/300+8*T)':cb=128:cr=128"
    make_video(lib / "zoneplate.mp4", duration_s=8, source="nullsrc", vf=zone, size=(320, 240))
    make_video(lib / "gradients.mp4", duration_s=8, source="gradients", size=(320, 240))
    server_side = make_video(lib / "rgb.mp4", duration_s=8, source="rgbtestsrc", size=(320, 240))
    copy = d / "copy.mp4"
    ffmpeg_run(["-ss", "8", "-t", "12", "-i", str(orig), "-vf", "crop=iw*0.9:ih*0.9,scale=240:180",
                "-c:v", "libx264", "-crf", "35", str(copy)])  # fmt: skip
    outside = make_video(d / "outside.mp4", duration_s=2)
    link = lib / "sneaky.mp4"
    link.symlink_to(outside)
    return {"lib": lib, "orig": orig, "copy": copy, "server_side": server_side,
            "outside": outside, "link": link}  # fmt: skip


class Service(IngestEnv):
    server: subprocess.Popen | None = None
    address: str = ""

    def start_server(self, *args: str) -> None:
        log = open(self.home / "server.log", "wb")  # noqa: SIM115
        self.server = subprocess.Popen(
            [sys.executable, "-m", "sora_cli.main", "serve", "--port", "0", *args],
            cwd=ROOT, env=self.environ(), stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        lines: list[str] = []

        def address() -> str | None:
            lines.append(self.server.stdout.readline())
            m = re.search(r"serving on (\S+:\d+)", lines[-1])
            assert lines[-1] or self.server.poll() is None, "".join(lines)
            return m.group(1) if m else None

        self.address = wait_for(address, 120, "the server to print its address")

    def cli(self, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
        env = self.environ()
        env.pop("SORA_API_TOKEN", None)
        if token:
            env["SORA_API_TOKEN"] = token
        return subprocess.run(
            [sys.executable, "-m", "sora_cli.main", *args, "--address", self.address],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
        self.stop_workers()


@pytest.fixture(scope="module", params=["embedded", "redis-postgres"])
def service(request, tmp_path_factory, media):
    tmp = tmp_path_factory.mktemp(request.param)
    home = tmp / "home"
    home.mkdir()
    backend = "sqlite" if request.param == "embedded" else "postgresql"
    with _empty_database(backend, tmp, request) as db_url:
        redis = None
        if request.param == "embedded":
            svc = Service(home, db_url, f"sqla+sqlite:///{home / 'broker.db'}")
        else:
            redis = RedisServer(tmp)
            redis.start()
            svc = Service(home, db_url, redis.url)
        svc.extra_env = {"SORA_API_TOKEN": TOKEN, "SORA_ALLOWED_ROOTS": str(media["lib"])}
        try:
            if request.param == "embedded":
                svc.start_server("--embedded", "--data-dir", str(home))
            else:
                svc.start_server()
                svc.start_worker()
            yield svc
        finally:
            svc.stop()
            if redis is not None:
                redis.kill()


@pytest.fixture(scope="module")
def ingested(service, media) -> dict[str, int]:
    """Upload the library (the default), and one file by server-side path."""
    uploads = [media["orig"], media["lib"] / "zoneplate.mp4", media["lib"] / "gradients.mp4"]
    res = service.cli("ingest", *map(str, uploads), "--wait", "--timeout", "150")
    assert res.returncode == 0, res.stdout + res.stderr + service.worker_logs()
    assert "3 file(s): 3 queued" in res.stdout
    res = service.cli("ingest", "--server-path", str(media["server_side"]), "--wait")
    assert res.returncode == 0, res.stdout + res.stderr
    res = service.cli("list", "--json")
    videos = [json.loads(line) for line in res.stdout.splitlines()]
    assert {v["status"] for v in videos} == {"READY"}, videos
    ids = {v["title"]: int(v["id"]) for v in videos}
    assert set(ids) == {"orig", "zoneplate", "gradients", "rgb"}
    # Search serves what SQL holds once the index keeper has caught up (about a second).
    wait_for(lambda: len(search(service, "--id", str(ids["rgb"]))) == 3, 30, "the index")
    return ids


def search(service, *args: str) -> list[dict]:
    res = service.cli("search", *args, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_a_transformed_copy_finds_its_original_and_the_matching_range(service, media, ingested):
    hits = search(service, "--clip", str(media["copy"]))
    assert hits[0]["video_id"] == ingested["orig"], hits
    top = hits[0]
    assert top["aligned"]
    # the copy is 8-20 s of the original: placed by frames, to within a frame or two
    assert top["start_s"] == pytest.approx(8.0, abs=0.5)
    assert top["end_s"] == pytest.approx(20.0, abs=0.5)
    assert (top["query_start_s"], top["query_end_s"]) == pytest.approx((0.0, 12.0), abs=0.5)
    seg = search(service, "--clip", str(media["copy"]), "--level", "segment", "--top-k", "3")
    assert {h["video_id"] for h in seg} == {ingested["orig"]}
    assert sorted((h["start_s"], h["query_start_s"]) for h in seg) == [
        (8.0, 0.0), (12.0, 4.0), (16.0, 8.0)]  # fmt: skip


def test_search_by_id_and_by_vector(service, media, ingested, tmp_path):
    by_id = search(service, "--id", str(ingested["orig"]))
    assert ingested["orig"] not in {h["video_id"] for h in by_id}  # the query itself is left out
    assert len(by_id) == 3
    vec = tmp_path / "copy.json"
    emb = subprocess.run(
        [sys.executable, "-m", "sora_cli.main", "embed", "--json", str(media["copy"])],
        cwd=ROOT, env=service.environ(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert emb.returncode == 0, emb.stderr
    vec.write_text(emb.stdout)
    hits = search(service, "--vector-file", str(vec))
    assert hits[0]["video_id"] == ingested["orig"]
    assert all(h["score"] >= hits[-1]["score"] for h in hits)


def test_paths_outside_the_allowed_roots_are_refused(service, media, ingested):
    for path in (media["outside"], media["link"], media["lib"] / ".." / media["outside"].name):
        res = service.cli("ingest", "--server-path", str(path))
        assert res.returncode == 1
        assert "PERMISSION_DENIED" in res.stderr, res.stderr
    res = service.cli("list", "--json")
    assert len(res.stdout.splitlines()) == 4  # nothing was registered


def test_every_call_needs_the_token(service, ingested):
    for args in (("list",), ("get", str(ingested["orig"])), ("search", "--id", "1")):
        res = service.cli(*args, token=None)
        assert res.returncode == 1 and "UNAUTHENTICATED" in res.stderr, res.stderr
        res = service.cli(*args, token="wrong")
        assert res.returncode == 1 and "UNAUTHENTICATED" in res.stderr, res.stderr


def test_unknown_video_is_not_found(service, ingested):
    res = service.cli("get", "999999")
    assert res.returncode == 1 and "NOT_FOUND" in res.stderr


def test_deleted_video_leaves_search_at_once(service, media, ingested):
    victim = ingested["gradients"]
    before = {h["video_id"] for h in search(service, "--clip", str(media["copy"]))}
    assert victim in before
    res = service.cli("delete", str(victim))
    assert res.returncode == 0, res.stderr
    after = {h["video_id"] for h in search(service, "--clip", str(media["copy"]))}
    assert victim not in after and ingested["orig"] in after
