"""DAG runs with ``dag.test()`` against the moto server, on both Airflow lines.

Each test builds its DAG in memory (unique dag id, stack and bucket), runs it with
:func:`conftest.run_dag` and checks what a user would: task states, the task log (through
Airflow's secrets masker, as a real task's log), XCom, rendered fields and S3.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from af_helpers import (
    asset_event_count,
    extra_link_url,
    list_keys,
    read_text,
    rendered_fields,
    run_dag,
    run_keys,
    sync_dag,
    task_states,
    write_project,
    xcom_value,
)

from handoff_provider._compat import DAG
from handoff_provider.dag_factory import handoff_dag
from handoff_provider.links.artifacts import HandoffArtifactsLink
from handoff_provider.operators.run import HandoffRunOperator

REPO = Path(__file__).resolve().parents[2]
WORD_COUNT = REPO / "examples" / "projects" / "01_word_count"
DAY1 = datetime(2024, 1, 2, tzinfo=timezone.utc)
DAY2 = datetime(2024, 1, 3, tzinfo=timezone.utc)

pytestmark = pytest.mark.usefixtures("airflow_db")


def _dag_id(name: str) -> str:
    return f"t_{name}_{uuid.uuid4().hex[:6]}"


def _daily_dag(dag_id: str, **kwargs: object) -> DAG:
    """A DAG whose runs cover one day each ([logical date - 1 day, logical date))."""
    from airflow.timetables.interval import CronDataIntervalTimetable

    return DAG(
        dag_id,
        schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
        start_date=datetime(2023, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        **kwargs,
    )


def test_factory_dag_success_archives_and_returns_summary(
    tmp_path: Path, bucket: str, stack: str, task_log
) -> None:
    project = shutil.copytree(WORD_COUNT, tmp_path / "01_word_count")
    dag = handoff_dag(project, dag_id=_dag_id("ok"), stack=stack, bucket=bucket, schedule=None)
    assert [t.task_id for t in dag.tasks] == ["push_config", "push_files", "run"]

    dag_run = run_dag(dag, DAY1)

    assert task_states(dag_run) == {
        "push_config": "success",
        "push_files": "success",
        "run": "success",
    }
    summary = xcom_value(dag_run, "run")
    assert summary["status"] == "success"
    (run_key,) = run_keys(bucket, stack)
    assert summary["run_key"] == run_key
    assert run_key.startswith(f"{dag.dag_id}__") and "__run__try1-" in run_key
    stages = summary["tasks"][0]["stages"]
    assert [s["command"] for s in stages] == ["cat files/lines.txt", "wc -l"]
    assert [s["exit_code"] for s in stages] == [0, 0]
    assert all(s["seconds"] >= 0 for s in stages) and stages[0]["bytes_out"] > 0
    assert summary["artifacts"]["runs_uri"] == f"s3://{bucket}/{stack}/runs/{run_key}/"
    assert summary["artifacts"]["last_uri"] == f"s3://{bucket}/{stack}/last/"
    lines = (project / "files" / "lines.txt").read_text().count("\n")
    assert read_text(bucket, f"{stack}/runs/{run_key}/state").strip() == str(lines)
    assert read_text(bucket, f"{stack}/last/state").strip() == str(lines)

    pushed = xcom_value(dag_run, "push_config")
    assert pushed["name"] == f"/handoff/{stack}/config" and pushed["tier"] == "Standard"
    assert xcom_value(dag_run, "push_files")["uploaded"] == 1

    link = xcom_value(dag_run, "run", key="handoff_artifacts")
    assert link["bucket"] == bucket and link["prefix"] == f"{stack}/runs/{run_key}/"
    assert extra_link_url(dag_run, dag, "run", HandoffArtifactsLink()) == (
        f"https://s3.console.aws.amazon.com/s3/buckets/{bucket}"
        f"?prefix={stack}/runs/{run_key}/&region=us-east-1"
    )
    # downstream DAGs scheduled on s3://<bucket>/<stack>/last/ see an event
    assert asset_event_count(f"s3://{bucket}/{stack}/last") == 1
    log = task_log.text()
    assert f"artifacts: s3://{bucket}/{stack}/runs/{run_key}/" in log


def test_failing_stage_fails_task_archives_runs_and_keeps_last(
    tmp_path: Path, bucket: str, stack: str, task_log
) -> None:
    good = write_project(
        tmp_path,
        """
        tasks:
          - name: main
            pipeline:
              - command: sh
                args: "-c 'echo good-state'"
        """,
        name="good",
    )
    bad = write_project(
        tmp_path,
        """
        tasks:
          - name: main
            pipeline:
              - command: sh
                args: "-c 'echo partial-output; echo about-to-fail >&2; exit 3'"
              - command: cat
        """,
        name="bad",
    )
    with _daily_dag(_dag_id("good")) as ok_dag:
        HandoffRunOperator(task_id="run", project_dir=good, stack=stack, bucket=bucket)
    with _daily_dag(_dag_id("bad")) as bad_dag:
        HandoffRunOperator(task_id="run", project_dir=bad, stack=stack, bucket=bucket)

    assert task_states(run_dag(ok_dag, DAY1)) == {"run": "success"}
    last_before = {k: read_text(bucket, k) for k in list_keys(bucket, f"{stack}/last/")}
    assert last_before[f"{stack}/last/state"] == "good-state\n"

    dag_run = run_dag(bad_dag, DAY1)

    assert task_states(dag_run) == {"run": "failed"}
    log = task_log.text()
    assert "[main:1 sh] about-to-fail" in log  # stderr streamed with its stage
    assert "handoff run failed: task 'main' stage 1" in log  # the failing stage is named
    failed_key = next(k for k in run_keys(bucket, stack) if k.startswith(bad_dag.dag_id))
    archived = list_keys(bucket, f"{stack}/runs/{failed_key}/")
    assert f"{stack}/runs/{failed_key}/run.json" in archived
    record = json.loads(read_text(bucket, f"{stack}/runs/{failed_key}/run.json"))
    assert record["status"] == "failed"
    assert {k: read_text(bucket, k) for k in list_keys(bucket, f"{stack}/last/")} == last_before
    failed_summary = xcom_value(dag_run, "run", key="handoff_outcome")
    assert failed_summary["status"] == "failed"
    assert failed_summary["artifacts"]["last_uri"] is None


def test_two_intervals_each_see_their_own_and_carry_state(
    tmp_path: Path, bucket: str, stack: str
) -> None:
    project = write_project(
        tmp_path,
        """
        tasks:
          - name: main
            pipeline:
              - command: sh
                args: >-
                  -c 'cat artifacts/state 2>/dev/null;
                  echo "arg={{ start_at }}/{{ end_at }} env=$HANDOFF_START_AT/$HANDOFF_END_AT
                  ds={{ ds }} var={{ start_date }}"'
        """,
    )
    with _daily_dag(_dag_id("interval")) as dag:
        HandoffRunOperator(
            task_id="run",
            project_dir=project,
            stack=stack,
            bucket=bucket,
            vars={"start_date": "{{ data_interval_start | ds }}"},
        )

    assert task_states(run_dag(dag, DAY1)) == {"run": "success"}
    assert task_states(run_dag(dag, DAY2)) == {"run": "success"}

    state = read_text(bucket, f"{stack}/last/state").splitlines()
    first = "2024-01-01T00:00:00+00:00/2024-01-02T00:00:00+00:00"
    second = "2024-01-02T00:00:00+00:00/2024-01-03T00:00:00+00:00"
    assert state == [
        f"arg={first} env={first} ds={_ds(dag, DAY1)} var=2024-01-01",
        f"arg={second} env={second} ds={_ds(dag, DAY2)} var=2024-01-02",
    ]
    assert len(run_keys(bucket, stack)) == 2


def _ds(dag: DAG, logical_date: datetime) -> str:
    """``ds`` as the run context computes it: the logical date's day."""
    return logical_date.date().isoformat()


