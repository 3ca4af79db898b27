"""Project folder -> Airflow DAG (:func:`handoff_dag`) or task group (:func:`HandoffTaskGroup`).

::

    from handoff_provider.dag_factory import handoff_dag

    dag = handoff_dag("../examples/projects/01_word_count", bucket="my-bucket")

Modes (``mode=``):

* ``"push_and_run"`` (default): ``push_config`` (project.yml + config/ -> SSM) ->
  ``push_files`` (files/ -> S3) -> ``run`` from the remote config, i.e. exactly what a
  Fargate run or another worker would see;
* ``"run_remote"``: ``run`` only, from the config and files already in the stack;
* ``"run_local"``: ``run`` only, straight from the project directory on the worker.

Execution (``execution=``): ``"local"`` runs on the Airflow worker
(``HandoffRunOperator``); ``"ecs"`` runs in an ECS (Fargate) task
(``HandoffEcsRunOperator``, imported only then, settings from ``ecs={...}``).

Parse time: building a DAG reads ``project.yml`` and ``config/`` (validating them, so a
broken project is an import error naming its file), and nothing else: no AWS call, no
network, no venv. The validated project is cached per process by the files' mtimes, so
re-parsing an unchanged folder costs a few ``stat()`` calls per project.

Schedules: when ``schedule`` is not given, the first entry of the project's ``schedules``
is used (AWS EventBridge 6-field cron converted to Airflow's 5-field cron, ``rate(...)``
to a timedelta) as an *interval* timetable in UTC, so each run's ``start_at``/``end_at``
is the whole period since the previous run, on Airflow 2 and 3 alike (see
:func:`interval_timetable`); further entries are listed in the DAG's documentation, not
scheduled. A project without ``schedules`` gives an unscheduled (manual/backfill) DAG.

Ordered runs: a project that carries state (an active task whose ``state_from`` is not
``none``) gets ``max_active_runs=1`` unless the DAG is given another value, and its ``run``
task ``depends_on_past=True`` unless ``run_kwargs`` or ``default_args`` say otherwise. So
catch-up runs and backfills - Airflow 2's ``airflow dags backfill`` and Airflow 3's
``airflow backfill create``, whose own limit of 10 concurrent runs ignores the DAG's
``max_active_runs`` (Airflow 3 then asks for ``--reprocess-behavior failed``) - run the
project's intervals one after another in logical-date order, each restoring the state its
predecessor published. A failed interval holds the later ones until it is cleared or
marked successful, as ``depends_on_past`` does. (The stack lease makes concurrent runs of
one stack wait for each other anyway, but in no particular order.)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from handoff_provider._compat import (
    DAG,
    CronDataIntervalTimetable,
    DeltaDataIntervalTimetable,
    TaskGroup,
    provider_setting,
)

if TYPE_CHECKING:
    from handoff_provider.core.load.project import Project

Mode = Literal["push_and_run", "run_remote", "run_local"]
Execution = Literal["local", "ecs"]

MODES: tuple[str, ...] = ("push_and_run", "run_remote", "run_local")
EXECUTIONS: tuple[str, ...] = ("local", "ecs")
#: ``start_date`` of factory DAGs when none is given (with ``catchup=False`` only the
#: latest interval runs; backfills can go back to here).
DEFAULT_START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)

_FROM_PROJECT: Any = object()  # sentinel: "schedule not given"


class HandoffDagError(ValueError):
    """The factory's arguments or a project's schedule can't make a DAG."""


# --------------------------------------------------------------------------- schedules

_DOW_NUMBER = re.compile(r"\d+")
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.I)


