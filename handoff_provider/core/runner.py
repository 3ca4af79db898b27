"""Run a project's tasks in a workspace and summarise what happened.

:class:`ProjectRunner` turns each active task into processes (via
:func:`handoff_provider.core.pipeline.run_pipeline`) and records a :class:`RunSummary`
in ``artifacts/run.json`` — on success and on failure — before raising.

Per task, in project order (``active: false`` tasks are recorded as ``skipped``):

* ``pipeline:`` — one pipeline, ``stage1 | stage2 | ...`` (see ``pipeline.py`` for
  pipefail/SIGPIPE/timeout semantics).
* ``commands:`` — each command alone, in order, stopping at the first failure; command
  *n*'s stdout goes to ``artifacts/<task>.<n>.stdout.log``; the task's ``timeout``
  covers all of them.
* ``lambda:`` — one Lambda invocation (:class:`~handoff_provider.core.lambda_invoke.LambdaStep`,
  its strings rendered like ``args``), recorded as one stage. The response (status,
  request id, payload) is saved to ``artifacts/lambda-<task>.json``, also when the
  function reports an error, which fails the task with the function's own message. The
  client has a 900 s read timeout and no retries for ``RequestResponse``
  (:func:`~handoff_provider.core.lambda_invoke.lambda_client_config`); the task's
  ``timeout`` and :meth:`ProjectRunner.terminate` stop waiting for it.
* ``s3_touch:`` — one empty flag object (:class:`~handoff_provider.core.transfers.TouchStep`),
  recorded as one stage.

The project's ``transfers:`` (:mod:`handoff_provider.core.run_transfers`) wrap the tasks:
``files/`` templates are rendered, every template is rendered (args, envs, steps, the
transfer locations), **then** the inputs are downloaded into ``files/<dest>/`` (so a
dropped file is never rendered as a template), the tasks run, and only when all of them
succeeded the outputs are uploaded, their flag files written and the inputs' post-copy
actions applied. What was transferred is recorded in the summary (``transfers``: URIs and
statuses). ``lambda``/``s3_touch``/``transfers`` need the runner's ``client_factory``
(``factory(service_name, config=None)``); without one the run fails before anything
starts with a :class:`ConfigurationError`.

The last stage's (last command's) output becomes ``artifacts/state`` according to the
task's ``state_from``:

* ``stdout`` (default): stdout is written to a temp file in ``artifacts/`` and renamed
  to ``state`` only when the task succeeded — a failed run never clobbers the previous
  state, which the next run reads (``--state artifacts/state``). When the task fails,
  that output is kept as ``artifacts/<task>.stdout.log`` (``<task>.<n>.stdout.log`` for
  the last command of a ``commands:`` task) for debugging.
* ``stderr``: the original handoff behaviour — the last stage's stderr becomes the state
  (again only on success); its stdout goes to ``artifacts/<task>.stdout.log``.
* ``none``: state untouched; stdout goes to ``artifacts/<task>.stdout.log``.

A failed task with ``state_on_failure: last_line`` (for targets that emit a STATE line
only after persisting the records before it, as Meltano expects) keeps the last complete
(newline-terminated, non-blank) line of its state output as ``artifacts/state``
(``TaskResult.partial_state``; the run is still ``failed``, and is published to ``last/``
so that the next run resumes from there). The default ``discard`` keeps the previous state.

Every stage's stderr is streamed live to ``on_stderr_line(task, stage_number, command,
line)`` (default: ``log("[task:stage command] line")``) and saved to
``artifacts/<task>.<stage>.stderr.log``. Stage numbers are **1-based** everywhere
(messages, callbacks, file names, the summary).

Commands run in the workspace with ``os.environ`` + the project's ``envs`` (rendered) +
the runner's ``env`` (run context ``HANDOFF_*`` variables, secret envs), later ones
winning. A stage with a ``venv`` additionally gets ``VIRTUAL_ENV`` and ``<venv>/bin``
first on ``PATH`` (no ``activate``), and its command is looked up there first. A command
containing a slash (``files/stats_collector.py``) is relative to the workspace; a script
there that lost its executable bit (files synced from S3 do) but starts with ``#!`` is
made executable. ``args`` are rendered (Jinja) and split into words like a shell would,
but no shell runs. Every command is resolved and every template rendered before the
first process starts, so a typo fails the run before it touched anything.

What the summary and the logs contain: commands *as written* (command + unrendered
``args`` template), exit codes, durations, byte counts, error messages — never rendered
args, env values or config file contents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from handoff_provider.core.errors import ConfigurationError, HandoffError, StageError
from handoff_provider.core.lambda_invoke import (
    LAMBDA_MAX_SECONDS,
    LambdaFunctionError,
    LambdaResult,
    LambdaStep,
    lambda_client_config,
    save_lambda_response,
)
from handoff_provider.core.pipeline import (
    DEFAULT_KILL_GRACE,
    PipelineControl,
    PipelineResult,
    StageOutcome,
    StageSpec,
    run_pipeline,
)
from handoff_provider.core.project import Command, Project, Task
from handoff_provider.core.run_transfers import TransferPhase
from handoff_provider.core.safe_tree import shown
from handoff_provider.core.templating import render_text, render_workspace_files, split_args
from handoff_provider.core.transfers import TouchStep
from handoff_provider.core.workspace import Workspace

_logger = logging.getLogger(__name__)

LogFn = Callable[[str], None]
StderrLineFn = Callable[[str, int, str, str], None]
#: ``client_factory(service_name, config=None) -> botocore client`` (see stores/_aws.py).
ClientFactory = Callable[..., Any]

#: How often a lambda / s3_touch wait checks for terminate() and the task timeout.
_STEP_POLL_SECONDS = 0.05
#: Why a run hit by ``timeout_errors`` ended (Airflow's execution_timeout, ...).
CALLER_TIMEOUT = "stopped by the caller's time limit"
#: How much of a ``commands:`` command's stdout goes to the log (all of it to its file).
_STDOUT_LOG_LIMIT = 64 * 1024


# --------------------------------------------------------------------------- summary


@dataclass
class StageResult:
    """One stage (or one command of a ``commands:`` task).

    ``exit_code`` uses the shell convention (128 + N when killed by signal N, ``signal``
    then names it); ``None`` when the stage never ran. ``status``: ``ok``, ``sigpipe``
    (killed by SIGPIPE because its reader finished early: not a failure), ``failed``,
    ``not_run``. ``bytes_out``: bytes written to the next stage / the output file, when
    measurable (see ``pipeline.py``).
    """

    index: int
    command: str
    exit_code: int | None = None
    signal: str | None = None
    seconds: float | None = None
    bytes_out: int | None = None
    status: str = "not_run"
    #: The stage as the shell line doing the same, templates rendered, secrets masked.
    rendered: str | None = None

    @classmethod
    def from_outcome(cls, outcome: StageOutcome) -> StageResult:
        if outcome.returncode is None:
            status = "not_run"
        elif outcome.excused_sigpipe:
            status = "sigpipe"
        else:
            status = "ok" if outcome.returncode == 0 else "failed"
        return cls(
            index=outcome.number,
            command=outcome.label,
            exit_code=outcome.exit_code,
            signal=outcome.signal_name,
            seconds=round(outcome.seconds, 3) if outcome.returncode is not None else None,
            bytes_out=outcome.bytes_out,
            status=status,
        )


@dataclass
class TaskResult:
    """One task: ``status`` is ``success``, ``failed``, ``skipped`` (inactive) or
    ``not_run`` (an earlier task failed / the run was terminated)."""

    name: str
    kind: str
    status: str = "not_run"
    state_from: str = "stdout"
    state_updated: bool = False
    #: A failed task kept its last complete state line (``state_on_failure: last_line``).
    partial_state: bool = False
    timed_out: bool = False
    seconds: float | None = None
    error: str | None = None
    stages: list[StageResult] = field(default_factory=list)


#: ``RunSummary.status`` values of a finished run that did not succeed.
FAILED_STATUSES = ("failed", "timed_out", "killed")


@dataclass
class RunSummary:
    """What a run did; :meth:`to_dict` is JSON-safe and holds no secret.

    ``status``: ``running`` (written when the run starts), then ``success``, ``failed``,
    ``timed_out`` (a task's ``timeout`` or the caller's, e.g. Airflow's
    ``execution_timeout``) or ``killed`` (terminated: SIGTERM, Airflow's ``on_kill``);
    ``error`` says why. ``run_key`` and ``data_interval`` (``{"start", "end"}``, ISO
    strings or None) identify the run, ``origin`` who started it (``RunContext.origin``).
    ``transfers`` (only for a project with ``transfers:``): ``{"inputs", "outputs",
    "flags", "post_copy"}``, lists of ``{"uri", "status", ...}``."""

    status: str = "running"
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    ended_at: datetime | None = None
    tasks: list[TaskResult] = field(default_factory=list)
    transfers: dict[str, Any] | None = None
    run_key: str | None = None
    data_interval: dict[str, str | None] | None = None
    origin: dict[str, str | int] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    @property
    def keeps_partial_state(self) -> bool:
        """A failed run whose state is the last complete line of a failed task's output."""
        return not self.succeeded and any(task.partial_state for task in self.tasks)

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "error": self.error,
            "run_key": self.run_key,
            "data_interval": self.data_interval,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "seconds": self.seconds,
            "tasks": [asdict(task) for task in self.tasks],
        }
        if self.transfers is not None:
            data["transfers"] = self.transfers
        if self.origin is not None:
            data["origin"] = self.origin
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """Read back ``artifacts/run.json`` (e.g. to know whether the last run succeeded)."""
        task_fields = {f.name for f in dataclasses.fields(TaskResult)} - {"stages"}
        stage_fields = {f.name for f in dataclasses.fields(StageResult)}
        tasks = []
        for task in data.get("tasks", []):
            stages = [
                StageResult(**{k: v for k, v in stage.items() if k in stage_fields})
                for stage in task.get("stages", [])
            ]
            fields = {k: v for k, v in task.items() if k in task_fields}
            tasks.append(TaskResult(**fields, stages=stages))
        ended = data.get("ended_at")
        return cls(
            status=data["status"],
            error=data.get("error"),
            started_at=datetime.fromisoformat(data["started_at"]),
            ended_at=datetime.fromisoformat(ended) if ended else None,
            tasks=tasks,
            transfers=data.get("transfers"),
            run_key=data.get("run_key"),
            data_interval=data.get("data_interval"),
            origin=data.get("origin"),
        )

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the end of the run (``ended_at`` now unless already set)."""
        self.status = status
        if error is not None or status == "success":
            self.error = error
        if self.ended_at is None:
            self.ended_at = datetime.now(timezone.utc)


def write_run_summary(workspace: Workspace, summary: RunSummary) -> None:
    """Write ``artifacts/run.json`` atomically (``artifacts/`` re-created if a command
    removed it). Raises ``OSError`` when it can't be written."""
    path = workspace.run_summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".run.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def describe_exception(exc: BaseException, what: str = "internal error") -> str:
    """``internal error (OSError: [Errno 2] ...)``: what ended a run other than a handoff
    error (pass it through the run's redactor before showing it)."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{what} ({name}: {text})" if text else f"{what} ({name})"


def read_run_summary(workspace: Workspace | Path) -> RunSummary | None:
    """The summary of the last run in ``workspace`` (``None`` when there is none)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    try:
        data = json.loads(ws.run_summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return RunSummary.from_dict(data)


# --------------------------------------------------------------------------- planning


def command_label(command: Command) -> str:
    """The command as written: name + unrendered args template (safe to show), on one
    line (a newline in ``args`` is shown as ``\\n``)."""
    label = f"{command.command} {command.args}".rstrip() if command.args else command.command
    return shown(label)


@dataclass
class _TaskPlan:
    task: Task
    stages: list[StageSpec]
    step: LambdaStep | TouchStep | None = None  # rendered (lambda / s3_touch tasks)
    label: str = ""
    #: Each stage as a shell line (program as written, rendered words), secrets masked.
    rendered: list[str] = field(default_factory=list)


def step_label(task: Task) -> str:
    """A lambda / s3_touch step as written (unrendered): safe to show and record."""
    step = task.step
    if isinstance(step, LambdaStep):
        return f"lambda {step.function} ({step.invocation_type})"
    if isinstance(step, TouchStep):
        return f"s3_touch s3://{step.bucket}/{step.key}"
    return task.kind


def _stage_env(base: Mapping[str, str], venv_dir: Path | None) -> dict[str, str]:
    env = dict(base)
    if venv_dir is not None:
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = str(venv_dir / "bin") + os.pathsep + env.get("PATH", os.defpath)
    return env


def _same(text: str) -> str:
    return text


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    return value


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


class ProjectRunner:
    """Run ``project``'s active tasks in ``workspace``; see the module docstring.

    ``venvs`` maps venv names to venv directories (from ``install_venvs``);
    ``variables`` are the template variables (``build_variables``); ``env`` extra
    environment for every command; ``log`` receives progress lines;
    ``on_stderr_line(task, stage_number, command_name, line)`` every stderr line.
    ``kill_grace`` is the time between SIGTERM and SIGKILL on timeout/terminate.
    ``client_factory(service_name, config=None)`` makes the AWS clients of ``lambda``/
    ``s3_touch`` tasks and ``transfers``; ``redact(text)`` is applied to the error messages,
    rendered command lines and transfer URIs recorded in the summary and logged (it hides
    the project's secrets and ``ssm()`` values). ``log_error`` gets the failure lines
    (default: ``log``). ``timeout_errors``: exceptions of the caller meaning its time
    limit hit (Airflow's ``AirflowTaskTimeout``): the run is then ``timed_out``.
    A runner runs once; :meth:`terminate` may be called any time, from any thread.
    """

    def __init__(
        self,
        project: Project,
        workspace: Workspace | Path | str,
        venvs: Mapping[str, Path] | None = None,
        *,
        variables: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        log: LogFn | None = None,
        on_stderr_line: StderrLineFn | None = None,
        template_functions: Mapping[str, Callable[..., Any]] | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        render_files: bool = True,
        client_factory: ClientFactory | None = None,
        redact: Callable[[str], str] | None = None,
        log_error: LogFn | None = None,
        timeout_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.project = project
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.venvs = {name: Path(path) for name, path in (venvs or {}).items()}
        self.variables = dict(variables or {})
        self.env = dict(env or {})
        self.log: LogFn = log or _logger.info
        self.log_error: LogFn = log_error or (_logger.error if log is None else log)
        self.timeout_errors = timeout_errors
        self.on_stderr_line: StderrLineFn = on_stderr_line or self._default_stderr_line
        self.template_functions = template_functions
        self.kill_grace = kill_grace
        self.render_files = render_files
        self.client_factory = client_factory
        self.redact: Callable[[str], str] = redact if redact is not None else _same
        self._control = PipelineControl()
        self._clients: dict[tuple[str, str], Any] = {}
        self._transfers: TransferPhase | None = None

    # -- public

    def terminate(self, reason: str = "terminated") -> None:
        """Stop the run: SIGTERM to the running pipeline's process group, SIGKILL after
        ``kill_grace``; no further task starts. Thread-safe, idempotent, usable from a
        signal handler; the run then fails saying it was terminated."""
        self._control.terminate(reason)

    @property
    def terminated(self) -> bool:
        return self._control.terminated

    def run(self, summary: RunSummary | None = None) -> RunSummary:
        """Run the tasks; returns the summary, or raises (``StageError`` for a failed,
        timed-out or terminated stage; ``TemplateError`` for a template; anything else
        as it came) after writing ``artifacts/run.json``.

        ``summary`` (e.g. with the run key and data interval already set) is filled in;
        ``run.json`` is written with status ``running`` first, then finalised."""
        summary = summary if summary is not None else RunSummary()
        summary.status = "running"
        summary.tasks = [
            TaskResult(
                name=task.name,
                kind=task.kind,
                state_from=task.state_from,
                status="not_run" if task.active else "skipped",
            )
            for task in self.project.tasks
        ]
        failure: BaseException | None = None
        try:
            self.workspace.prepare()
            self._write_summary(summary)
            self._check_aws()
            if self.render_files:
                render_workspace_files(
                    self.workspace.files_dir, self.variables, functions=self.template_functions
                )
            self._transfers = self._transfer_phase()
            base_env = self._base_env()
            plans = [
                (result, self._plan(task, base_env))
                for task, result in zip(self.project.tasks, summary.tasks, strict=True)
                if task.active
            ]
            if self._transfers is not None:
                self._checkpoint("downloading the inputs")
                self._transfers.download()
            for result, plan in plans:
                self._run_task(plan, result)
            if self._transfers is not None:
                self._checkpoint("uploading the outputs")
                self._transfers.publish()
        except HandoffError as exc:
            failure = exc
        except BaseException as exc:  # a timeout/kill of the caller, an OSError, a bug
            failure = exc
            summary.error = describe_exception(exc)
        if self._transfers is not None:
            summary.transfers = _redacted(self._transfers.to_dict(), self.redact)
        if failure is None:
            summary.finish("success")
        else:
            status = "failed"
            if isinstance(failure, self.timeout_errors):
                status, summary.error = "timed_out", describe_exception(failure, CALLER_TIMEOUT)
            elif isinstance(failure, StageError) and failure.timed_out:
                status = "timed_out"
            elif self._control.terminated:
                status = "killed"
            summary.finish(status, self.redact(summary.error or str(failure)))
            for task_result in summary.tasks:
                if task_result.error:
                    task_result.error = self.redact(task_result.error)
        self._write_summary(summary)
        if failure is not None:
            if isinstance(failure, StageError) and failure.task:
                self.log_error(str(summary.error))  # "task 'load' stage 2 exited with ..."
            else:
                self.log_error(f"run {summary.status.replace('_', ' ')}: {summary.error}")
            raise failure
        self.log(f"run succeeded in {summary.seconds} s")
        return summary

    # -- internals

    def _check_aws(self) -> None:
        if self.client_factory is None and self.project.uses_aws():
            users = [f"task '{t.name}' ({t.kind})" for t in self.project.active_tasks() if t.step]
            if self.project.transfers.inputs or self.project.transfers.outputs:
                users.insert(0, "transfers")
            raise ConfigurationError(
                f"{self.project.source}: {', '.join(users)} need AWS access, but this run has "
                "no AWS client factory: run with a stack/bucket (e.g. `handoff run -a` with "
                "HANDOFF_STACK/HANDOFF_BUCKET) or, in Airflow, with an AWS connection"
            )

    def _checkpoint(self, phase: str) -> None:
        if self._control.terminated:
            raise StageError(
                f"run terminated ({self._control.reason}) before {phase}",
                task="",
                stage_index=0,
                command="",
                exit_code=None,
            )

    def _client(self, service: str, config: Any = None, *, key: str = "") -> Any:
        """A cached client per (service, key) from the client factory."""
        from handoff_provider.core.stores._aws import make_client

        cache_key = (service, key)
        client = self._clients.get(cache_key)
        if client is None:
            assert self.client_factory is not None  # checked by _check_aws
            client = make_client(self.client_factory, service, config)
            self._clients[cache_key] = client
        return client

    def _render(self, where: str) -> Callable[[str, str], str]:
        """``render(text, field_path)`` for specs (steps, transfers), naming the source."""

        def render(text: str, path: str) -> str:
            return render_text(
                text,
                self.variables,
                source=f"{self.project.source}: {where}{path}",
                functions=self.template_functions,
            )

        return render

    def _transfer_phase(self) -> TransferPhase | None:
        spec = self.project.transfers
        if not (spec.inputs or spec.outputs):
            return None
        return TransferPhase.rendered(
            spec,
            self._render(""),
            s3_client=lambda: self._client("s3"),
            workspace_root=self.workspace.root,
            files_dir=self.workspace.files_dir,
            log=self.log,
        )

    def _default_stderr_line(self, task: str, stage: int, command: str, line: str) -> None:
        self.log(f"[{task}:{stage} {command}] {line}")

    def _base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        source = self.project.source
        for index, var in enumerate(self.project.envs):
            if var.secret:  # never a template: a syntax error would quote the secret
                env[var.key] = var.value
                continue
            env[var.key] = render_text(
                var.value,
                self.variables,
                source=f"{source}: envs[{index}].value",
                functions=self.template_functions,
            )
        env.update(self.env)
        return env

    def _plan(self, task: Task, base_env: Mapping[str, str]) -> _TaskPlan:
        if task.step is not None:
            index = self.project.tasks.index(task)
            render = self._render(f"tasks[{index}].")
            step = task.step.render(render, path=task.kind)
            return _TaskPlan(task=task, stages=[], step=step, label=step_label(task))
        stages = []
        rendered: list[str] = []
        for number, command in enumerate(task.commands, start=1):
            label = command_label(command)
            where = f"{self.project.source}: {command.location or f'{task.name}[{number}]'}"
            args = render_text(
                command.args,
                self.variables,
                source=f"{where}.args",
                functions=self.template_functions,
            )
            words = split_args(args, source=f"{where}.args")
            venv_dir = None
            if command.venv:
                venv_dir = self.venvs.get(command.venv)
                if venv_dir is None or not (venv_dir / "bin").is_dir():
                    raise StageError(
                        f"task '{task.name}' stage {number} ('{label}'): venv "
                        f"'{command.venv}' is not installed (run `handoff workspace install`)",
                        task=task.name,
                        stage_index=number,
                        command=label,
                        exit_code=None,
                    )
            env = _stage_env(base_env, venv_dir)
            program = self._resolve(task, number, command, label, venv_dir, env)
            stages.append(StageSpec(argv=[program, *words], env=env, label=label))
            rendered.append(self.redact(shlex.join([command.command, *words])))
        return _TaskPlan(task=task, stages=stages, rendered=rendered)

    def _resolve(
        self,
        task: Task,
        number: int,
        command: Command,
        label: str,
        venv_dir: Path | None,
        env: Mapping[str, str],
    ) -> str:
        name = command.command

        def missing(why: str) -> StageError:
            return StageError(
                f"task '{task.name}' stage {number} ('{label}'): {why}",
                task=task.name,
                stage_index=number,
                command=label,
                exit_code=None,
            )

        if "/" in name:
            path = Path(name) if os.path.isabs(name) else self.workspace.root / name
            if not path.is_file():
                raise missing(f"command '{name}' not found (no such file in the workspace)")
            if not os.access(path, os.X_OK):
                self._make_script_executable(path, missing)
            return str(path)
        if venv_dir is not None:
            candidate = venv_dir / "bin" / name
            if _is_executable_file(candidate):
                return str(candidate)
            if candidate.is_symlink():  # dangling: never fall back to the system's python3
                raise missing(
                    f"venv '{command.venv}': bin/{name} is a broken link (the interpreter "
                    "the venv was built from moved?); run `handoff workspace install` again"
                )
        found = shutil.which(name, path=env.get("PATH", os.defpath))
        if found is None:
            where = f"in venv '{command.venv}' or on PATH" if command.venv else "on PATH"
            raise missing(f"command '{name}' not found {where}")
        return found

    def _make_script_executable(self, path: Path, missing: Callable[[str], StageError]) -> None:
        root = self.workspace.root.resolve()
        try:
            path.resolve().relative_to(root)
            with open(path, "rb") as handle:
                is_script = handle.read(2) == b"#!"
        except (ValueError, OSError):
            is_script = False
        if not is_script:
            raise missing(f"command '{path}' is not executable")
        mode = path.stat().st_mode
        os.chmod(path, mode | stat.S_IXUSR | (stat.S_IXGRP if mode & stat.S_IRGRP else 0))
        self.log(f"made {path.relative_to(self.workspace.root)} executable (it starts with #!)")

    def _stderr_callback(self, task: Task) -> Callable[[int, str], None]:
        names = [c.command for c in task.commands]
        on_line = self.on_stderr_line

        def callback(number: int, line: str) -> None:
            on_line(task.name, number, names[number - 1], line)

        return callback

    def _run_task(self, plan: _TaskPlan, result: TaskResult) -> None:
        task = plan.task
        if self._control.terminated:
            raise StageError(
                f"run terminated ({self._control.reason}) before task '{task.name}' started",
                task=task.name,
                stage_index=0,
                command="",
                exit_code=None,
            )
        if plan.step is not None:
            self._run_step_task(plan, result)
            return
        artifacts = self.workspace.artifacts_dir
        stages_text = f"{len(plan.stages)} stage" + ("s" if len(plan.stages) != 1 else "")
        self.log(f"task '{task.name}': starting ({task.kind}, {stages_text})")
        shell = [" | ".join(plan.rendered)] if task.kind == "pipeline" else plan.rendered
        for line in shell:
            self.log(f"  $ {line}")
        started = time.monotonic()
        deadline = started + task.timeout if task.timeout is not None else None
        result.stages = [
            StageResult(index=n, command=spec.label, rendered=line)
            for n, (spec, line) in enumerate(zip(plan.stages, plan.rendered, strict=True), start=1)
        ]
        state_tmp: Path | None = None
        state_log: Path | None = None  # where the state's stdout goes if the task fails
        error: StageError | None = None
        with contextlib.suppress(OSError):  # an earlier task may have removed it
            artifacts.mkdir(exist_ok=True)
        last_stderr = artifacts / f"{task.name}.{len(plan.stages)}.stderr.log"
        try:
            if task.kind == "pipeline":
                groups = [(1, plan.stages)]
            else:
                groups = [(n, [spec]) for n, spec in enumerate(plan.stages, start=1)]
            for first, specs in groups:
                is_last = first + len(specs) - 1 == len(plan.stages)
                stdout_log = artifacts / (
                    f"{task.name}.stdout.log"
                    if task.kind == "pipeline"
                    else f"{task.name}.{first}.stdout.log"
                )
                if is_last and task.state_from == "stdout":
                    fd, state_tmp = self._state_temp()
                    state_log = stdout_log
                else:
                    fd = os.open(
                        stdout_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644
                    )
                try:
                    outcome = run_pipeline(
                        specs,
                        task=task.name,
                        cwd=self.workspace.root,
                        stdout=fd,
                        stderr_logs=[
                            artifacts / f"{task.name}.{n}.stderr.log"
                            for n in range(first, first + len(specs))
                        ],
                        on_stderr_line=self._stderr_callback(task),
                        timeout=task.timeout,
                        deadline=deadline,
                        kill_grace=self.kill_grace,
                        control=self._control,
                        first_number=first,
                    )
                finally:
                    os.close(fd)
                self._record(result, outcome)
                is_state = is_last and task.state_from == "stdout"
                if task.kind == "commands" and task.log_stdout and not is_state:
                    self._log_stdout(task, first, stdout_log)
                if outcome.error is not None:
                    error = outcome.error
                    result.timed_out = outcome.timed_out
                    break
            if error is None:
                try:
                    if task.state_from == "stdout" and state_tmp is not None:
                        os.replace(state_tmp, self.workspace.state_path)
                        state_tmp = None
                        result.state_updated = True
                        if state_log is not None:  # a failed earlier run's output: stale now
                            state_log.unlink(missing_ok=True)
                    elif task.state_from == "stderr":
                        fd, state_tmp = self._state_temp()
                        os.close(fd)
                        shutil.copyfile(last_stderr, state_tmp)
                        os.replace(state_tmp, self.workspace.state_path)
                        state_tmp = None
                        result.state_updated = True
                except OSError as exc:  # a command removed artifacts/ or made state a dir
                    error = StageError(
                        f"task '{task.name}': cannot write artifacts/state "
                        f"({exc.strerror or type(exc).__name__}; did a command remove "
                        "artifacts/ or put a directory at artifacts/state?)",
                        task=task.name,
                        stage_index=len(plan.stages),
                        command=plan.stages[-1].label if plan.stages else "",
                        exit_code=None,
                    )
            elif task.state_on_failure == "last_line":
                source = state_tmp if task.state_from == "stdout" else last_stderr
                if source is not None and self._keep_last_line(source):
                    result.state_updated = result.partial_state = True
                    self.log(f"task '{task.name}': failed; kept its last complete state line")
            if error is not None and state_tmp is not None and state_log is not None:
                # Keep what the failed stage wrote for debugging, never as the state.
                with contextlib.suppress(OSError):
                    os.replace(state_tmp, state_log)
                    state_tmp = None
        finally:
            if state_tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(state_tmp)
            result.seconds = round(time.monotonic() - started, 3)
        if error is not None:
            result.status = "failed"
            result.error = str(error)
            self._log_table(result)
            raise error
        result.status = "success"
        self._log_table(result)

    def _log_stdout(self, task: Task, number: int, path: Path) -> None:
        """A ``commands:`` command's stdout (not the state) to the log, after it ran."""
        name = task.commands[number - 1].command
        try:
            with open(path, "rb") as handle:
                data = handle.read(_STDOUT_LOG_LIMIT + 1)
        except OSError:
            return
        text = data[:_STDOUT_LOG_LIMIT].decode("utf-8", errors="replace")
        for line in text.splitlines():
            self.log(f"[{task.name}:{number} {name} stdout] {line}")
        if len(data) > _STDOUT_LOG_LIMIT:
            self.log(
                f"[{task.name}:{number} {name} stdout] ... (more in artifacts/{path.name}; "
                f"the log shows the first {_STDOUT_LOG_LIMIT // 1024} KiB)"
            )

    def _log_table(self, result: TaskResult) -> None:
        """After a task: one line per stage (exit code, seconds, bytes out) and the state."""
        verb = "succeeded" if result.status == "success" else "failed"
        if result.state_from == "none":
            state = "state: not from this task"
        else:
            state = "state: artifacts/state " + ("written" if result.state_updated else "unchanged")
        self.log(f"task '{result.name}': {verb} in {result.seconds} s; {state}")
        self.log(f"  {'stage':>5}  {'exit':>4}  {'seconds':>8}  {'bytes out':>12}  command")
        for stage in result.stages:
            exit_code = "-" if stage.exit_code is None else str(stage.exit_code)
            if stage.signal:
                exit_code += f" ({stage.signal})"
            seconds = "-" if stage.seconds is None else f"{stage.seconds:.2f}"
            out = "-" if stage.bytes_out is None else f"{stage.bytes_out:,}"
            name = stage.command.split(" ", 1)[0]
            self.log(f"  {stage.index:>5}  {exit_code:>4}  {seconds:>8}  {out:>12}  {name}")

    def _run_step_task(self, plan: _TaskPlan, result: TaskResult) -> None:
        """A ``lambda`` / ``s3_touch`` task: one AWS call, recorded as stage 1."""
        task, step, label = plan.task, plan.step, plan.label
        self.log(f"task '{task.name}': starting ({label})")
        stage = StageResult(index=1, command=label)
        result.stages = [stage]
        started = time.monotonic()
        error: StageError | None = None
        try:
            if isinstance(step, LambdaStep):
                client = self._lambda_client(step.invocation_type, task.timeout)
                lambda_result = self._wait(task, label, lambda: step.invoke(client))
                self._save_lambda(task, lambda_result)
                stage.bytes_out = len(lambda_result.payload_bytes)
                self.log(
                    f"task '{task.name}': lambda {step.invocation_type} call returned "
                    f"{lambda_result.status_code} (request id {lambda_result.request_id}); "
                    f"response in artifacts/lambda-{task.name}.json"
                )
            else:
                assert isinstance(step, TouchStep)
                s3 = self._client("s3")
                uri = self._wait(task, label, lambda: step.run(s3))
                self.log(f"task '{task.name}': flag {uri}")
            stage.exit_code, stage.status = 0, "ok"
        except StageError as exc:
            error = exc
        except HandoffError as exc:
            if isinstance(exc, LambdaFunctionError):
                self._save_lambda(task, exc.result)
            error = StageError(
                f"task '{task.name}': {exc}",
                task=task.name,
                stage_index=1,
                command=label,
                exit_code=1,
            )
        finally:
            stage.seconds = round(time.monotonic() - started, 3)
            result.seconds = stage.seconds
        if error is not None:
            stage.status = "failed"
            stage.exit_code = error.exit_code
            result.status, result.error, result.timed_out = "failed", str(error), error.timed_out
            raise error
        result.status = "success"
        self.log(f"task '{task.name}': succeeded in {result.seconds} s")

    def _lambda_client(self, invocation_type: str, timeout: float | None) -> Any:
        overrides: dict[str, Any] = {}
        if timeout is not None and timeout < LAMBDA_MAX_SECONDS:
            overrides["read_timeout"] = max(1, int(timeout) + 1)  # the wait below enforces it
        config = lambda_client_config(invocation_type, **overrides)
        return self._client("lambda", config, key=f"{invocation_type}:{overrides}")

    def _save_lambda(self, task: Task, lambda_result: LambdaResult) -> None:
        save_lambda_response(self.workspace.artifacts_dir, task.name, lambda_result)

    def _wait(self, task: Task, label: str, call: Callable[[], Any]) -> Any:
        """Run ``call`` in a thread; give up on the task's timeout or on terminate().

        A boto3 call can't be interrupted: on timeout/terminate the thread is left to
        finish on its own (daemon) and its result is ignored."""
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = call()
            except BaseException as exc:  # re-raised in the runner's thread
                box["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=target, name=f"handoff-{task.name}", daemon=True)
        thread.start()
        deadline = time.monotonic() + task.timeout if task.timeout is not None else None
        while not done.wait(_STEP_POLL_SECONDS):
            why, timed_out = None, False
            if self._control.terminated:
                why = f"terminated ({self._control.reason})"
            elif deadline is not None and time.monotonic() >= deadline:
                why, timed_out = f"timed out after {task.timeout:g} s", True
            if why is not None:
                raise StageError(
                    f"task '{task.name}' ('{label}'): {why}",
                    task=task.name,
                    stage_index=1,
                    command=label,
                    exit_code=None,
                    timed_out=timed_out,
                )
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _keep_last_line(self, source: Path) -> bool:
        """``artifacts/state`` := the last complete non-blank line of ``source``."""
        last: bytes | None = None
        try:
            with open(source, "rb") as handle:
                for line in handle:
                    if line.endswith(b"\n") and line.strip():
                        last = line
        except OSError:
            return False
        if last is None:
            return False
        fd, tmp = self._state_temp()
        try:
            os.write(fd, last)
        finally:
            os.close(fd)
        os.replace(tmp, self.workspace.state_path)
        return True

    def _state_temp(self) -> tuple[int, Path]:
        artifacts = self.workspace.artifacts_dir
        for _ in range(100):
            path = artifacts / f".state.{os.getpid()}.{os.urandom(4).hex()}.tmp"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                continue
            return fd, path
        raise OSError(f"could not create a temporary state file in {artifacts}")

    @staticmethod
    def _record(result: TaskResult, outcome: PipelineResult) -> None:
        for stage in outcome.stages:
            recorded = StageResult.from_outcome(stage)
            recorded.rendered = result.stages[stage.number - 1].rendered
            result.stages[stage.number - 1] = recorded

    def _write_summary(self, summary: RunSummary) -> None:
        # A run.json that cannot be written must not hide the run's own error.
        with contextlib.suppress(OSError):
            write_run_summary(self.workspace, summary)
