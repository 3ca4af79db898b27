"""The DAG factory and the example DAGs: schedules, modes, parse-time guarantees."""

from __future__ import annotations

import os
import re
import socket
import stat
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from af_helpers import dag_bag, write_project

from handoff_provider import dag_factory
from handoff_provider._compat import DAG
from handoff_provider.dag_factory import (
    DEFAULT_START_DATE,
    HandoffDagError,
    HandoffTaskGroup,
    RenderConfig,
    airflow_schedule,
    handoff_dag,
    handoff_dags_for_folder,
    interval_timetable,
    project_info,
)
from handoff_provider.factory import parse_cache
from handoff_provider.operators.run import HandoffRunOperator

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
EXAMPLE_DAG_IDS = {
    "handoff_word_count",
    "handoff_singer_csv",
    "handoff_in_a_dag",
    "handoff_after_word_count",
    # dags/handoff_project_folder.py: one per example project
    *(
        f"handoff_folder_{p.parent.name}"
        for p in (REPO / "examples/projects").glob("*/project.yml")
    ),
}
PIPELINE = """
tasks:
  - name: main
    pipeline:
      - command: cat
        args: files/a.txt
"""


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 * * ? *", "0 0 * * *"),
        ("cron(15 10 ? * 6L 2024)", None),  # a year restriction can't be expressed
        ("cron(0 6 ? * 2-6 *)", "0 6 * * 1-5"),  # MON-FRI: AWS 2-6 -> cron 1-5
        ("0 12 ? * 1,7 *", "0 12 * * 0,6"),  # SUN,SAT
        ("0 0 ? * 6#3 *", "0 0 * * 5#3"),  # third Friday
        ("0 0 ? * MON-FRI *", "0 0 * * MON-FRI"),
        ("0/15 * * * ? *", "0/15 * * * *"),
        ("30 2 1 * ? *", "30 2 1 * *"),
        ("*/5 * * * *", "*/5 * * * *"),  # already 5 fields
        ("@daily", "@daily"),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 day)", timedelta(days=1)),
        ("0 0 * *", None),
        ("0 0 ? * 8 *", None),
    ],
)
def test_airflow_schedule(expression: str, expected: Any) -> None:
    if expected is None:
        with pytest.raises(HandoffDagError):
            airflow_schedule(expression)
    else:
        assert airflow_schedule(expression) == expected


def _schedule(dag: DAG) -> str | None:
    """The cron expression of a DAG's timetable (None when unscheduled), on both lines."""
    timetable = dag.timetable
    for attribute in ("expression", "_expression"):  # 3.x sdk / 2.x core timetables
        value = getattr(timetable, attribute, None)
        if isinstance(value, str):
            return value
    return None


def test_schedule_from_project_first_entry_and_note(tmp_path: Path) -> None:
    project = write_project(
        tmp_path,
        PIPELINE
        + textwrap.dedent(
            """
            schedules:
              - cron: "0 6 ? * 2-6 *"
              - cron: "0 18 * * ? *"
            """
        ),
        files={"a.txt": "x\n"},
        name="sched",
    )
    dag = handoff_dag(project, bucket="b")
    assert _schedule(dag) == "0 6 * * 1-5"
    # whole periods as data intervals (Airflow 3 would make empty ones from a cron string)
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert "`0 18 * * ? *`" in dag.doc_md and "not scheduled" in dag.doc_md
    # schedule= wins over the project's; Airflow 3.2's SDK timetable keeps a preset as
    # given, the other lines' expand it (the scheduler's own timetable does on every line)
    hourly = handoff_dag(project, dag_id="other", schedule="@hourly")
    assert _schedule(hourly) in ("0 * * * *", "@hourly")
    unscheduled = write_project(tmp_path, PIPELINE, name="plain")
    assert _schedule(handoff_dag(unscheduled)) is None