def _convert_dow(field: str, *, source: str) -> str:
    """AWS day-of-week numbers are 1-7 = SUN-SAT; cron's are 0-6 = SUN-SAT."""

    def shift(match: re.Match[str]) -> str:
        number = int(match.group())
        if not 1 <= number <= 7:
            raise HandoffDagError(
                f"{source}: day-of-week {number} out of range (AWS cron uses 1-7, SUN=1)"
            )
        return str(number - 1)

    converted = []
    for item in field.split(","):
        if "#" in item:  # 6#3: the third Friday; only the day is a day number
            day, nth = item.split("#", 1)
            converted.append(f"{_DOW_NUMBER.sub(shift, day)}#{nth}")
        elif "/" in item:  # 2/2 or 1-5/2: the step is a count, not a day
            days, step = item.split("/", 1)
            converted.append(f"{_DOW_NUMBER.sub(shift, days)}/{step}")
        else:
            converted.append(_DOW_NUMBER.sub(shift, item))
    return ",".join(converted)


def airflow_schedule(expression: str, *, source: str = "schedule") -> str | timedelta:
    """An EventBridge/handoff schedule expression as an Airflow ``schedule``.

    * ``0 0 * * ? *`` (AWS 6 fields: min hour day-of-month month day-of-week year) ->
      ``0 0 * * *``: ``?`` becomes ``*``, day-of-week numbers shift from 1-7 (SUN=1) to
      0-6 (SUN=0), the year must be ``*`` (Airflow crons have no year);
    * ``cron(...)`` is unwrapped; a 5-field cron or an Airflow preset (``@daily``) is kept;
    * ``rate(5 minutes)`` -> ``timedelta(minutes=5)``.
    """
    text = " ".join(str(expression).split())
    if not text:
        raise HandoffDagError(f"{source}: empty schedule expression")
    if text.startswith("@"):
        return text
    rate = _RATE.match(text)
    if rate:
        amount, unit = int(rate.group(1)), rate.group(2).lower().rstrip("s")
        return timedelta(**{f"{unit}s": amount})
    inner = re.match(r"^cron\((.*)\)$", text, re.I)
    if inner:
        text = " ".join(inner.group(1).split())
    fields = text.split(" ")
    if len(fields) == 5:
        return text
    if len(fields) != 6:
        raise HandoffDagError(
            f"{source}: {text!r} is not a cron expression (5 fields, or AWS's 6 with a year)"
        )
    minute, hour, dom, month, dow, year = fields
    if year not in ("*", "?"):
        raise HandoffDagError(
            f"{source}: {text!r} restricts the year ({year}); Airflow crons have no year field"
        )
    dom = "*" if dom == "?" else dom
    dow = "*" if dow == "?" else _convert_dow(dow, source=source)
    return " ".join((minute, hour, dom, month, dow))


def interval_timetable(schedule: str | timedelta) -> Any:
    """A timetable whose runs cover whole periods, on every Airflow line.

    Airflow 3 turns a cron string into a ``CronTriggerTimetable`` whose data interval is
    empty (start == end); handoff projects read ``start_at``/``end_at`` as the period to
    process, so project schedules get ``CronDataIntervalTimetable`` (the 2.x behaviour:
    the 06:00 run processes the previous day) or ``DeltaDataIntervalTimetable``. AWS
    schedules are UTC. Presets without a period (``@once``, ``@continuous``) stay as given.
    """
    if isinstance(schedule, timedelta):
        return DeltaDataIntervalTimetable(schedule)
    if schedule in ("@once", "@continuous", "@none"):
        return schedule
    return CronDataIntervalTimetable(schedule, timezone="UTC")


# --------------------------------------------------------------------------- projects


@dataclass(frozen=True)
class ProjectInfo:
    """What the factory needs of a project at parse time (no config value)."""

    path: Path
    name: str
    description: str | None
    schedules: tuple[str, ...]
    shell_lines: tuple[str, ...]
    #: A run carries state to the next (``Project.stateful``): runs are kept in order.
    stateful: bool = True


_CACHE: dict[Path, tuple[tuple[Any, ...], ProjectInfo]] = {}
_CACHE_FORMAT = 2