def test_retry_gets_its_own_run_key(tmp_path: Path, bucket: str, stack: str) -> None:
    project = write_project(
        tmp_path,
        """
        tasks:
          - name: main
            pipeline:
              - command: sh
                args: "-c 'echo try=$TRY; test $TRY -ge 2'"
        """,
    )
    with _daily_dag(_dag_id("retry")) as dag:
        HandoffRunOperator(
            task_id="run",
            project_dir=project,
            stack=stack,
            bucket=bucket,
            envs={"TRY": "{{ ti.try_number }}"},
            retries=1,
            retry_delay=timedelta(seconds=0),
        )

    dag_run = run_dag(dag, DAY1)

    assert task_states(dag_run) == {"run": "success"}
    keys = run_keys(bucket, stack)
    assert len(keys) == 2
    assert [k.split("__")[-1].split("-")[0] for k in keys] == ["try1", "try2"]
    statuses = [json.loads(read_text(bucket, f"{stack}/runs/{k}/run.json"))["status"] for k in keys]
    assert statuses == ["failed", "success"]
    assert read_text(bucket, f"{stack}/last/state") == "try=2\n"
    assert xcom_value(dag_run, "run")["run_key"] == keys[1]


@pytest.mark.parametrize("mode", ["run_local", "run_remote"])
def test_secrets_are_masked_in_log_xcom_and_rendered_fields(
    mode: str, tmp_path: Path, bucket: str, stack: str, task_log, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fresh values per test: the masker of the test process remembers earlier ones.
    password = f"pw-{uuid.uuid4().hex}"
    token = f"tok-{uuid.uuid4().hex}"
    looked_up = f"ssm-{uuid.uuid4().hex}"
    parameter = f"/handoff-test/{stack}/db-password"
    monkeypatch.setenv("AIRFLOW_VAR_HANDOFF_TEST_TOKEN", token)
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=parameter, Value=looked_up, Type="SecureString"
    )
    project = write_project(
        tmp_path,
        f"""
        envs:
          - key: DB_PASSWORD
            value: "{{{{ ssm('{parameter}') }}}}"
        tasks:
          - name: main
            pipeline:
              - command: sh
                args: "-c 'cat config/secret.json >&2; echo token=$API_TOKEN db=$DB_PASSWORD >&2'"
        """,
        config={"secret.json": json.dumps({"user": "someone", "password": password})},
    )
    if mode == "run_remote":
        # Deployed earlier by someone else (no masking in this process): the values are
        # only known once the run fetched the config from SSM.
        from handoff_provider.core.load.project import compile_document
        from handoff_provider.core.stores import Remote

        Remote.from_options(stack=stack, bucket=bucket).config.push(compile_document(project))
    dag = handoff_dag(
        project,
        dag_id=_dag_id("secret"),
        stack=stack,
        bucket=bucket,
        schedule=None,
        mode=mode,
        secret_envs={"API_TOKEN": "{{ var.value.handoff_test_token }}"},
    )

    dag_run = run_dag(dag, DAY1)

    assert task_states(dag_run) == {"run": "success"}
    log = task_log.text()
    assert "[main:1 sh]" in log and "token=*** db=***" in log  # logged, masked
    assert password not in log and token not in log and looked_up not in log
    dumped = json.dumps(xcom_value(dag_run, "run"), default=str)
    assert password not in dumped and token not in dumped and looked_up not in dumped
    rendered = json.dumps(rendered_fields(dag_run, "run"), default=str)
    assert "secret_envs" in rendered and token not in rendered


