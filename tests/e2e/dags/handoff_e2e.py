"""Airflow DAGs of the end-to-end tests (tests/e2e): a try that outlives its execution_timeout and
a stage that fails. Stack names get ``HANDOFF_STACK_PREFIX``, the bucket is
``HANDOFF_BUCKET`` (set by the test harness)."""

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from handoff_provider._compat import DAG
from handoff_provider.operators.run import HandoffRunOperator

PROJECTS = Path(__file__).resolve().parents[1] / "projects"
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
