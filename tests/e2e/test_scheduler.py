"""Under a real scheduler (Airflow 3, LocalExecutor, one process per component) and moto.

The runs are started once, together, by the ``runs`` fixture (so they run in parallel):
manual runs through the REST API (the UI's Trigger button), a backfill with the
``airflow backfill create`` a user types; each test then waits for the ones it checks.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from handoff_provider.core.stores import MANIFEST_NAME
from tests.e2e.conftest import BUCKET, STACK_PREFIX
from tests.e2e.harness import AirflowDeployment

SINGER_DAG = "handoff_singer_csv"
#: The Singer example as a factory DAG (tests/e2e/dags), backfilled over 3 days.
BACKFILL_DAG = "handoff_e2e_backfill"
BACKFILL_DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
#: What the plain ``airflow backfill create`` (no --reprocess-behavior) answered.
PLAIN_BACKFILL: dict[str, str] = {}
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
        ["handoff_e2e_timeout", "handoff_e2e_failing", SINGER_DAG, BACKFILL_DAG]
    )
    # What a user types: no --max-active-runs (its default, 10, ignores the DAG's). The
    # plain command is refused (the factory's run task depends on its past): so is the
    # silent out-of-order backfill; the user adds the --reprocess-behavior it asks for.
    deployment.unpause(BACKFILL_DAG)
    backfill = ["backfill", "create", "--dag-id", BACKFILL_DAG]
    backfill += ["--from-date", BACKFILL_DAYS[0], "--to-date", "2024-01-04"]
    try:
        deployment.cli(*backfill)
    except RuntimeError as refused:
        PLAIN_BACKFILL["refusal"] = str(refused)
    deployment.cli(*backfill, "--reprocess-behavior", "failed")
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
    # Stage lines come from reader threads, yet carry the task instance's log context like
    # every other line of the task's log.
    stage_lines = [
        record
        for record in runs.task_log_records(SINGER_DAG, "manual", "run")
        if str(record.get("event", "")).startswith("[extract_load:1 tap-demo] ")
    ]
    assert stage_lines and "readings" in stage_lines[0]["event"]
    for record in stage_lines:
        assert (record.get("dag_id"), record.get("run_id"), record.get("task_id")) == (
            SINGER_DAG,
            "manual",
            "run",
        ), record
        assert record.get("ti_id") and record.get("try_number") == 1, record

    everything = [runs.task_log(SINGER_DAG, "manual", task) for task in task_states]
    everything += [
        json.dumps(runs.xcom(SINGER_DAG, "manual", task, key=key))
        for task in task_states
        for key in ("return_value", "handoff_outcome")
    ]
    everything += [json.dumps(runs.rendered_fields(SINGER_DAG, "manual", t)) for t in task_states]
    dump = runs.db_dump()
    assert SINGER_DAG in dump and "handoff_outcome" in dump  # the runs, their XComs
    everything.append(dump)
    # ... nor in any log file of the deployment (task logs of every run, the DAG
    # processor's, and each component's output)
    everything += [path.read_text(errors="replace") for path in runs.log_files()]
    for text in everything:
        assert SINGER_PASSWORD not in text


def test_a_backfill_runs_its_intervals_in_order_each_restoring_the_previous_state(
    runs: AirflowDeployment, s3_client: Any
) -> None:
    """``airflow backfill create`` over 3 days of a stateful project built by the factory:
    the runs go one after another in logical-date order (the backfill itself would allow 10
    at once), each restores the state its predecessor published and reads only its own day;
    ``last/`` ends as the third run, its manifest's history the other two. Without
    ``--reprocess-behavior`` Airflow refuses the backfill, naming what to add."""
    refusal = PLAIN_BACKFILL.get("refusal", "(the plain command was accepted)")
    assert "depends_on_past=True" in refusal and "reprocess" in refusal, refusal
    stack = f"{STACK_PREFIX}e2e-backfill"
    dag_runs = runs.wait_for_dag_runs(BACKFILL_DAG, run_type="backfill", count=3, timeout=600)
    assert [run["state"] for run in dag_runs] == ["success"] * 3, [
        runs.task_states(BACKFILL_DAG, run["run_id"]) for run in dag_runs
    ]
    assert [str(run["logical_date"])[:10] for run in dag_runs] == BACKFILL_DAYS
    (backfill,) = runs.backfills(BACKFILL_DAG)
    assert backfill["max_active_runs"] == 10  # the DAG's max_active_runs=1 is not it

    ids = [run["run_id"] for run in dag_runs]
    windows = [runs.task_window(BACKFILL_DAG, run_id, "run") for run_id in ids]
    for earlier, later in itertools.pairwise(windows):
        assert earlier[1] <= later[0], windows  # never overlapping, in logical-date order

    summaries = [runs.xcom(BACKFILL_DAG, run_id, "run") for run_id in ids]
    keys = [summary["run_key"] for summary in summaries]
    assert [summary["state_restored"] for summary in summaries] == [False, True, True]
    for day, summary in zip(BACKFILL_DAYS, summaries, strict=True):
        rendered = summary["tasks"][0]["stages"][0]["rendered"]
        assert f"--start-date {day} " in rendered, rendered

    def read(key: str) -> bytes:
        return s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def bookmark(state: bytes) -> str:
        return str(json.loads(state.decode().splitlines()[-1])["bookmarks"]["readings"]["day"])

    # 1 -> 2 -> 3: run k read the day after run k-1's bookmark, and only its own day
    states = [read(f"{stack}/runs/{key}/state") for key in keys]
    assert [bookmark(state) for state in states] == BACKFILL_DAYS
    rows = [read(f"{stack}/runs/{key}/readings.csv").decode().splitlines()[1:] for key in keys]
    assert [[row.split(",")[0] for row in run_rows] for run_rows in rows] == [
        [day] for day in BACKFILL_DAYS
    ]  # no day read twice, none skipped
    for run_id in ids[1:]:
        log = runs.task_log(BACKFILL_DAG, run_id, "run")
        assert f"state: restored artifacts/state from s3://{BUCKET}/{stack}/last/state" in log

    manifest = json.loads(read(f"{stack}/last/{MANIFEST_NAME}"))
    assert manifest["run_key"] == keys[2]
    assert manifest["history"][:2] == [keys[1], keys[0]]
    assert read(f"{stack}/last/state") == states[2]