def test_execution_timeout_kills_the_pipeline(tmp_path: Path) -> None:
    """A task timing out (Airflow's execution_timeout) leaves no stage process behind."""
    import random

    import psutil

    # Durations nobody else uses, to recognise the stages among all processes.
    durations = [f"{n}.{random.randrange(10**6, 10**7)}" for n in (300, 301)]
    project = write_project(
        tmp_path,
        f"""
        tasks:
          - name: main
            pipeline:
              - command: sleep
                args: "{durations[0]}"
              - command: sleep
                args: "{durations[1]}"
        """,
    )
    with _daily_dag(_dag_id("timeout")) as dag:
        HandoffRunOperator(
            task_id="run",
            project_dir=project,
            push_artifacts=False,
            execution_timeout=timedelta(seconds=3),
        )

    started = datetime.now(timezone.utc)
    try:
        dag_run = run_dag(dag, DAY1)
    except BaseException as exc:  # 2.x: AirflowTaskTimeout is a BaseException that
        # dag.test() lets through (`airflow tasks run` fails the task with it)
        assert type(exc).__name__ == "AirflowTaskTimeout"
    else:
        assert task_states(dag_run) == {"run": "failed"}
    elapsed = (datetime.now(timezone.utc) - started).total_seconds()
    assert 3 <= elapsed < 60  # it ran until the timeout, and no longer
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if set(durations) & set(p.info["cmdline"] or ())
    ]
    assert leftovers == []


