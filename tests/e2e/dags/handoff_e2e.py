"""Airflow DAGs of the end-to-end tests (tests/e2e): a try that outlives its execution_timeout,
a stage that fails, and the Singer example as a factory DAG to backfill. Stack names get
``HANDOFF_STACK_PREFIX``, the bucket is ``HANDOFF_BUCKET`` (set by the test harness)."""

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from handoff_provider._compat import DAG
from handoff_provider.dag_factory import handoff_dag
from handoff_provider.operators.run import HandoffRunOperator

PROJECTS = Path(__file__).resolve().parents[1] / "projects"
SINGER = Path(__file__).resolve().parents[3] / "examples" / "projects" / "02_singer_csv"
PREFIX = os.environ.get("HANDOFF_STACK_PREFIX", "")
BUCKET = os.environ.get("HANDOFF_BUCKET", "handoff-e2e")
START = datetime(2024, 1, 1, tzinfo=timezone.utc)

with DAG(
    "handoff_e2e_timeout",
    schedule=None,
    start_date=START,
    max_active_runs=1,  # runs in trigger order: the good one publishes last/ first
    params={"seconds": "0"},
    default_args={"retries": 0},
):
    HandoffRunOperator(
        task_id="run",
        project_dir=PROJECTS / "sleeper",
        stack=f"{PREFIX}e2e-timeout",
        bucket=BUCKET,
        vars={"seconds": "{{ params.seconds }}"},
        # Generous: on a busy 2-core machine the good try alone may take seconds.
        execution_timeout=timedelta(seconds=60),
    )

with DAG(
    "handoff_e2e_failing",
    schedule=None,
    start_date=START,
    default_args={"retries": 0},
):
    HandoffRunOperator(
        task_id="run",
        project_dir=PROJECTS / "failing",
        stack=f"{PREFIX}e2e-failing",
        bucket=BUCKET,
    )

# The Singer example with the factory's defaults (its project schedule, daily 06:00 UTC),
# each run reading exactly its data interval: the tap starts after the bookmark of the
# state the run restored (else at the interval's start) and stops before the interval's end.
# end_date in the past: unpausing starts no scheduled run, only the backfill's.
backfill_dag = handoff_dag(
    SINGER,
    dag_id="handoff_e2e_backfill",
    stack=f"{PREFIX}e2e-backfill",
    bucket=BUCKET,
    vars={"end_date": "{{ data_interval_end | ds }}"},
    end_date=datetime(2024, 1, 10, tzinfo=timezone.utc),
    default_args={"retries": 0},
)
