"""Under a real scheduler (Airflow 3, LocalExecutor, one process per component) and moto.

The runs are triggered once, together, by the ``runs`` fixture (so they run in parallel);
each test then waits for the ones it checks.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import BUCKET, STACK_PREFIX
from tests.e2e.harness import AirflowDeployment

SINGER_DAG = "handoff_singer_csv"
#: The Singer example's tap-config.json holds this demo credential: it must be masked.
SINGER_PASSWORD = "demo-tap-password-4f1d"

pytestmark = pytest.mark.e2e


def _keys(s3: Any, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def _objects(s3: Any, prefix: str) -> dict[str, bytes]:
    return {key: s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in _keys(s3, prefix)}


@pytest.fixture(scope="module")
def runs(airflow_deployment: AirflowDeployment) -> AirflowDeployment:
    deployment = airflow_deployment
    deployment.wait_for_dags(
        ["handoff_e2e_timeout", "handoff_e2e_failing", SINGER_DAG, "handoff_word_count"]
    )
    deployment.trigger("handoff_e2e_timeout", run_id="good", conf={"seconds": "0"})
    deployment.trigger("handoff_e2e_timeout", run_id="too-slow", conf={"seconds": "300"})
    deployment.trigger("handoff_e2e_failing", run_id="fails")
    deployment.trigger(SINGER_DAG, run_id="manual")
    return deployment


def test_a_timed_out_try_is_archived_as_timed_out_and_last_is_unchanged(
    runs: AirflowDeployment, s3_client: Any
) -> None:
    stack = f"{STACK_PREFIX}e2e-timeout"
    assert runs.wait_for_run("handoff_e2e_timeout", "good") == "success"
    assert runs.wait_for_run("handoff_e2e_timeout", "too-slow") == "failed"
    last = _objects(s3_client, f"{stack}/last/")
    assert last[f"{stack}/last/state"] == b"slept-0\n"

    outcome = runs.xcom("handoff_e2e_timeout", "too-slow", "run", key="handoff_outcome")
    assert outcome["status"] == "timed_out", outcome
    record = json.loads(
        s3_client.get_object(Bucket=BUCKET, Key=f"{stack}/runs/{outcome['run_key']}/run.json")[
            "Body"
        ].read()
    )
    assert record["status"] == "timed_out" and "AirflowTaskTimeout" in record["error"]
    assert record["run_key"] == outcome["run_key"]
    assert _objects(s3_client, f"{stack}/last/") == last  # untouched by the timed-out try
    log = runs.task_log("handoff_e2e_timeout", "too-slow", "run")
    assert f"artifacts: s3://{BUCKET}/{stack}/runs/{outcome['run_key']}/" in log


def test_a_failing_stage_is_an_error_line_naming_the_stage_first(runs: AirflowDeployment) -> None:
    assert runs.wait_for_run("handoff_e2e_failing", "fails") == "failed"
    records = runs.task_log_records("handoff_e2e_failing", "fails", "run")
    errors = [r["event"] for r in records if r.get("level") == "error"]
    assert any(
        event.startswith("task 'load' stage 2 exited with status 3: sh -c ") for event in errors
    ), errors


def test_the_singer_log_is_readable_and_its_password_is_nowhere(
    runs: AirflowDeployment, s3_client: Any
) -> None:
    state = runs.wait_for_run(SINGER_DAG, "manual", timeout=420)
    task_states = runs.task_states(SINGER_DAG, "manual")
    assert state == "success", task_states
    log = runs.task_log(SINGER_DAG, "manual", "run")
    assert "readings" in log
    assert "--start-date 20" in log  # the rendered command line, not the template

    everything = [runs.task_log(SINGER_DAG, "manual", task) for task in task_states]
    everything += [
        json.dumps(runs.xcom(SINGER_DAG, "manual", task, key=key))
        for task in task_states
        for key in ("return_value", "handoff_outcome")
    ]
    everything += [json.dumps(runs.rendered_fields(SINGER_DAG, "manual", t)) for t in task_states]
    everything.append(runs.db_dump())
    for text in everything:
        assert SINGER_PASSWORD not in text
