"""``handoff files push`` against ``aws s3 sync``: whole processes, the same moto server.

What a user would otherwise run to publish ``PROJECT/files/`` is ``aws s3 sync``. Both run
as the real console scripts (``handoff`` of this venv; ``aws`` from awscli installed with
uv in its own venv under ``bench/.cache/``), against one moto server started here (in a
child process, so that the server doesn't share the GIL of the client), over
1,000 files of 4 KB and 20 files of 5 MB:

* first sync, into an empty prefix: ``ratio_first=`` (target <= 1.0);
* re-sync with nothing changed: ``ratio_resync=`` (target <= 0.5) and the requests each
  made (``resync_writes=`` target 0; handoff also reads no object metadata: HEADs 0).
  For scale, ``ratio_floor=``: a bare botocore process that only creates an S3 client and
  lists the prefix (what any botocore-based re-sync must do, hashing and comparing
  nothing) against the same ``aws s3 sync``; and ``ratio_server=``: the server's own time
  to answer that listing (unsigned ``GET`` requests from this process: no client start,
  no parsing), the part no client can cut. It does so one step after the other with
  botocore's defaults; a re-sync can come a little under it only by doing its own work
  while the server answers (handoff walks the local files then) and by parsing the
  listing's timestamps faster (``core/aws/clients.py``): the server's time to list the
  objects, and botocore's start, stay.

Rounds (5 by default) alternate which tool goes first; medians are printed. Every sync of
every round goes to a bucket of its own: moto scans all of a bucket's keys to list one
prefix (S3 doesn't), so in a shared bucket each round's objects would slow the listings
of the later ones. Requests are counted by a WSGI wrapper around moto's own app
(``/__bench__/counts``).

Usage: ``python bench/s3_sync.py [--rounds 5] [--small N] [--large N]``
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from _util import REPO, clean_env, compile_bytecode, handoff_script

SMALL_SIZE = 4 * 1024
LARGE_SIZE = 5 * 1024 * 1024
CACHE = REPO / "bench" / ".cache"
BUCKET = "handoff-bench"  # the prefix of the buckets, one per tool and round
STACK = "bench"
COUNTS_PATH = "/__bench__/counts"
#: The least a botocore-based no-change re-sync does: an S3 client and one listing.
FLOOR = """
import sys
import botocore.session
client = botocore.session.get_session().create_client("s3")
pages = client.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2])
print(sum(len(page.get("Contents", [])) for page in pages))
"""


# ------------------------------------------------------------------- moto server


class CountingApp:
    """Counts S3 requests by kind (``PUT``/``POST`` are writes) before moto serves them."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with self.lock:
                body = json.dumps(self.counts).encode()
                if "reset" in environ.get("QUERY_STRING", ""):
                    self.counts.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        method = environ.get("REQUEST_METHOD", "")
        query = environ.get("QUERY_STRING", "")
        kind = method
        if method == "GET" and (
            "list-type" in query or environ.get("PATH_INFO", "").count("/") < 2
        ):
            kind = "LIST"
        with self.lock:
            self.counts[kind] += 1
        return self.app(environ, start_response)


def _serve(ready: Any, stop: Any) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = CountingApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ready.put(server.server_address[:2])
    stop.wait()
    server.shutdown()


def start_server() -> tuple[str, Callable[[], None]]:
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(ready, stop), daemon=True)
    process.start()
    host, port = ready.get(timeout=60)

    def shutdown() -> None:
        stop.set()
        process.join(timeout=10)

    return f"http://{host}:{port}", shutdown


def counts(endpoint: str, *, reset: bool = False) -> Counter[str]:
    url = endpoint + COUNTS_PATH + ("?reset=1" if reset else "")
    with urllib.request.urlopen(url, timeout=30) as response:  # loopback only
        return Counter(json.loads(response.read()))


# ----------------------------------------------------------------------- setup


