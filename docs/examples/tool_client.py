"""A tool's side of the Sora video index: copy this file and change what your tool needs.

    python docs/examples/tool_client.py FOLDER --collection dailies --out dailies.parquet
        [--address 127.0.0.1:50051] [--token T]        (defaults: $SORA_ADDRESS, $SORA_API_TOKEN)

1. ingest: upload every video under FOLDER, each with an external id (its path under
   FOLDER, the id your asset database knows it by) and user metadata. Running it again
   is safe: the same file under the same id is the same video (its metadata updated),
   never a second one; another file under a taken id is refused (ALREADY_EXISTS).
2. wait: poll the ingest jobs until every video is READY (or FAILED, with its reason).
3. search: for the first asset, look it up by external id and find the assets like it,
   only among this collection and this tool's videos (a user metadata filter).
4. export: page through every vector of the collection (ListEmbeddings) into parquet.

It prints one JSON object with what it did. SoraClient retries UNAVAILABLE for the calls
that are safe to repeat (ingest included: it is idempotent) and gives every call a
deadline; see services/api/client.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import grpc

from services.api.client import RetryPolicy, SoraClient
from services.api.export import export_embeddings
from sora_encoder.files import find_videos

TOOL = {"ingested_by": "tool_client"}  # user metadata this tool puts on its videos


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--collection", required=True)
    p.add_argument("--out", required=True, type=Path, help="the parquet file to write")
    p.add_argument("--address", default=os.environ.get("SORA_ADDRESS", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("SORA_API_TOKEN"))
    p.add_argument("--wait-timeout", type=float, default=600.0)
    args = p.parse_args(argv)

    retry = RetryPolicy(max_attempts=6, initial_backoff_s=0.5, max_backoff_s=10.0)
    with SoraClient(args.address, token=args.token, timeout=30.0, retry=retry) as client:
        client.wait_until_serving(timeout=60)

        # 1. ingest, each file under its external id
        jobs, known, refused = {}, {}, {}
        for path in find_videos([args.folder]):
            external_id = path.relative_to(args.folder).as_posix()
            try:
                r = client.upload(path, collection=args.collection, external_id=external_id,
                                  user_metadata=TOOL)  # fmt: skip
            except grpc.RpcError as exc:  # e.g. ALREADY_EXISTS: another file holds the id
                refused[external_id] = f"{exc.code().name}: {exc.details()}"
                continue
            (jobs if r.job_id else known)[external_id] = r.job_id or r.video_id

        # 2. wait for the new videos
        finished = client.wait_for_jobs(jobs.values(), timeout=args.wait_timeout)
        failed = {j.video_id: j.error for j in finished if j.error}

        # 3. look an asset up by its external id, and search among this tool's videos
        ids = sorted([*jobs, *known])
        similar: list[dict] = []
        if ids:
            video = client.get_video_by_external_id(ids[0], collection=args.collection)
            # A video is searchable once the server's index sync has seen it, about a
            # second after its job SUCCEEDED: poll until every other asset is there.
            others = min(5, len([i for i in ids if i != ids[0]]) - len(failed))
            deadline = time.monotonic() + 30
            while True:
                hits = client.search(
                    video_id=video.id, top_k=5, exclude_query_video=True,
                    collection=args.collection, user_metadata=TOOL,
                ).hits  # fmt: skip
                if len(hits) >= others or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            similar = [{"external_id": h.video.external_id, "score": round(h.score, 4)}
                       for h in hits]  # fmt: skip

        # 4. export every vector of the collection, a page at a time
        summary = export_embeddings(
            client.iter_embeddings(collection=args.collection), args.out,
            fmt="parquet", level="segment",
        )  # fmt: skip

    print(json.dumps({
        "queued": len(jobs), "known": len(known), "refused": refused, "failed": failed,
        "query": ids[0] if ids else None, "similar": similar,
        "exported_rows": summary.rows, "exported_videos": summary.videos,
        "model_version": summary.model_version, "out": str(args.out),
    }, indent=2))  # fmt: skip
    return 1 if refused or failed else 0


if __name__ == "__main__":
    sys.exit(main())
