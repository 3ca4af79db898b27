"""Benchmark: the files store's S3 sync against a naive sequential ``put_object`` loop.

Starts its own moto server (``ThreadedMotoServer`` on 127.0.0.1, in a child process so
that the server and the client don't share one GIL, as with a real endpoint), writes
1,000 files of 4 KB and 20 files of 5 MB, then prints:

* ``first_sync_ours`` / ``first_sync_naive`` and ``ratio=ours/naive`` (lower is better):
  our content sync (hash, list, parallel uploads through boto3's transfer manager) vs one
  ``put_object`` after another;
* ``resync_seconds`` and ``resync_puts`` for a second sync with nothing changed (target 0
  PUTs: one paginated listing, no per-object request).

Usage: ``.venv/bin/python bench/s3_sync.py [--small N] [--large N]``
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SMALL_SIZE = 4 * 1024
LARGE_SIZE = 5 * 1024 * 1024
WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject", "UploadPartCopy"}


def _serve(ready: Any, stop: Any) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    ready.put(server.get_host_and_port())
    stop.wait()
    server.stop()


def start_server() -> tuple[str, Any]:
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(ready, stop), daemon=True)
    process.start()
    host, port = ready.get(timeout=60)

    def shutdown() -> None:
        stop.set()
        process.join(timeout=10)

    return f"http://{host}:{port}", shutdown


def make_files(root: Path, small: int, large: int) -> int:
    total = 0
    for n in range(small):
        path = root / f"small/{n // 100:02d}/file-{n:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(SMALL_SIZE))
        total += SMALL_SIZE
    for n in range(large):
        path = root / f"large/file-{n:02d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(LARGE_SIZE))
        total += LARGE_SIZE
    return total


def naive_upload(client: Any, bucket: str, prefix: str, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = prefix + path.relative_to(root).as_posix()
            with open(path, "rb") as handle:
                client.put_object(Bucket=bucket, Key=key, Body=handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="number of 4 KB files")
    parser.add_argument("--large", type=int, default=20, help="number of 5 MB files")
    args = parser.parse_args(argv)

    for key, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    endpoint, shutdown = start_server()
    os.environ["AWS_ENDPOINT_URL"] = endpoint

    import boto3

    from handoff_provider.core.stores import Remote
    from handoff_provider.core.stores._aws import default_client_factory

    puts: list[str] = []

    def counting_factory() -> Any:
        base = default_client_factory()

        def make(service: str) -> Any:
            client = base(service)

            def count(model: Any, **_kwargs: Any) -> None:
                if model.name in WRITES:
                    puts.append(model.name)

            client.meta.events.register("before-parameter-build", count)
            return client

        return make

    try:
        bucket = "handoff-bench"
        client = boto3.client("s3")
        client.create_bucket(Bucket=bucket)
        with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
            root = Path(tmp) / "files"
            total = make_files(root, args.small, args.large)
            count = args.small + args.large
            print(
                f"files={count} ({args.small} x 4 KB + {args.large} x 5 MB, "
                f"{total / 1024 / 1024:.1f} MB) endpoint={endpoint}"
            )

            started = time.perf_counter()
            naive_upload(client, bucket, "naive/files/", root)
            naive = time.perf_counter() - started
            print(f"first_sync_naive={naive:.2f}s (sequential put_object)")

            remote = Remote("ours", bucket, client_factory=counting_factory())
            started = time.perf_counter()
            first = remote.files.push(root)
            ours = time.perf_counter() - started
            assert len(first.uploaded) == count, first
            print(f"first_sync_ours={ours:.2f}s ({first})")
            print(f"ratio={ours / naive:.3f} (first sync, ours/naive; lower is better)")

            puts.clear()
            started = time.perf_counter()
            again = remote.files.push(root)
            resync = time.perf_counter() - started
            assert len(again.unchanged) == count, again
            print(f"resync_seconds={resync:.2f}s ({again})")
            print(f"resync_puts={len(puts)}")
            print(f"resync_ratio={resync / naive:.3f} (no-change re-sync vs naive first upload)")
            return 0 if not puts else 1
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