def aws_cli() -> str:
    """``aws`` from awscli in ``bench/.cache/awscli`` (installed with uv on first use)."""
    venv = CACHE / "awscli"
    script = venv / "bin" / "aws"
    if script.exists():
        return str(script)
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        raise SystemExit("uv not found next to the interpreter: run make venv")
    print(f"installing awscli into {venv} (once)", flush=True)
    subprocess.run([str(uv), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(
        [str(uv), "pip", "install", "-q", "--compile-bytecode", "-p", str(venv), "awscli"],
        check=True,
    )
    return str(script)


def make_buckets(endpoint: str, rounds: int) -> dict[tuple[str, int], str]:
    """An empty bucket for each tool and round (made here, untimed)."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    buckets = {}
    for name in ("handoff", "aws"):
        for number in range(rounds):
            buckets[name, number] = f"{BUCKET}-{name}-{number}"
            client.create_bucket(Bucket=buckets[name, number])
    return buckets


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


def server_listing(endpoint: str, bucket: str, prefix: str) -> float:
    """Seconds the server takes to answer every page of the listing of ``prefix``, asked
    by this process with plain ``GET`` requests (moto doesn't check signatures)."""
    query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
    started = time.perf_counter()
    while True:
        url = f"{endpoint}/{bucket}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=60) as response:  # loopback only
            body = response.read()
        token = re.search(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if token is None:
            return time.perf_counter() - started
        query["continuation-token"] = html.unescape(token.group(1).decode())


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-2000:] + done.stderr[-3000:])
        raise SystemExit(f"{argv[0]} failed (exit {done.returncode})")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small", type=int, default=1000, help="number of 4 KB files")
    parser.add_argument("--large", type=int, default=20, help="number of 5 MB files")
    args = parser.parse_args(argv)

    compile_bytecode()
    aws = aws_cli()
    handoff = handoff_script()
    endpoint, shutdown = start_server()
    env = clean_env(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    env.pop("AWS_PROFILE", None)
    try:
        buckets = make_buckets(endpoint, args.rounds)
        with tempfile.TemporaryDirectory(prefix="handoff-bench-sync-") as tmp:
            project = Path(tmp) / "project"
            total = make_files(project / "files", args.small, args.large)
            print(
                f"files={args.small + args.large} ({args.small} x 4 KB + {args.large} x 5 MB, "
                f"{total / 1024 / 1024:.1f} MB) endpoint={endpoint} rounds={args.rounds}"
            )

            def ours(bucket: str) -> list[str]:
                command = [handoff, "files", "push", "-p", str(project), "--stack", STACK]
                return [*command, "--bucket", bucket]

            def theirs(bucket: str) -> list[str]:
                target = f"s3://{bucket}/{STACK}/files/"
                return [
                    aws,
                    "s3",
                    "sync",
                    str(project / "files"),
                    target,
                    "--endpoint-url",
                    endpoint,
                ]

            def floor(bucket: str) -> list[str]:
                return [sys.executable, "-c", FLOOR, bucket, f"{STACK}/files/"]

            tools = {"handoff": ours, "aws": theirs}
            first: dict[str, list[float]] = {name: [] for name in tools}
            resync: dict[str, list[float]] = {name: [] for name in [*tools, "floor", "server"]}
            requests: dict[str, Counter[str]] = {}
            for number in range(args.rounds):
                order = list(tools) if number % 2 == 0 else list(reversed(tools))
                for name in order:
                    first[name].append(timed(tools[name](buckets[name, number]), env))
                print(
                    f"first sync round {number + 1}: handoff={first['handoff'][-1]:.2f}s "
                    f"aws={first['aws'][-1]:.2f}s",
                    flush=True,
                )
            resync_tools = {**tools, "floor": floor}
            for number in range(args.rounds + 2):
                order = list(resync_tools)
                order = order if number % 2 == 0 else list(reversed(order))
                for name in order:
                    counts(endpoint, reset=True)
                    bucket = buckets["handoff" if name == "floor" else name, 0]
                    resync[name].append(timed(resync_tools[name](bucket), env))
                    requests[name] = counts(endpoint)
                resync["server"].append(
                    server_listing(endpoint, buckets["handoff", 0], f"{STACK}/files/")
                )
                print(
                    f"re-sync round {number + 1}: handoff={resync['handoff'][-1]:.2f}s "
                    f"aws={resync['aws'][-1]:.2f}s floor={resync['floor'][-1]:.2f}s "
                    f"server={resync['server'][-1]:.2f}s",
                    flush=True,
                )
    finally:
        shutdown()

    med = {name: statistics.median(values) for name, values in first.items()}
    med_re = {name: statistics.median(values) for name, values in resync.items()}
    print(f"first_sync_handoff_s={med['handoff']:.2f} first_sync_aws_s={med['aws']:.2f}")
    print(
        f"resync_handoff_s={med_re['handoff']:.2f} resync_aws_s={med_re['aws']:.2f} "
        f"resync_floor_s={med_re['floor']:.2f} resync_server_s={med_re['server']:.2f}"
    )
    for name, seen in requests.items():
        writes = seen["PUT"] + seen["POST"]
        print(
            f"resync_requests_{name}: lists={seen['LIST']} heads={seen['HEAD']} "
            f"gets={seen['GET']} writes={writes}"
        )
    writes = requests["handoff"]["PUT"] + requests["handoff"]["POST"]
    print(f"ratio_first={med['handoff'] / med['aws']:.2f}  (handoff / aws s3 sync; target <= 1.0)")
    print(f"ratio_resync={med_re['handoff'] / med_re['aws']:.2f}  (target <= 0.5)")
    print(
        f"ratio_floor={med_re['floor'] / med_re['aws']:.2f}  (a bare botocore client + listing "
        "process / aws s3 sync: what any botocore-based re-sync costs before its own work)"
    )
    print(
        f"ratio_server={med_re['server'] / med_re['aws']:.2f}  (the server answering the "
        "listing, asked from this process / aws s3 sync: what no client can cut)"
    )
    print(f"resync_writes={writes}  (target 0)")
    return 0 if writes == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
