"""The ``last/`` outlet's asset event says what happened: ``dag.test()`` on both Airflow
lines, the event's ``extra`` read back from the metadata DB (AssetEvent on 3.x, DatasetEvent
on 2.x), then handed to the example downstream DAG's callable as Airflow would."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from af_helpers import read_text, run_dag, task_states, write_project, xcom_value

from handoff_provider._compat import AIRFLOW_V_3_0_PLUS, DAG
from handoff_provider.asset_events import triggering_extras
from handoff_provider.operators.run import HandoffRunOperator

REPO = Path(__file__).resolve().parents[2]
DAY = datetime(2024, 1, 2, tzinfo=timezone.utc)

pytestmark = pytest.mark.usefixtures("airflow_db")


def asset_events(uri: str) -> list[Any]:
    """The asset (dataset on 2.x) events Airflow recorded for ``uri``, oldest first."""
    from airflow.utils.session import create_session

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model

        join = Event.asset_id == Model.id
    else:
        from airflow.models.dataset import DatasetEvent as Event  # type: ignore[no-redef]
        from airflow.models.dataset import DatasetModel as Model  # type: ignore[no-redef]

        join = Event.dataset_id == Model.id
    with create_session() as session:
        events = (
            session.query(Event).join(Model, join).filter(Model.uri == uri).order_by(Event.id).all()
        )
        session.expunge_all()
        return events


def test_last_event_extra_says_what_happened(tmp_path: Path, bucket: str, stack: str) -> None:
    secret_state = f"cursor={uuid.uuid4().hex}"
    project = write_project(
        tmp_path,
        f"""
        tasks:
          - name: extract
            pipeline:
              - command: cat
                args: files/rows.txt
              - command: wc
                args: -l
          - name: state
            commands:
              - command: echo
                args: "{secret_state}"
        """,
        files={"rows.txt": "a\nb\nc\n"},
    )
    dag_id = f"t_asset_{uuid.uuid4().hex[:6]}"
    with DAG(
        dag_id,
        schedule=timedelta(days=1),
        start_date=DAY - timedelta(days=1),
        catchup=False,
    ) as dag:
        HandoffRunOperator(task_id="run", project_dir=project, stack=stack, bucket=bucket)

    dag_run = run_dag(dag, DAY)

    assert task_states(dag_run) == {"run": "success"}
    summary = xcom_value(dag_run, "run")
    (event,) = asset_events(f"s3://{bucket}/{stack}/last")
    extra = event.extra
    state = read_text(bucket, f"{stack}/last/state")
    assert state == secret_state + "\n"
    start, end = (dag_run.data_interval_start, dag_run.data_interval_end)
    assert extra == {
        "run_key": summary["run_key"],
        "data_interval": {"start": start.isoformat(), "end": end.isoformat()},
        "status": "success",
        "tasks": {"extract": "success", "state": "success"},
        "bytes_out": 2 + len(state),  # "3\n" from wc -l, then the state line
        "artifacts": {
            "uri": f"s3://{bucket}/{stack}/runs/{summary['run_key']}/",
            "files": summary["artifacts"]["files"],
            "bytes": summary["artifacts"]["bytes"],
        },
        "state": {
            "size": len(state.encode()),
            "sha256": hashlib.sha256(state.encode()).hexdigest(),
        },
    }
    assert secret_state not in json.dumps(extra)  # the state's digest, never its content

    # The example downstream DAG's task reads it from the triggering events, as Airflow
    # hands them over on either line.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "example_in_a_dag", REPO / "dags/handoff_in_a_dag.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    key = "triggering_asset_events" if AIRFLOW_V_3_0_PLUS else "triggering_dataset_events"
    context = {key: {f"s3://{bucket}/{stack}/last": [event]}}
    assert triggering_extras(context) == [extra]
    assert example.report_new_artifacts(**context) == [extra]


def test_no_event_extra_without_a_published_run(tmp_path: Path, bucket: str, stack: str) -> None:
    """push_artifacts=False: no outlet, no event (and so no extra)."""
    project = shutil.copytree(REPO / "examples/projects/01_word_count", tmp_path / "wc")
    with DAG(f"t_noasset_{uuid.uuid4().hex[:6]}", schedule=None, start_date=DAY) as dag:
        HandoffRunOperator(
            task_id="run", project_dir=project, stack=stack, bucket=bucket, push_artifacts=False
        )
    dag_run = run_dag(dag, DAY)
    assert task_states(dag_run) == {"run": "success"}
    assert asset_events(f"s3://{bucket}/{stack}/last") == []