def test_a_given_schedule_is_airflows_and_interval_timetable_gives_whole_periods(
    tmp_path: Path,
) -> None:
    """A ``schedule=`` string is what Airflow makes of it in a plain DAG (on Airflow 3 a
    trigger timetable with empty data intervals, on 2.x whole periods); wrapped in
    ``interval_timetable`` it gets the project schedules' whole periods on every line."""
    project = write_project(tmp_path, PIPELINE, files={"a.txt": "x\n"}, name="given")
    plain = DAG(dag_id="plain_cron", schedule="0 6 * * *", start_date=DEFAULT_START_DATE)
    given = handoff_dag(project, bucket="b", schedule="0 6 * * *")
    assert type(given.timetable) is type(plain.timetable)
    periods = handoff_dag(
        project, dag_id="periods", bucket="b", schedule=interval_timetable("0 6 * * *")
    )
    assert type(periods.timetable).__name__ == "CronDataIntervalTimetable"
    assert _schedule(periods) == "0 6 * * *"


def test_stateful_project_runs_one_at_a_time_unless_told_otherwise(tmp_path: Path) -> None:
    stateful = write_project(tmp_path, PIPELINE, files={"a.txt": "x\n"}, name="stateful")
    dag = handoff_dag(stateful, bucket="b", schedule=None)
    assert dag.max_active_runs == 1
    assert "max_active_runs=1" in dag.doc_md
    assert handoff_dag(stateful, dag_id="many", max_active_runs=3).max_active_runs == 3
    # Airflow 3's backfill ignores max_active_runs: the run task waits for its past instead
    assert dag.get_task("run").depends_on_past and "depends on its past" in dag.doc_md
    assert not dag.get_task("push_config").depends_on_past
    told = handoff_dag(stateful, dag_id="told", run_kwargs={"depends_on_past": False})
    assert not told.get_task("run").depends_on_past and "its past" not in told.doc_md
    by_default = handoff_dag(stateful, dag_id="dflt", default_args={"depends_on_past": False})
    assert not by_default.get_task("run").depends_on_past
    with DAG(dag_id="host", schedule=None, default_args={"depends_on_past": False}):
        group = HandoffTaskGroup(stateful, group_id="g")
    assert not group.children["g.run"].depends_on_past
    with DAG(dag_id="host2", schedule=None):
        group = HandoffTaskGroup(stateful, group_id="g")
    assert group.children["g.run"].depends_on_past
    stateless = write_project(
        tmp_path,
        """
        tasks:
          - name: echo
            state_from: none
            pipeline:
              - command: echo
                args: hi
        """,
        name="stateless",
    )
    default = DAG(dag_id="plain_default", schedule=None).max_active_runs
    plain = handoff_dag(stateless, schedule=None)
    assert plain.max_active_runs == default != 1
    assert not plain.get_task("run").depends_on_past


def test_modes_build_the_expected_tasks(tmp_path: Path) -> None:
    project = write_project(tmp_path, PIPELINE, files={"a.txt": "x\n"}, name="my_proj")
    push = handoff_dag(project, bucket="bkt", schedule=None)
    assert push.dag_id == "handoff_my_proj"
    assert [t.task_id for t in push.tasks] == ["push_config", "push_files", "run"]
    assert push.get_task("run").upstream_task_ids == {"push_files"}
    assert push.get_task("push_files").upstream_task_ids == {"push_config"}
    run = push.get_task("run")
    assert isinstance(run, HandoffRunOperator)
    assert run.project_dir is None  # runs what was pushed, like any other worker would
    assert (run.stack, run.bucket) == ("my-proj", "bkt")
    assert [o.uri for o in run.outlets] == ["s3://bkt/my-proj/last"]

    remote = handoff_dag(project, dag_id="r", mode="run_remote", stack="s1", schedule=None)
    assert [t.task_id for t in remote.tasks] == ["run"]
    local = handoff_dag(project, dag_id="l", mode="run_local", schedule=None)
    assert local.get_task("run").project_dir == str(project)

    with pytest.raises(HandoffDagError, match="mode"):
        handoff_dag(project, dag_id="x", mode="push")
    with pytest.raises(HandoffDagError, match="ecs"):
        handoff_dag(project, dag_id="y", mode="run_local", execution="ecs", ecs={})