def test_execution_timeout_archives_the_try_as_timed_out_and_keeps_last(
    tmp_path: Path, bucket: str, stack: str, task_log
) -> None:
    """execution_timeout (AirflowTaskTimeout) ends the try: runs/<key>/run.json says
    timed_out, the handoff_outcome XCom is there, last/ is untouched, and the timeout
    still reaches Airflow as a timeout."""
    good = write_project(
        tmp_path, "tasks:\n  - name: main\n    pipeline:\n      - command: date\n", name="good"
    )
    slow = write_project(
        tmp_path,
        "tasks:\n  - name: main\n    pipeline:\n      - command: sleep\n        args: '120'\n",
        name="slow",
    )
    with _daily_dag(_dag_id("good")) as ok_dag:
        HandoffRunOperator(task_id="run", project_dir=good, stack=stack, bucket=bucket)
    with _daily_dag(_dag_id("slow")) as slow_dag:
        HandoffRunOperator(
            task_id="run",
            project_dir=slow,
            stack=stack,
            bucket=bucket,
            execution_timeout=timedelta(seconds=3),
        )
    assert task_states(run_dag(ok_dag, DAY1)) == {"run": "success"}
    last_before = {k: read_text(bucket, k) for k in list_keys(bucket, f"{stack}/last/")}

    try:
        dag_run = run_dag(slow_dag, DAY1)
    except BaseException as exc:  # 2.x: dag.test() lets AirflowTaskTimeout through
        assert type(exc).__name__ == "AirflowTaskTimeout"
        dag_run = None
    else:
        assert task_states(dag_run) == {"run": "failed"}

    key = next(k for k in run_keys(bucket, stack) if k.startswith(slow_dag.dag_id))
    record = json.loads(read_text(bucket, f"{stack}/runs/{key}/run.json"))
    assert record["status"] == "timed_out"
    assert "AirflowTaskTimeout" in record["error"]
    assert record["run_key"] == key
    assert record["data_interval"]["end"].startswith("2024-01-02")
    origin = record["origin"]  # the task try that ran, for readers such as the runs view
    assert (origin["dag_id"], origin["task_id"], origin["map_index"]) == (
        slow_dag.dag_id,
        "run",
        -1,
    )
    assert origin["run_id"] and origin["try_number"] >= 1
    assert {k: read_text(bucket, k) for k in list_keys(bucket, f"{stack}/last/")} == last_before
    log = task_log.text()
    assert f"artifacts: s3://{bucket}/{stack}/runs/{key}/" in log
    if dag_run is not None:
        outcome = xcom_value(dag_run, "run", key="handoff_outcome")
        assert outcome["status"] == "timed_out" and outcome["run_key"] == key
        link = xcom_value(dag_run, "run", key="handoff_artifacts")
        assert link["prefix"] == f"{stack}/runs/{key}/"


def test_a_manual_run_without_data_interval_uses_its_trigger_time(tmp_path: Path, task_log) -> None:
    """A manual run of an unscheduled DAG: start_at/end_at are the trigger time, so the
    docstring's `{{ data_interval_start | ds }}` and a project's `{{ ds }}` work. Airflow 3
    gives such a run no logical date (the operator falls back to its trigger time);
    Airflow 2 gives it the trigger time as logical date and an empty interval there."""
    from handoff_provider._compat import AIRFLOW_V_3_0_PLUS

    project = write_project(
        tmp_path,
        """
        tasks:
          - name: main
            pipeline:
              - command: echo
                args: "{{ day }} {{ ds }} {{ start_at == end_at }}"
        """,
    )
    with DAG(_dag_id("manual"), schedule=None, start_date=datetime(2024, 1, 1)) as dag:
        HandoffRunOperator(
            task_id="run",
            project_dir=project,
            push_artifacts=False,
            vars={"day": "{{ data_interval_start | ds }}"},
        )
    triggered = datetime.now(timezone.utc)
    before = triggered.date().isoformat()
    if AIRFLOW_V_3_0_PLUS:
        sync_dag(dag)
        dag_run = dag.test(logical_date=None)
        assert dag_run.logical_date is None
    else:
        dag.sync_to_db()
        dag_run = dag.test()  # no execution_date: a manual run at the trigger time
        assert dag_run.execution_date >= triggered
    assert task_states(dag_run) == {"run": "success"}
    summary = xcom_value(dag_run, "run")
    (stage,) = summary["tasks"][0]["stages"]
    day = stage["rendered"].split()[1]
    assert day >= before and stage["rendered"] == f"echo {day} {day} True"
    interval = summary["data_interval"]
    assert interval["start"] == interval["end"] and interval["start"].startswith(day)


def test_when_archiving_is_impossible_the_log_says_so_once_and_no_link_is_offered(
    tmp_path: Path, stack: str, task_log
) -> None:
    project = write_project(
        tmp_path, "tasks:\n  - name: main\n    pipeline:\n      - command: date\n"
    )
    with _daily_dag(_dag_id("noarchive")) as dag:
        HandoffRunOperator(  # no lease: the try starts, then archiving fails
            task_id="run",
            project_dir=project,
            stack=stack,
            bucket="no-such-bucket-e2e",
            lock=False,
        )
    dag_run = run_dag(dag, DAY1)
    assert task_states(dag_run) == {"run": "failed"}
    log = task_log.text()
    assert log.count("artifacts: NOT archived:") == 1
    assert xcom_value(dag_run, "run", key="handoff_artifacts") is None
    outcome = xcom_value(dag_run, "run", key="handoff_outcome")
    assert outcome["artifacts"] is None and "no-such-bucket-e2e" in outcome["artifacts_error"]
