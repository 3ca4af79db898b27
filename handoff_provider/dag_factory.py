"""Project folder -> Airflow DAG (:func:`handoff_dag`) or task group (:func:`HandoffTaskGroup`).

Three config objects say what to build (:mod:`handoff_provider.factory.config`, the API
this module documents first); the keyword shorthand builds the same objects::

    from handoff_provider.dag_factory import EcsExecution, ProjectConfig, handoff_dag

    dag = handoff_dag(
        project_config=ProjectConfig("../examples/projects/01_word_count", bucket="my-bucket"),
        execution_config=EcsExecution(cluster="etl", task_definition="handoff:3"),
    )
    dag = handoff_dag("../examples/projects/01_word_count", bucket="my-bucket")  # shorthand

* ``ProjectConfig`` (shorthand ``stack=``, ``bucket=``, ``aws_conn_id=``, ``vars=``,
  ``envs=``, ``secret_envs=``): the project, its stack, what its run receives;
* ``RenderConfig`` (``mode=``, ``push_kwargs=``): ``"push_and_run"`` (default)
  ``push_config`` -> ``push_files`` -> ``run`` from the remote config, i.e. exactly what a
  Fargate run or another worker would see; ``"run_remote"``: ``run`` only, from what the
  stack holds; ``"run_local"``: ``run`` only, straight from the project directory;
* an ``ExecutionConfig`` (``execution=``, ``ecs={...}``, ``run_kwargs=``):
  ``LocalExecution`` runs on the Airflow worker (``HandoffRunOperator``), ``EcsExecution``
  in an ECS (Fargate) task (``HandoffEcsRunOperator``, imported only then); one module per
  mode in :mod:`handoff_provider.factory.executions`.

Parse time: building a DAG reads ``project.yml`` and ``config/`` (validating them, so a
broken project is an import error naming its file), and nothing else: no AWS call, no
network, no venv. The validated project is cached per process and on disk by the files'
mtimes (:mod:`handoff_provider.factory.parse_cache`), so re-parsing an unchanged folder
costs a few ``stat()`` calls per project.

Schedules: when ``schedule`` is not given, the first entry of the project's ``schedules``
is used (AWS EventBridge 6-field cron converted to Airflow's 5-field cron, ``rate(...)``
to a timedelta) as an *interval* timetable in UTC, so each run's ``start_at``/``end_at``
is the whole period since the previous run, on Airflow 2 and 3 alike (see
:mod:`handoff_provider.factory.schedules`); further entries are listed in the DAG's
documentation, not scheduled. A project without ``schedules`` gives an unscheduled
(manual/backfill) DAG.

Ordered runs: a project that carries state (an active task whose ``state_from`` is not
``none``) gets ``max_active_runs=1`` unless the DAG is given another value, and its ``run``
task ``depends_on_past=True`` unless its operator arguments (``run_kwargs``) or
``default_args`` say otherwise. So catch-up runs and backfills - Airflow 2's ``airflow
dags backfill`` and Airflow 3's ``airflow backfill create``, whose own limit of 10
concurrent runs ignores the DAG's ``max_active_runs`` (Airflow 3 then asks for
``--reprocess-behavior failed``) - run the project's intervals one after another in
logical-date order, each restoring the state its predecessor published. A failed interval
holds the later ones until it is cleared or marked successful, as ``depends_on_past`` does.
(The stack lease makes concurrent runs of one stack wait for each other anyway, but in no
particular order.)
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from handoff_provider._compat import DAG, TaskGroup
from handoff_provider.factory.config import (
    MODES,
    ExecutionConfig,
    FactoryConfig,
    Mode,
    ProjectConfig,
    RenderConfig,
    render_and_execution,
    resolve_project_dir,
)
from handoff_provider.factory.converter import (
    build_tasks,
    default_stack,
    doc_md,
    ordered_runs,
    safe_id,
)
from handoff_provider.factory.errors import HandoffDagError
from handoff_provider.factory.executions import EXECUTIONS, EcsExecution, LocalExecution
from handoff_provider.factory.parse_cache import _CACHE as _CACHE  # (tests clear it)
from handoff_provider.factory.parse_cache import ProjectInfo, project_info
from handoff_provider.factory.schedules import airflow_schedule, interval_timetable

#: ``start_date`` of factory DAGs when none is given (with ``catchup=False`` only the
#: latest interval runs; backfills can go back to here).
DEFAULT_START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

_FROM_PROJECT: Any = object()  # sentinel: "schedule not given"


def _caller_dir(depth: int) -> str:
    """Directory of the file that called the public function (the DAG file)."""
    frame = sys._getframe(depth + 1)
    return _dir_of(frame.f_globals.get("__file__") or frame.f_code.co_filename)


@functools.lru_cache(maxsize=256)
def _dir_of(filename: str) -> str:
    return os.path.dirname(os.path.abspath(filename))


def _configs(
    project_dir: str | os.PathLike[str] | None,
    project_config: ProjectConfig | None,
    render_config: RenderConfig | None,
    execution_config: ExecutionConfig | None,
    kwargs: dict[str, Any],
    depth: int,
) -> tuple[FactoryConfig, ProjectInfo]:
    """A front end's configs (its shorthand keywords taken out of ``kwargs``) and the
    validated project; ``depth``: frames between here and the DAG file."""
    config = FactoryConfig.from_arguments(
        project_dir,
        project_config=project_config,
        render_config=render_config,
        execution_config=execution_config,
        keywords=kwargs,
        base=_caller_dir(depth),
    )
    return config, project_info(config.path)


def _project_schedule(project: ProjectInfo, notes: list[str]) -> Any:
    """The project's first ``schedules`` entry as an interval timetable (None without one);
    what became of each entry goes to ``notes``."""
    if not project.schedules:
        return None
    source = f"{os.path.join(project.path, 'project.yml')}: schedules[0].cron"
    converted = airflow_schedule(project.schedules[0], source=source)
    notes.append(f"schedule `{converted}` (UTC) from project.yml (`{project.schedules[0]}`)")
    for extra in project.schedules[1:]:
        notes.append(f"not scheduled (one schedule per DAG): `{extra}`")
    return interval_timetable(converted)


def handoff_dag(
    project_dir: str | os.PathLike[str] | None = None,
    *,
    project_config: ProjectConfig | None = None,
    render_config: RenderConfig | None = None,
    execution_config: ExecutionConfig | None = None,
    dag_id: str | None = None,
    schedule: Any = _FROM_PROJECT,
    start_date: datetime | None = None,
    catchup: bool = False,
    default_args: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    _caller_depth: int = 0,
    **kwargs: Any,
) -> DAG:
    """A DAG running one handoff project (see the module docstring).

    :param project_dir: the project (shorthand for ``ProjectConfig(project_dir)``); a
        relative path is relative to the DAG file.
    :param project_config: / ``render_config`` / ``execution_config``: the factory's
        configs (default: built from the shorthand keywords, else the defaults).
    :param dag_id: default ``handoff_<project folder name>``.
    :param schedule: default: the project's first ``schedules`` entry, else ``None``.
    :param kwargs: the shorthand keywords (``stack``, ``bucket``, ``aws_conn_id``,
        ``vars``, ``envs``, ``secret_envs``, ``mode``, ``push_kwargs``, ``execution``,
        ``ecs``, ``run_kwargs``), then anything else ``DAG`` takes. ``max_active_runs``
        defaults to 1, and the run task's ``depends_on_past`` to True, for a project that
        carries state (see the module docstring).
    """
    config, project = _configs(
        project_dir, project_config, render_config, execution_config, kwargs, 2 + _caller_depth
    )
    notes: list[str] = []
    if schedule is _FROM_PROJECT:
        schedule = _project_schedule(project, notes)
    if project.stateful and "max_active_runs" not in kwargs:
        kwargs["max_active_runs"] = 1
        notes.append(
            "one run at a time (`max_active_runs=1`): each run restores the state of the one before"
        )
    config = ordered_runs(config, project, default_args)
    if config.execution.operator_args.get("depends_on_past"):
        notes.append(
            "`run` depends on its past: backfills run their intervals in order, and a failed "
            "interval holds the later ones until it is cleared"
        )
    dag = DAG(
        dag_id=dag_id or f"handoff_{safe_id(project.name)}",
        schedule=schedule,
        start_date=start_date or DEFAULT_START_DATE,
        catchup=catchup,
        default_args=dict(default_args or {}),
        tags=list(tags) if tags is not None else ["handoff"],
        doc_md=kwargs.pop("doc_md", None) or doc_md(project, config, notes=notes),
        **kwargs,
    )
    with dag:
        build_tasks(project, config)
    return dag


def HandoffTaskGroup(
    project_dir: str | os.PathLike[str] | None = None,
    *,
    project_config: ProjectConfig | None = None,
    render_config: RenderConfig | None = None,
    execution_config: ExecutionConfig | None = None,
    group_id: str | None = None,
    _caller_depth: int = 0,
    **kwargs: Any,
) -> TaskGroup:
    """The same tasks as :func:`handoff_dag`, as a TaskGroup inside the current DAG::

    with DAG("etl", schedule="@daily", start_date=...) as dag:
        extract = HandoffTaskGroup("projects/extract", bucket="my-bucket")
        extract >> downstream_task

    ``kwargs``: the shorthand keywords of :func:`handoff_dag`, then anything else
    ``TaskGroup`` takes.
    """
    config, project = _configs(
        project_dir, project_config, render_config, execution_config, kwargs, 2 + _caller_depth
    )
    group = TaskGroup(group_id=group_id or safe_id(project.name), **kwargs)
    defaults = (group.default_args, getattr(group.dag, "default_args", None))
    with group:
        build_tasks(project, ordered_runs(config, project, *defaults))
    return group


def handoff_dags_for_folder(
    folder: str | os.PathLike[str],
    *,
    dag_id_prefix: str = "handoff_",
    stack_prefix: str = "",
    _caller_depth: int = 0,
    **kwargs: Any,
) -> dict[str, DAG]:
    """One DAG per project (subfolder with a ``project.yml``) of ``folder``; {dag_id: DAG}.

    Put the result in the DAG file's globals (``globals().update(...)``) so Airflow finds
    the DAGs. A relative ``folder`` is relative to the DAG file. ``kwargs`` go to
    :func:`handoff_dag` (a ``render_config``/``execution_config``, or their shorthand, is
    built once and serves every project).
    """
    base = resolve_project_dir(folder, base=_caller_dir(1 + _caller_depth))
    render, execution = render_and_execution(
        kwargs.pop("render_config", None), kwargs.pop("execution_config", None), kwargs
    )
    dags: dict[str, DAG] = {}
    for name in _project_names(base):
        dag = handoff_dag(
            os.path.join(base, name),
            render_config=render,
            execution_config=execution,
            dag_id=f"{dag_id_prefix}{safe_id(name)}",
            stack=f"{stack_prefix}{default_stack(name)}",
            **kwargs,
        )
        dags[dag.dag_id] = dag
    return dags


def _project_names(folder: str) -> list[str]:
    """The subfolders of ``folder`` holding a ``project.yml``, sorted: what
    ``folder.glob("*/project.yml")`` finds, in one directory listing (no ``Path`` per entry).
    A folder that is missing, or is one project, is an error: it would give no DAG and no
    import error to say why. An existing folder with no project yet gives none."""
    try:
        entries = os.scandir(folder)
    except FileNotFoundError:
        raise HandoffDagError(f"{folder}: folder of projects not found") from None
    except NotADirectoryError:
        raise HandoffDagError(f"{folder}: not a folder (of project folders)") from None
    except OSError as exc:
        raise HandoffDagError(f"{folder}: can't list the folder ({exc.strerror})") from None
    with entries:
        names = sorted(
            entry.name
            for entry in entries
            if entry.is_dir() and os.path.exists(os.path.join(entry.path, "project.yml"))
        )
    if not names and os.path.exists(os.path.join(folder, "project.yml")):
        raise HandoffDagError(
            f"{folder}: is a project itself, not a folder of projects: use handoff_dag()"
        )
    return names


__all__ = [
    "DEFAULT_START_DATE",
    "EXECUTIONS",
    "MODES",
    "EcsExecution",
    "ExecutionConfig",
    "HandoffDagError",
    "HandoffTaskGroup",
    "LocalExecution",
    "Mode",
    "ProjectConfig",
    "ProjectInfo",
    "RenderConfig",
    "airflow_schedule",
    "handoff_dag",
    "handoff_dags_for_folder",
    "interval_timetable",
    "project_info",
]
