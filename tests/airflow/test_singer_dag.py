"""The Singer example DAG (``dags/handoff_singer_csv.py``) as a user runs it: two
consecutive intervals with ``dag.test()`` against the moto server, the state carried.

The DAG file is parsed from the repository's ``dags/`` folder exactly as shipped (its
bucket and stack prefix come from ``HANDOFF_BUCKET`` / ``HANDOFF_STACK_PREFIX``, as in the
e2e deployment); the tap and the CSV target are installed into their venvs by the
project's own ``installs``. In the MWAA matrix this runs on each image's pins.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from af_helpers import dag_bag, list_keys, read_text, run_dag, task_states, xcom_value

REPO = Path(__file__).resolve().parents[2]
SINGER_DAG_FILE = REPO / "dags" / "handoff_singer_csv.py"
#: The (demo) credential in the project's config/tap-config.json: masked everywhere.
TAP_PASSWORD = "demo-tap-password-4f1d"
#: The DAG runs daily at 06:00 UTC; each run covers the day before it (interval timetable):
#: the run at 2024-01-02 06:00 processes [2024-01-01 06:00, 2024-01-02 06:00).
RUN_1 = datetime(2024, 1, 2, 6, tzinfo=timezone.utc)
RUN_2 = datetime(2024, 1, 3, 6, tzinfo=timezone.utc)

pytestmark = pytest.mark.usefixtures("airflow_db")


def _readings(bucket: str, key: str) -> list[str]:
    return [row["day"] for row in csv.DictReader(io.StringIO(read_text(bucket, key)))]


def test_the_singer_dag_runs_two_intervals_and_carries_its_state(
    monkeypatch: pytest.MonkeyPatch, bucket: str, stack: str, task_log
) -> None:
    from handoff_provider import dag_factory

    monkeypatch.setenv("HANDOFF_BUCKET", bucket)
    monkeypatch.setenv("HANDOFF_STACK_PREFIX", f"{stack}-")
    dag_factory._CACHE.clear()  # parse the file afresh with this test's bucket and stack
    bag = dag_bag(SINGER_DAG_FILE)
    assert bag.import_errors == {}
    dag = bag.dags["handoff_singer_csv"]
    singer_stack = f"{stack}-singer-csv"

    first = run_dag(dag, RUN_1)
    assert set(task_states(first).values()) == {"success"}, task_states(first)
    summary = xcom_value(first, "run")
    assert summary["data_interval"]["start"].startswith("2024-01-01T06:00:00")
    first_key = summary["run_key"]
    assert json.loads(read_text(bucket, f"{singer_stack}/last/state")) == {
        "bookmarks": {"readings": {"day": "2024-01-05"}}
    }

    second = run_dag(dag, RUN_2)
    assert set(task_states(second).values()) == {"success"}, task_states(second)
    summary = xcom_value(second, "run")
    assert summary["data_interval"]["start"].startswith("2024-01-02T06:00:00")
    second_key = summary["run_key"]
    assert second_key != first_key

    # The first run read from its interval's start; the second from the first's bookmark.
    runs = f"{singer_stack}/runs"
    assert _readings(bucket, f"{runs}/{first_key}/readings.csv") == [
        f"2024-01-0{day}" for day in range(1, 6)
    ]
    assert _readings(bucket, f"{runs}/{second_key}/readings.csv") == [
        "2024-01-06", "2024-01-07", "2024-01-08", "2024-01-09", "2024-01-10"
    ]  # fmt: skip
    assert json.loads(read_text(bucket, f"{singer_stack}/last/state")) == {
        "bookmarks": {"readings": {"day": "2024-01-10"}}
    }
    assert read_text(bucket, f"{singer_stack}/last/readings.csv") == read_text(
        bucket, f"{runs}/{second_key}/readings.csv"
    )
    log = task_log.text()
    assert "--start-date 2024-01-01" in log and "--start-date 2024-01-02" in log
    assert TAP_PASSWORD not in log
    assert not [k for k in list_keys(bucket, "") if not k.startswith(f"{singer_stack}/")]