def _signature(project_dir: Path) -> tuple[Any, ...]:
    """mtime/size of project.yml and of everything under config/ (what compiling reads)."""
    parts: list[Any] = []
    try:
        stat = os.stat(project_dir / "project.yml")
        parts.append((stat.st_mtime_ns, stat.st_size))
    except OSError:
        parts.append(None)
    pending = [str(project_dir / "config")]
    while pending:
        directory = pending.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                parts.append((entry.path, stat.st_mtime_ns, stat.st_size))
                if entry.is_dir():
                    pending.append(entry.path)
    parts.sort(key=repr)
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def _disk_cache_dir() -> Path | None:
    """Where validated projects are remembered across processes (None: disabled).

    ``[handoff] parse_cache_dir``; default ``$AIRFLOW_HOME/.cache/handoff-parse``; ``none``
    disables it. DAG processors parse every file in a fresh process, so without it each
    parse would re-read and re-validate every project.
    """
    configured = (provider_setting("parse_cache_dir") or "").strip()
    if configured.lower() in ("none", "off", "false", "-"):
        return None
    if configured:
        return Path(os.path.expanduser(configured))
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / ".cache" / "handoff-parse"


def _cache_key(path: Path, signature: tuple[Any, ...]) -> str:
    """What a cached validation depends on: the project files, this package, its schema."""
    from handoff_provider import __version__

    # The compiled schema: regenerated whenever project_schema.json or a task kind's
    # fragment (core/steps/) changes (a test fails when it is stale).
    schema = Path(__file__).parent / "core" / "load" / "_project_validator.py"
    try:
        schema_stat: Any = (schema.stat().st_mtime_ns, schema.stat().st_size)
    except OSError:
        schema_stat = None
    payload = json.dumps([_CACHE_FORMAT, __version__, schema_stat, str(path), signature])
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_disk_cache(path: Path, key: str) -> ProjectInfo | None:
    directory = _disk_cache_dir()
    if directory is None:
        return None
    entry = directory / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    try:
        data = json.loads(entry.read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        info = data["info"]
        return ProjectInfo(
            path=path,
            name=path.name,
            description=info["description"],
            schedules=tuple(info["schedules"]),
            shell_lines=tuple(info["shell_lines"]),
            stateful=bool(info["stateful"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_disk_cache(info: ProjectInfo, key: str) -> None:
    directory = _disk_cache_dir()
    if directory is None:
        return
    entry = directory / f"{hashlib.sha256(str(info.path).encode()).hexdigest()[:32]}.json"
    data = {
        "key": key,
        "project": str(info.path),
        "info": {
            "description": info.description,
            "schedules": list(info.schedules),
            "shell_lines": list(info.shell_lines),
            "stateful": info.stateful,
        },
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, entry)
    except OSError:
        pass  # a cache: never fail a parse over it


def project_info(project_dir: str | os.PathLike[str]) -> ProjectInfo:
    """Validate a project directory and return what a DAG needs.

    Raises ``ProjectError`` naming the file at fault, which makes the DAG file fail to
    import with that message. A project validated before and unchanged since (same
    mtimes and sizes of ``project.yml`` and ``config/``, same package version) is not
    validated again: the result is kept in memory and in ``[handoff] parse_cache_dir``.
    Only valid projects are remembered, so a broken one fails every parse.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(project_dir))))
    signature = _signature(path)
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    key = _cache_key(path, signature)
    info = _read_disk_cache(path, key)
    if info is None:
        from handoff_provider.core.load.project import load_project

        project: Project = load_project(path)
        info = ProjectInfo(
            path=path,
            name=path.name,
            description=project.description,
            schedules=tuple(s.cron for s in project.schedules),
            shell_lines=tuple(project.shell_lines()),
            stateful=project.stateful,
        )
        _write_disk_cache(info, key)
    _CACHE[path] = (signature, info)
    return info


def _caller_dir(depth: int) -> Path:
    """Directory of the file that called the public function (the DAG file)."""
    frame = sys._getframe(depth + 1)
    return _dir_of(frame.f_globals.get("__file__") or frame.f_code.co_filename)


@functools.lru_cache(maxsize=256)
def _dir_of(filename: str) -> Path:
    return Path(os.path.abspath(filename)).parent


def resolve_project_dir(project_dir: str | os.PathLike[str], *, base: Path) -> Path:
    """An absolute project path; a relative one is relative to the DAG file's folder.

    Normalised without touching the file system (``..`` removed lexically).
    """
    path = os.path.expanduser(os.fspath(project_dir))
    return Path(os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path)))


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _safe_id(text: str) -> str:
    return _ID_UNSAFE.sub("_", text).strip("_.-") or "project"


def default_stack(project: ProjectInfo) -> str:
    """A project's stack when none is given: its directory name, made safe."""
    return _safe_id(project.name).replace("_", "-")  # same rule in handoff_dags_for_folder


def _doc_md(project: ProjectInfo, *, mode: str, execution: str, notes: Sequence[str]) -> str:
    lines = [f"### handoff project `{project.name}`", ""]
    if project.description:
        lines += [project.description, ""]
    # A language on the fence: Airflow 3's markdown renders a bare fence as inline code.
    lines += [f"`{project.path}` · mode `{mode}` · execution `{execution}`", "", "```sh"]
    lines += list(project.shell_lines)
    lines += ["```"]
    if notes:
        lines += ["", *[f"* {note}" for note in notes]]
    return "\n".join(lines)


# --------------------------------------------------------------------------- builders


def _build_tasks(
    project: ProjectInfo,
    *,
    stack: str,
    bucket: str | None,
    mode: str,
    execution: str,
    ecs: Mapping[str, Any] | None,
    aws_conn_id: str | None,
    vars: Mapping[str, Any] | None,
    envs: Mapping[str, Any] | None,
    secret_envs: Mapping[str, Any] | None,
    run_kwargs: Mapping[str, Any] | None,
    push_kwargs: Mapping[str, Any] | None,
) -> list[Any]:
    """Create the tasks in the current DAG/TaskGroup context; returns them in order."""
    if mode not in MODES:
        raise HandoffDagError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if execution not in EXECUTIONS:
        raise HandoffDagError(f"execution {execution!r}: use one of {', '.join(EXECUTIONS)}")
    if execution == "ecs" and mode == "run_local":
        raise HandoffDagError(
            "execution 'ecs' runs from the remote config: use mode 'push_and_run' or 'run_remote'"
        )
    if execution != "ecs" and ecs:
        raise HandoffDagError("ecs={...} settings given but execution is not 'ecs'")

    tasks: list[Any] = []
    common = {"stack": stack, "bucket": bucket, "aws_conn_id": aws_conn_id}
    if mode == "push_and_run":
        from handoff_provider.operators.config import (
            HandoffConfigPushOperator,
            HandoffFilesPushOperator,
        )

        tasks.append(
            HandoffConfigPushOperator(
                task_id="push_config",
                project_dir=str(project.path),
                **common,
                **dict(push_kwargs or {}),
            )
        )
        tasks.append(
            HandoffFilesPushOperator(task_id="push_files", project_dir=str(project.path), **common)
        )

    if execution == "ecs":
        from handoff_provider.operators.ecs import HandoffEcsRunOperator

        if envs or secret_envs:
            raise HandoffDagError(
                "envs/secret_envs are not sent to ECS tasks (they would show in the ECS "
                "console): put them in the project (envs) or the task definition (secrets)"
            )
        settings = dict(ecs or {})
        register = settings.pop("register", False)
        if register:
            if "task_definition" in settings:
                raise HandoffDagError(
                    "ecs={'register': True} registers the task definition of project.yml's "
                    "deploy: drop ecs['task_definition']"
                )
            from handoff_provider.operators.deploy import HandoffRegisterTaskDefinitionOperator

            registering = HandoffRegisterTaskDefinitionOperator(
                task_id="register_task_definition",
                project_dir=str(project.path),
                stack=stack,
                aws_conn_id=aws_conn_id,
                region_name=settings.get("region_name"),
            )
            tasks.append(registering)
            settings["task_definition"] = registering.output
        if "cluster" not in settings or "task_definition" not in settings:
            raise HandoffDagError(
                "execution 'ecs' needs ecs={'cluster': ..., 'task_definition': ...} "
                "(or ecs={'cluster': ..., 'register': True})"
            )
        tasks.append(
            HandoffEcsRunOperator(
                task_id="run", vars=dict(vars or {}), **common, **settings, **dict(run_kwargs or {})
            )
        )
    else:
        from handoff_provider.operators.run import HandoffRunOperator

        tasks.append(
            HandoffRunOperator(
                task_id="run",
                project_dir=str(project.path) if mode == "run_local" else None,
                vars=dict(vars or {}),
                envs=dict(envs or {}),
                secret_envs=dict(secret_envs or {}),
                **common,
                **dict(run_kwargs or {}),
            )
        )
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream
    return tasks


def _ordered_run_kwargs(
    project: ProjectInfo,
    run_kwargs: Mapping[str, Any] | None,
    *defaults: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``run_kwargs`` plus ``depends_on_past=True`` for a project that carries state, unless
    they or the ``default_args`` in ``defaults`` set it (see the module docstring)."""
    kwargs = dict(run_kwargs or {})
    chosen = "depends_on_past" in kwargs or any("depends_on_past" in (d or {}) for d in defaults)
    if project.stateful and not chosen:
        kwargs["depends_on_past"] = True
    return kwargs


def handoff_dag(
    project_dir: str | os.PathLike[str],
    *,
    dag_id: str | None = None,
    stack: str | None = None,
    bucket: str | None = None,
    schedule: Any = _FROM_PROJECT,
    start_date: datetime | None = None,
    catchup: bool = False,
    mode: Mode = "push_and_run",
    execution: Execution = "local",
    ecs: Mapping[str, Any] | None = None,
    aws_conn_id: str | None = "aws_default",
    vars: Mapping[str, Any] | None = None,
    envs: Mapping[str, Any] | None = None,
    secret_envs: Mapping[str, Any] | None = None,
    run_kwargs: Mapping[str, Any] | None = None,
    push_kwargs: Mapping[str, Any] | None = None,
    default_args: Mapping[str, Any] | None = None,
    tags: Sequence[str] | None = None,
    _caller_depth: int = 0,
    **dag_kwargs: Any,
) -> DAG:
    """A DAG running the handoff project in ``project_dir`` (see the module docstring).

    :param project_dir: the project; a relative path is relative to the DAG file.
    :param dag_id: default ``handoff_<project folder name>``.
    :param stack: default the project folder name (``-`` for ``_``).
    :param bucket: default ``HANDOFF_BUCKET``/``S3_BUCKET_NAME`` (at run time; at parse
        time too, for the ``s3://<bucket>/<stack>/last/`` outlet).
    :param schedule: default: the project's first ``schedules`` entry, else ``None``.
    :param mode: ``push_and_run`` | ``run_remote`` | ``run_local``.
    :param execution: ``local`` (worker) | ``ecs`` (Fargate; settings in ``ecs``).
    :param vars: / ``envs`` / ``secret_envs``: passed to the run task (templated).
    :param run_kwargs: more arguments of the run operator (``retries``, ``workspace``,
        ``execution_timeout``, ...); ``push_kwargs`` those of the config push
        (``allow_advanced_tier``, ``kms_key_id``).
    :param dag_kwargs: anything else ``DAG`` takes. ``max_active_runs`` defaults to 1,
        and the run task's ``depends_on_past`` to True, for a project that carries state
        (see the module docstring).
    """
    project = project_info(resolve_project_dir(project_dir, base=_caller_dir(1 + _caller_depth)))
    notes: list[str] = []
    if schedule is _FROM_PROJECT:
        schedule = None
        if project.schedules:
            source = f"{project.path / 'project.yml'}: schedules[0].cron"
            converted = airflow_schedule(project.schedules[0], source=source)
            schedule = interval_timetable(converted)
            notes.append(
                f"schedule `{converted}` (UTC) from project.yml (`{project.schedules[0]}`)"
            )
            for extra in project.schedules[1:]:
                notes.append(f"not scheduled (one schedule per DAG): `{extra}`")
    if project.stateful and "max_active_runs" not in dag_kwargs:
        dag_kwargs["max_active_runs"] = 1
        notes.append(
            "one run at a time (`max_active_runs=1`): each run restores the state of the one before"
        )
    run_kwargs = _ordered_run_kwargs(project, run_kwargs, default_args)
    if run_kwargs.get("depends_on_past"):
        notes.append(
            "`run` depends on its past: backfills run their intervals in order, and a failed "
            "interval holds the later ones until it is cleared"
        )
    dag = DAG(
        dag_id=dag_id or f"handoff_{_safe_id(project.name)}",
        schedule=schedule,
        start_date=start_date or DEFAULT_START_DATE,
        catchup=catchup,
        default_args=dict(default_args or {}),
        tags=list(tags) if tags is not None else ["handoff"],
        doc_md=dag_kwargs.pop("doc_md", None)
        or _doc_md(project, mode=mode, execution=execution, notes=notes),
        **dag_kwargs,
    )
    with dag:
        _build_tasks(
            project,
            stack=stack or default_stack(project),
            bucket=bucket,
            mode=mode,
            execution=execution,
            ecs=ecs,
            aws_conn_id=aws_conn_id,
            vars=vars,
            envs=envs,
            secret_envs=secret_envs,
            run_kwargs=run_kwargs,
            push_kwargs=push_kwargs,
        )
    return dag


def HandoffTaskGroup(
    project_dir: str | os.PathLike[str],
    *,
    group_id: str | None = None,
    stack: str | None = None,
    bucket: str | None = None,
    mode: Mode = "push_and_run",
    execution: Execution = "local",
    ecs: Mapping[str, Any] | None = None,
    aws_conn_id: str | None = "aws_default",
    vars: Mapping[str, Any] | None = None,
    envs: Mapping[str, Any] | None = None,
    secret_envs: Mapping[str, Any] | None = None,
    run_kwargs: Mapping[str, Any] | None = None,
    push_kwargs: Mapping[str, Any] | None = None,
    _caller_depth: int = 0,
    **group_kwargs: Any,
) -> TaskGroup:
    """The same tasks as :func:`handoff_dag`, as a TaskGroup inside the current DAG::

    with DAG("etl", schedule="@daily", start_date=...) as dag:
        extract = HandoffTaskGroup("projects/extract", bucket="my-bucket")
        extract >> downstream_task
    """
    project = project_info(resolve_project_dir(project_dir, base=_caller_dir(1 + _caller_depth)))
    group = TaskGroup(group_id=group_id or _safe_id(project.name), **group_kwargs)
    with group:
        _build_tasks(
            project,
            stack=stack or default_stack(project),
            bucket=bucket,
            mode=mode,
            execution=execution,
            ecs=ecs,
            aws_conn_id=aws_conn_id,
            vars=vars,
            envs=envs,
            secret_envs=secret_envs,
            run_kwargs=_ordered_run_kwargs(
                project, run_kwargs, group.default_args, getattr(group.dag, "default_args", None)
            ),
            push_kwargs=push_kwargs,
        )
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
    the DAGs. A relative ``folder`` is relative to the DAG file.
    """
    base = resolve_project_dir(folder, base=_caller_dir(1 + _caller_depth))
    dags: dict[str, DAG] = {}
    for project_dir in sorted(p.parent for p in base.glob("*/project.yml")):
        name = _safe_id(project_dir.name)
        dag = handoff_dag(
            project_dir,
            dag_id=f"{dag_id_prefix}{name}",
            stack=f"{stack_prefix}{_safe_id(project_dir.name).replace('_', '-')}",
            **kwargs,
        )
        dags[dag.dag_id] = dag
    return dags


__all__ = [
    "DEFAULT_START_DATE",
    "HandoffDagError",
    "HandoffTaskGroup",
    "ProjectInfo",
    "airflow_schedule",
    "handoff_dag",
    "handoff_dags_for_folder",
    "interval_timetable",
    "project_info",
]