def test_every_task_gets_the_connection_and_the_run_its_inputs(tmp_path: Path) -> None:
    """``aws_conn_id=`` goes to every task; left out, the operators' ``aws_default`` or a
    ``default_args`` connection applies, as for any Amazon operator. ``vars``/``envs``/
    ``secret_envs`` reach the run task (and only it)."""
    project = write_project(tmp_path, PIPELINE, name="conn")
    inputs = {"vars": {"day": "{{ ds }}"}, "envs": {"A": "1"}, "secret_envs": {"TOKEN": "s3cr3t"}}
    given = handoff_dag(project, dag_id="given", aws_conn_id="prod", schedule=None, **inputs)
    assert {t.aws_conn_id for t in given.tasks} == {"prod"}
    run = given.get_task("run")
    assert (run.vars, run.envs, run.secret_envs) == tuple(inputs.values())

    plain = handoff_dag(project, dag_id="plain", schedule=None)
    assert {t.aws_conn_id for t in plain.tasks} == {"aws_default"}
    run = plain.get_task("run")
    assert (run.vars, run.envs, run.secret_envs) == ({}, {}, {})

    by_default = handoff_dag(
        project, dag_id="dflt", schedule=None, default_args={"aws_conn_id": "from_defaults"}
    )
    assert {t.aws_conn_id for t in by_default.tasks} == {"from_defaults"}
    ecs = handoff_dag(
        project,
        dag_id="ecs",
        schedule=None,
        execution="ecs",
        ecs={"cluster": "c1", "register": True},
        default_args={"aws_conn_id": "from_defaults"},
    )
    assert [t.task_id for t in ecs.tasks] == [
        "push_config",
        "push_files",
        "register_task_definition",
        "run",
    ]
    assert {t.aws_conn_id for t in ecs.tasks} == {"from_defaults"}


def test_ecs_execution_builds_the_ecs_operator(tmp_path: Path) -> None:
    project = write_project(tmp_path, PIPELINE, name="on_fargate")
    dag = handoff_dag(
        project,
        stack="etl",
        bucket="bkt",
        schedule=None,
        execution="ecs",
        ecs={"cluster": "c1", "task_definition": "handoff:3", "subnets": ["subnet-1"]},
        vars={"start_date": "{{ ds }}"},
    )
    from handoff_provider.operators.ecs import HandoffEcsRunOperator

    run = dag.get_task("run")
    assert isinstance(run, HandoffEcsRunOperator)
    assert (run.cluster, run.task_definition, run.stack, run.bucket) == (
        "c1",
        "handoff:3",
        "etl",
        "bkt",
    )
    assert run.vars == {"start_date": "{{ ds }}"}
    assert [t.task_id for t in dag.tasks] == ["push_config", "push_files", "run"]
    with pytest.raises(HandoffDagError, match="cluster"):
        handoff_dag(project, dag_id="z", execution="ecs", ecs={"cluster": "c1"})


def test_task_group_inside_an_existing_dag(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    project = write_project(tmp_path, PIPELINE, name="grouped")
    with DAG("host", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)) as dag:
        group = HandoffTaskGroup(project, stack="g", bucket="b")
    assert group.group_id == "grouped"
    assert sorted(dag.task_ids) == ["grouped.push_config", "grouped.push_files", "grouped.run"]


