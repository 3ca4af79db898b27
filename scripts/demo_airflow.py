"""``make demo`` (Airflow): the Singer example DAG end to end with ``airflow dags test``.

1. starts a moto server on 127.0.0.1 (fake credentials, ``AWS_ENDPOINT_URL``) and creates
   the bucket (the helpers of ``scripts/demo.py``);
2. makes a temporary ``AIRFLOW_HOME`` with SQLite (``airflow db migrate``) whose DAG folder
   is this repository's ``dags/``;
3. ``airflow dags test handoff_singer_csv`` for two consecutive data intervals: each run
   pushes the config to SSM and ``files/`` to S3, runs tap | stats | target on the worker
   from the remote config, and archives its artifacts; the second run resumes from the
   state the first one published under ``last/``;
4. prints where everything went: the SSM parameter, ``files/``, ``runs/<key>/``, ``last/``.

``--keep`` keeps the temporary AIRFLOW_HOME (logs, SQLite DB, workspaces, venv cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import demo  # noqa: E402  (scripts/demo.py: moto server, bucket, listings)

DAG_ID = "handoff_singer_csv"
BUCKET = demo.BUCKET
STACK_PREFIX = "demo-"
STACK = f"{STACK_PREFIX}singer-csv"  # dags/handoff_singer_csv.py: prefix + "singer-csv"
INTERVALS = ("2024-01-02", "2024-01-03")  # logical dates: two daily intervals


def airflow_env(home: Path) -> dict[str, str]:
    """The environment of the Airflow commands: temporary home, SQLite, this repo's DAGs."""
    return {
        **os.environ,  # AWS_ENDPOINT_URL and the fake credentials of the moto server
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__HANDOFF__WORKSPACE_ROOT": str(home / "workspaces"),
        "AIRFLOW__HANDOFF__VENV_CACHE_DIR": str(home / "venv-cache"),
        "AIRFLOW__HANDOFF__KEEP_WORKSPACE": "True",
        "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
        # the aws_default connection: no keys, no endpoint: boto3's chain (the moto server)
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws"}),
        "HANDOFF_BUCKET": BUCKET,
        "HANDOFF_STACK_PREFIX": STACK_PREFIX,
    }


def airflow(*args: str, env: dict[str, str], quiet: bool = False) -> None:
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    print(f"\n$ airflow {' '.join(args)}", flush=True)
    result = subprocess.run(
        command,
        env=env,
        check=False,
        stdout=subprocess.DEVNULL if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
    )
    if result.returncode != 0:
        raise SystemExit(f"demo: `airflow {' '.join(args)}` exited with {result.returncode}")


def run_records() -> list[dict]:
    """``run.json`` of every archived run of the stack, oldest first."""
    import boto3

    s3 = boto3.client("s3", region_name=demo.REGION)
    prefix = f"{STACK}/runs/"
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].endswith("/run.json")
    ]
    records = [json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in keys]
    return sorted(records, key=lambda record: record.get("started_at") or "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="handoff Airflow demo on a local moto server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    args = parser.parse_args(argv)

    with demo.local_session("handoff-airflow-demo-", keep=args.keep, kept="AIRFLOW_HOME") as home:
        demo.create_bucket(BUCKET)
        env = airflow_env(home)
        print(f"AIRFLOW_HOME={home} (SQLite), DAGs from {ROOT / 'dags'}")
        demo.banner("airflow db migrate")
        airflow("db", "migrate", env=env, quiet=True)

        states = []
        for logical_date in INTERVALS:
            demo.banner(f"{DAG_ID}: data interval ending {logical_date}")
            airflow("dags", "test", DAG_ID, logical_date, env=env)
            states.append(demo.published_state(stack=STACK, bucket=BUCKET))

        records = run_records()
        if len(records) != len(INTERVALS) or any(r.get("status") != "success" for r in records):
            statuses = [r.get("status") for r in records]
            raise SystemExit(f"demo: expected {len(INTERVALS)} successful runs, got {statuses}")
        if states[0] is None or states[0] == states[1]:
            raise SystemExit("demo: the published state did not advance between the runs")
        print(f"\nstate after run 1: {demo._state_text(states[0])}")
        print(f"state after run 2: {demo._state_text(states[1])}")
        print("the second run resumed from the state the first one published under last/")
        demo.show_locations(stack=STACK, bucket=BUCKET)
        if args.keep:
            print(f"task logs : {home / 'logs'}")
        else:
            print("task logs : removed with the temporary AIRFLOW_HOME (run with --keep to look)")
    print("\ndemo (Airflow): OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
