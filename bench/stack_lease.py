"""Benchmark: what the stack lease costs a whole ``handoff run -a`` process.

Starts its own moto server (in a child process, logging every request it serves), then
runs the CLI as a user would, alternating ``handoff run -a`` (with the lease) and
``handoff run -a --no-lock`` (without), on a small project, and prints:

* ``with_lease_seconds`` / ``without_lease_seconds`` (median wall time of the process)
  and ``ratio=with/without`` (the target is close to 1);
* ``lease_round_trips_start`` / ``lease_round_trips_end``: the S3 requests on
  ``<stack>/lease.json`` a run makes before its first other request, and from the start
  of its archive (its first request under ``runs/``) on (target: at most 2 and 2),
  ``lease_round_trips_between`` (heartbeats, 0 for a run shorter than TTL/3) and
  ``extra_requests`` (all requests of a run with the lease minus without it).

Usage: ``.venv/bin/python bench/stack_lease.py [--runs N]``
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HANDOFF = Path(sys.executable).with_name("handoff")


def _serve(ready: Any, stop: Any, log_path: str) -> None:
    handler = logging.FileHandler(log_path)
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.INFO)
    werkzeug.addHandler(handler)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    ready.put(server.get_host_and_port())
    stop.wait()
    server.stop()


def start_server(log_path: Path) -> tuple[str, Any]:
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(ready, stop, str(log_path)), daemon=True)
    process.start()
    host, port = ready.get(timeout=60)

    def shutdown() -> None:
        stop.set()
        process.join(timeout=10)

    return f"http://{host}:{port}", shutdown


def requests_since(log_path: Path, offset: int) -> tuple[list[str], int]:
    """The request lines ("PUT /bucket/key") logged after ``offset``; the new offset."""
    data = log_path.read_bytes()
    lines = []
    for line in data[offset:].decode(errors="replace").splitlines():
        if '"' in line:
            lines.append(line.split('"')[1].rsplit(" HTTP/", 1)[0])
    return lines, len(data)


def lease_counts(requests: list[str]) -> tuple[int, int, int]:
    """(lease requests before the first other one, from the archive's first request on,
    between the two)."""
    is_lease = ["/lease.json" in request for request in requests]
    others = [index for index, lease in enumerate(is_lease) if not lease]
    archive = [index for index, request in enumerate(requests) if "/runs/" in request]
    if not others or not archive:
        return sum(is_lease), 0, 0
    start = sum(is_lease[: others[0]])
    end = sum(is_lease[archive[0] :])
    return start, end, sum(is_lease) - start - end


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lease-") as tmp:
        root = Path(tmp)
        log_path = root / "requests.log"
        log_path.touch()
        endpoint, shutdown = start_server(log_path)
        try:
            return _bench(root, endpoint, log_path, args.runs)
        finally:
            shutdown()


def _bench(root: Path, endpoint: str, log_path: Path, runs: int) -> int:
    import boto3

    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "HANDOFF_STACK": "bench",
        "HANDOFF_BUCKET": "bench-lease",
    }
    for name in ("AWS_PROFILE", "HANDOFF_LOCK_WAIT", "HANDOFF_LOCK_TTL"):
        env.pop(name, None)
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket="bench-lease")
    project = root / "project"
    project.mkdir()
    (project / "project.yml").write_text(
        textwrap.dedent(
            """\
            tasks:
              - name: count
                pipeline:
                  - command: sh
                    args: "-c 'expr $(cat artifacts/state 2>/dev/null || echo 0) + 1'"
            """
        )
    )
    timings: dict[str, list[float]] = {"with": [], "without": []}
    counts: list[tuple[int, int, int]] = []
    totals: dict[str, list[int]] = {"with": [], "without": []}
    _, offset = requests_since(log_path, 0)
    for n in range(2 * runs + 1):
        kind = "with" if n % 2 else "without"
        argv = [str(HANDOFF), "run", "-w", str(root / "ws"), "-p", str(project), "-a"]
        if kind == "without":
            argv.append("--no-lock")
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        time.sleep(0.2)  # let the server flush its request log
        requests, offset = requests_since(log_path, offset)
        if n == 0:
            continue  # warm-up (first run creates the stack's objects)
        timings[kind].append(elapsed)
        totals[kind].append(len(requests))
        if kind == "with":
            counts.append(lease_counts(requests))
    with_s = statistics.median(timings["with"])
    without_s = statistics.median(timings["without"])
    print(f"runs={runs} (each kind; whole `handoff run -a` processes)")
    print(f"with_lease_seconds={with_s:.3f}")
    print(f"without_lease_seconds={without_s:.3f}")
    print(f"lease_round_trips_start={max(c[0] for c in counts)}")
    print(f"lease_round_trips_end={max(c[1] for c in counts)}")
    print(f"lease_round_trips_between={max(c[2] for c in counts)}")
    extra = statistics.median(totals["with"]) - statistics.median(totals["without"])
    print(f"extra_requests={extra:g}")
    print(f"ratio={with_s / without_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