def test_relative_project_path_is_relative_to_the_dag_file(tmp_path: Path) -> None:
    write_project(tmp_path / "projects", PIPELINE, name="rel")
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "rel_dag.py").write_text(
        "# airflow DAG\n"
        "from handoff_provider.dag_factory import handoff_dag\n"
        "dag = handoff_dag('../projects/rel', bucket='b', schedule=None)\n"
    )
    cwd = os.getcwd()
    os.chdir("/")  # the DAG processor's working directory is not the DAG folder
    try:
        bag = dag_bag(dags)
    finally:
        os.chdir(cwd)
    assert not bag.import_errors
    assert bag.dags["handoff_rel"].get_task("push_config").project_dir == str(
        (tmp_path / "projects" / "rel").resolve()
    )


def test_broken_project_is_an_import_error_naming_the_file(tmp_path: Path) -> None:
    project = write_project(
        tmp_path, "commands:\n  - command: cat\n    descriptoin: typo\n", name="broken"
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "broken_dag.py").write_text(
        "# airflow DAG\n"
        "from handoff_provider.dag_factory import handoff_dag\n"
        f"dag = handoff_dag({str(project)!r}, bucket='b')\n"
    )
    bag = dag_bag(dags)
    assert not bag.dags
    ((path, error),) = bag.import_errors.items()
    assert path.endswith("broken_dag.py")
    assert str(project / "project.yml") in error and "descriptoin" in error


def test_project_info_is_cached_until_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = write_project(tmp_path, PIPELINE, config={"c.json": "{}"}, name="cached")
    from handoff_provider.core.load import project as core_project

    calls: list[Path] = []
    real = core_project.load_project
    monkeypatch.setattr(core_project, "load_project", lambda p: calls.append(p) or real(p))

    first = project_info(project)
    assert project_info(project) is first and len(calls) == 1
    entries = list(parse_cache._disk_cache_dir().iterdir())  # type: ignore[union-attr]
    assert entries and all(stat.S_IMODE(e.stat().st_mode) == 0o600 for e in entries)
    dag_factory._CACHE.clear()  # a new parsing process: the disk cache answers
    assert project_info(project) == first and len(calls) == 1
    config = project / "config" / "c.json"
    config.write_text('{"a": 1}')
    os.utime(config, ns=(1, 1))  # a different mtime even on coarse clocks
    assert project_info(project) is not first and len(calls) == 2


def test_a_broken_project_is_never_cached(tmp_path: Path) -> None:
    from handoff_provider.core.errors import ProjectError

    project = write_project(tmp_path, "commands:\n  - command: cat\n    argz: x\n", name="bad")
    for _ in range(2):
        dag_factory._CACHE.clear()
        with pytest.raises(ProjectError, match="argz"):
            project_info(project)


def test_folder_factory_one_dag_per_project(tmp_path: Path) -> None:
    write_project(tmp_path, PIPELINE, name="alpha")
    write_project(tmp_path, PIPELINE, name="beta")
    (tmp_path / "not_a_project").mkdir()
    dags = handoff_dags_for_folder(tmp_path, stack_prefix="team-", bucket="b", schedule=None)
    assert sorted(dags) == ["handoff_alpha", "handoff_beta"]
    assert dags["handoff_beta"].get_task("run").stack == "team-beta"


def test_folder_factory_builds_the_run_shorthand_once_for_every_project(tmp_path: Path) -> None:
    write_project(tmp_path, PIPELINE, name="alpha")
    write_project(tmp_path, PIPELINE, name="beta")
    dags = handoff_dags_for_folder(
        tmp_path, bucket="b", mode="run_remote", run_kwargs={"retries": 2}, schedule=None
    )
    for dag in dags.values():
        assert dag.task_ids == ["run"] and dag.get_task("run").retries == 2
    with pytest.raises(HandoffDagError, match=r"^mode 'bogus': use one of push_and_run"):
        handoff_dags_for_folder(tmp_path, mode="bogus")
    with pytest.raises(HandoffDagError, match=r"^mode= and render_config= both given"):
        handoff_dags_for_folder(tmp_path, mode="run_remote", render_config=RenderConfig())


