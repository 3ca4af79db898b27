"""``make demo``: the Singer example end to end against a local AWS (moto), via the real CLI.

1. starts a moto server on 127.0.0.1 (fake credentials; boto3 finds it through
   ``AWS_ENDPOINT_URL``, exactly as it would find LocalStack) and creates a bucket;
2. ``handoff config push`` / ``handoff files push`` the example project
   (examples/projects/02_singer_csv) to SSM and S3;
3. ``handoff workspace install`` + ``handoff run -a`` from the REMOTE config (no ``-p``);
4. runs again in a fresh workspace (another machine, as far as it knows): the tap resumes
   from the state the first run published under ``last/``;
5. prints where everything lives: the SSM parameter, ``files/``, ``runs/<key>/``, ``last/``.

Every step is a function so the demo can be extended (e.g. the same project as an Airflow
DAG run). ``--keep`` keeps the work directory (workspaces, venv cache) for a look around.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "examples" / "projects" / "02_singer_csv"
STACK = "singer-demo"
BUCKET = "handoff-demo"
REGION = "us-east-1"


@dataclass
class LocalAws:
    """The moto server and the environment pointing boto3 at it."""

    endpoint: str
    server: Any

    def stop(self) -> None:
        self.server.stop()


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def start_local_aws() -> LocalAws:
    """A ThreadedMotoServer on loopback, fake credentials, ``AWS_ENDPOINT_URL`` set."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    for key, value in {
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ[key] = value
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    print(f"moto server: {endpoint} (AWS_ENDPOINT_URL)")
    return LocalAws(endpoint=endpoint, server=server)


@contextmanager
def local_session(prefix: str, *, keep: bool, kept: str) -> Iterator[Path]:
    """A temporary directory and the local AWS (:func:`start_local_aws`) for a demo: the
    server is stopped and the directory removed at the end, unless ``keep`` (then its
    path is printed as ``kept``)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    aws = start_local_aws()
    try:
        yield workdir
    finally:
        aws.stop()
        if keep:
            print(f"\n{kept} kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def create_bucket(bucket: str = BUCKET) -> None:
    import boto3

    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    print(f"bucket: s3://{bucket}")


def use_stack(workdir: Path, stack: str = STACK, bucket: str = BUCKET) -> None:
    """What a user exports: the stack, the bucket, and (here) a private venv cache."""
    os.environ["HANDOFF_STACK"] = stack
    os.environ["HANDOFF_BUCKET"] = bucket
    os.environ["HANDOFF_VENV_CACHE"] = str(workdir / "venv-cache")
    print(f"export HANDOFF_STACK={stack} HANDOFF_BUCKET={bucket}")


def handoff(*argv: str | Path) -> None:
    """Run one CLI command in-process (the same code as the ``handoff`` console script)."""
    from handoff_provider.core.cli import main as cli

    words = [str(arg) for arg in argv]
    shown = " ".join(_short(word) for word in words)
    print(f"\n$ handoff {shown}", flush=True)
    status = cli.main(words)
    sys.stderr.flush()
    if status != 0:
        raise SystemExit(f"demo: `handoff {shown}` exited with status {status}")


def _short(word: str) -> str:
    for base, name in ((ROOT, "."), (Path(tempfile.gettempdir()), "$TMP")):
        if word.startswith(str(base) + os.sep):
            return name + word[len(str(base)) :]
    return word


def push_project(project: Path = PROJECT) -> None:
    banner("push the project: config to SSM, files/ to S3")
    handoff("config", "push", "-p", project)
    handoff("files", "push", "-p", project)
    handoff("show", "commands")


def published_state(stack: str = STACK, bucket: str = BUCKET) -> str | None:
    """``last/state`` as published in S3 (None before the first successful run)."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    try:
        return s3.get_object(Bucket=bucket, Key=f"{stack}/last/state")["Body"].read().decode()
    except s3.exceptions.NoSuchKey:
        return None


def run_from_remote(workspace: Path, label: str) -> str:
    """``handoff run -w WS -a`` with no ``-p``: config from SSM, files from S3."""
    banner(f"{label}: run from the remote config, artifacts pushed (-a)")
    before = published_state()
    print(f"state in s3://{BUCKET}/{STACK}/last/state before: {_state_text(before)}")
    handoff("run", "-w", workspace, "-a")
    after = (workspace / "artifacts" / "state").read_text()
    print(f"state after ({_short(str(workspace))}/artifacts/state): {_state_text(after)}")
    return after


def _state_text(state: str | None) -> str:
    if state is None:
        return "(none yet)"
    try:
        return json.dumps(json.loads(state))
    except ValueError:
        return state.strip()


def show_locations(stack: str = STACK, bucket: str = BUCKET) -> None:
    import boto3

    from handoff_provider.core.stores import Remote

    banner("where things live")
    remote = Remote.from_options(stack=stack, bucket=bucket)
    ssm = boto3.client("ssm", region_name=REGION)
    parameter = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [remote.config.name]}]
    )["Parameters"][0]
    print(f"config : SSM parameter {remote.config.name} ({parameter['Type']}, {parameter['Tier']})")
    s3 = boto3.client("s3", region_name=REGION)

    def listing(prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", [])]

    files = listing(f"{stack}/files/")
    print(f"files  : s3://{bucket}/{stack}/files/ ({len(files)} objects)")
    runs = sorted({key.split("/", 1)[0] for key in listing(f"{stack}/runs/")})
    for run_key in runs:
        print(f"run    : s3://{bucket}/{stack}/runs/{run_key}/")
    last = listing(f"{stack}/last/")
    print(f"last   : s3://{bucket}/{stack}/last/ ({', '.join(last)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="handoff demo on a local moto server")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    with local_session("handoff-demo-", keep=args.keep, kept="work directory") as workdir:
        create_bucket()
        use_stack(workdir)
        push_project()

        banner("install the venvs from the remote config")
        first_ws = workdir / "workspace-1"
        handoff("workspace", "install", "-w", first_ws)

        first = run_from_remote(first_ws, "run 1")
        second = run_from_remote(workdir / "workspace-2", "run 2 (fresh workspace)")
        if first == second:
            raise SystemExit("demo: the state did not advance between the runs")
        print("\nthe second run resumed from the state the first one published under last/")
        show_locations()
    print("\ndemo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
