"""The example DAG ``dags/example_s3_drop.py`` run with ``dag.test()`` against the moto
server: the sensor finds the drop, the run sums it, uploads the totals and the flag, and
moves the drop to the archive (on both Airflow lines)."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from af_helpers import list_keys, read_text, run_dag, s3, task_states, xcom_value

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "example_s3_drop.py"

pytestmark = [pytest.mark.airflow, pytest.mark.usefixtures("airflow_db")]


def load_example_dag(monkeypatch: pytest.MonkeyPatch, bucket: str, prefix: str) -> Any:
    """Import the DAG file as Airflow would, with this test's bucket and stack prefix."""
    monkeypatch.setenv("HANDOFF_BUCKET", bucket)
    monkeypatch.setenv("HANDOFF_STACK_PREFIX", prefix)
    spec = importlib.util.spec_from_file_location(f"example_s3_drop_{prefix[:-1]}", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_s3_drop_dag(monkeypatch: pytest.MonkeyPatch, bucket: str, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    module = load_example_dag(monkeypatch, bucket, prefix)
    stack = f"{prefix}s3-drop"
    assert stack == module.STACK
    dag = module.dag
    assert dag.dag_id == "handoff_s3_drop"
    assert [t.task_id for t in dag.tasks] == ["watch", "process"]
    dag.get_task("watch").min_age = None  # the example waits 30 s for writers to finish

    client = s3()
    client.put_object(Bucket=bucket, Key=f"{stack}/inbox/day1.csv", Body=b"id,amount\n1,2.5\n2,4\n")
    client.put_object(Bucket=bucket, Key=f"{stack}/inbox/readme.txt", Body=b"not a drop")

    dag_run = run_dag(dag, datetime(2024, 3, 1, 5, tzinfo=timezone.utc))

    assert task_states(dag_run) == {"watch": "success", "process": "success"}
    (match,) = xcom_value(dag_run, "watch")
    assert match["key"] == f"{stack}/inbox/day1.csv"
    summary = xcom_value(dag_run, "process")
    run_key = summary["run_key"]
    assert summary["status"] == "success"
    assert summary["transfers"]["flags"] == [
        {"uri": f"s3://{bucket}/{stack}/outbox/_SUCCESS.flg", "status": "written"}
    ]
    assert list_keys(bucket, f"{stack}/outbox/") == [
        f"{stack}/outbox/_SUCCESS.flg",
        f"{stack}/outbox/totals-{run_key}.csv",
    ]
    assert read_text(bucket, f"{stack}/outbox/totals-{run_key}.csv") == (
        "file,rows,total\nday1.csv,2,6.50\nALL,2,6.50\n"
    )
    assert list_keys(bucket, f"{stack}/inbox/") == [f"{stack}/inbox/readme.txt"]
    assert list_keys(bucket, f"{stack}/archive/") == [f"{stack}/archive/{run_key}/day1.csv"]
    assert f"{stack}/runs/{run_key}/run.json" in list_keys(bucket, f"{stack}/runs/")