def test_example_dags_parse_without_errors_clients_or_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3.session
    import botocore.client
    import botocore.session

    calls: list[str] = []

    def forbidden(what: str) -> Any:
        def raiser(*args: Any, **kwargs: Any) -> Any:
            calls.append(what)
            raise AssertionError(f"{what} while parsing DAGs")

        return raiser

    monkeypatch.setattr(botocore.session.Session, "create_client", forbidden("botocore client"))
    monkeypatch.setattr(botocore.client.ClientCreator, "create_client", forbidden("client"))
    monkeypatch.setattr(boto3.session.Session, "client", forbidden("boto3 client"))
    monkeypatch.setattr(boto3.session.Session, "resource", forbidden("boto3 resource"))
    monkeypatch.setattr(socket.socket, "connect", forbidden("network connection"))
    dag_factory._CACHE.clear()

    bag = dag_bag(DAGS)

    assert bag.import_errors == {}
    assert set(bag.dags) >= EXAMPLE_DAG_IDS  # (other helpers' example DAGs live there too)
    assert calls == []
    singer = bag.dags["handoff_singer_csv"]
    assert _schedule(singer) == "0 6 * * *"  # from the project's "0 6 * * ? *"


def test_config_objects_build_the_same_tasks_as_the_shorthand(tmp_path: Path) -> None:
    from handoff_provider.dag_factory import EcsExecution, ProjectConfig, RenderConfig
    from handoff_provider.operators.ecs import HandoffEcsRunOperator

    project = write_project(tmp_path, PIPELINE, name="configured")
    shorthand = handoff_dag(
        project,
        dag_id="shorthand",
        stack="etl",
        bucket="bkt",
        schedule=None,
        mode="run_remote",
        execution="ecs",
        ecs={"cluster": "c1", "task_definition": "handoff:3", "awslogs_group": "/ecs/h"},
        run_kwargs={"retries": 2},
        vars={"day": "{{ ds }}"},
    )
    configured = handoff_dag(
        project_config=ProjectConfig(project, stack="etl", bucket="bkt", vars={"day": "{{ ds }}"}),
        render_config=RenderConfig(mode="run_remote"),
        execution_config=EcsExecution(
            cluster="c1",
            task_definition="handoff:3",
            operator_args={"awslogs_group": "/ecs/h", "retries": 2},
        ),
        dag_id="configured",
        schedule=None,
    )
    for dag in (shorthand, configured):
        assert [t.task_id for t in dag.tasks] == ["run"]
        run = dag.get_task("run")
        assert isinstance(run, HandoffEcsRunOperator)
        assert (run.cluster, run.task_definition, run.stack, run.bucket) == (
            "c1",
            "handoff:3",
            "etl",
            "bkt",
        )
        assert (run.awslogs_group, run.retries, run.vars) == ("/ecs/h", 2, {"day": "{{ ds }}"})
        assert "mode `run_remote` · execution `ecs`" in dag.doc_md


def test_config_objects_in_a_task_group_and_their_errors(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from handoff_provider.dag_factory import LocalExecution, ProjectConfig, RenderConfig

    project = write_project(tmp_path, PIPELINE, name="grouped_cfg")
    with DAG("host_cfg", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)):
        group = HandoffTaskGroup(
            project_config=ProjectConfig(project, stack="g", bucket="b"),
            render_config=RenderConfig(mode="run_local"),
            execution_config=LocalExecution(operator_args={"workspace": "/tmp/ws"}),
        )
    run = group.children["grouped_cfg.run"]
    assert (run.project_dir, run.workspace, run.stack) == (str(project), "/tmp/ws", "g")

    with pytest.raises(HandoffDagError, match="bucket= and project_config= both given"):
        handoff_dag(project_config=ProjectConfig(project), bucket="b", dag_id="mixed")
    with pytest.raises(HandoffDagError, match="not both"):
        handoff_dag(project, project_config=ProjectConfig(project), dag_id="twice")
    with pytest.raises(HandoffDagError, match="execution 'k8s': use one of local, ecs"):
        handoff_dag(project, dag_id="k8s", execution="k8s")
    with pytest.raises(HandoffDagError, match="mode 'push'"):
        RenderConfig(mode="push")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"run_kwargs": "retries=2"},
            "run_kwargs: expected a dict of names to values (got a string)",
        ),
        ({"run_kwargs": {1: 2}}, "run_kwargs: keys are argument names, strings (got an int)"),
        ({"push_kwargs": ["x"]}, "push_kwargs: expected a dict of names to values (got a list)"),
        ({"vars": ["day"]}, "vars: expected a dict of names to values (got a list)"),
        ({"envs": "A=1"}, "envs: expected a dict of names to values (got a string)"),
        (
            {"execution": "ecs", "ecs": "c1"},
            "ecs: expected a dict of names to values (got a string)",
        ),
        (
            {"execution": "ecs", "ecs": {"cluster": "c", "task_definition": "t", "subnets": "s-1"}},
            "ecs['subnets']: expected a list of strings (got a string)",
        ),
    ],
)
def test_arguments_of_the_wrong_shape_are_one_line_naming_them(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    project = write_project(tmp_path, PIPELINE, name="shapes")
    with pytest.raises(HandoffDagError, match=re.escape(message)):
        handoff_dag(project, dag_id="shapes", stack="s", bucket="b", schedule=None, **arguments)


def test_folder_factory_refuses_a_missing_folder_or_a_project(tmp_path: Path) -> None:
    """Either would give no DAG and no import error saying why; an empty folder is fine."""
    with pytest.raises(HandoffDagError, match="folder of projects not found"):
        handoff_dags_for_folder(tmp_path / "typo", bucket="b", schedule=None)
    project = write_project(tmp_path, PIPELINE, name="alone")
    with pytest.raises(HandoffDagError, match=r"is a project itself.*use handoff_dag"):
        handoff_dags_for_folder(project, bucket="b", schedule=None)
    (tmp_path / "empty").mkdir()
    assert handoff_dags_for_folder(tmp_path / "empty", bucket="b", schedule=None) == {}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"run_kwargs": {"task_id": "x"}}, "run_kwargs can't set task_id (task_id: the factory"),
        (
            {"run_kwargs": {"stack": "s", "vars": {}}},
            "can't set stack, vars (stack: give it as the factory's (or ProjectConfig's) stack=",
        ),
        ({"run_kwargs": {"project_dir": "/p"}}, "mode='run_local' runs from it"),
        (
            {"push_kwargs": {"bucket": "b"}},
            "push_kwargs can't set bucket (bucket: give it as the factory's",
        ),
        (
            {"execution": "ecs", "ecs": {"cluster": "c", "task_definition": "t", "bucket": "b"}},
            "ecs={...}/run_kwargs can't set bucket",
        ),
        (
            {
                "execution": "ecs",
                "ecs": {"cluster": "c", "task_definition": "t"},
                "run_kwargs": {"subnets": ["s-1"]},
            },
            "can't set subnets (subnets: give it in ecs={'subnets': ...} (or as EcsExecution's",
        ),
    ],
)
def test_task_arguments_the_factory_sets_are_refused_naming_the_dict(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    """An argument the factory gives the task itself, repeated in ``run_kwargs``/
    ``push_kwargs``/``ecs={...}``, is one line naming the dict and where it goes instead,
    not the constructor's "got multiple values for keyword argument"."""
    project = write_project(tmp_path, PIPELINE, name="clash")
    with pytest.raises(HandoffDagError, match=re.escape(message)):
        handoff_dag(project, dag_id="clash", stack="s", bucket="b", schedule=None, **arguments)
