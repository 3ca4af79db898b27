"""Run a project's tasks in a workspace and summarise what happened.

:class:`ProjectRunner` runs each active task through its kind (the step-kind registry,
:mod:`handoff_provider.core.steps`: ``pipeline``, ``commands``, ``lambda``, ``s3_touch``;
each kind's module says how it runs) and records a
:class:`~handoff_provider.core.run.summary.RunSummary` in ``artifacts/run.json`` — when the
run starts, on success and on failure — before raising. ``active: false`` tasks are
recorded as ``skipped``.

The order of a run: ``files/`` templates are rendered, then every task is planned (its
templates rendered, its commands resolved: a typo fails the run before it touched
anything), **then** the project's ``transfers:`` inputs are downloaded into
``files/<dest>/`` (so a dropped file is never rendered as a template;
:mod:`handoff_provider.core.run.transfers`), the tasks run in project order, and only when
all of them succeeded the outputs are uploaded, their flag files written and the inputs'
post-copy actions applied. What was transferred is recorded in the summary
(``transfers``: URIs and statuses). ``lambda``/``s3_touch``/``transfers`` need the
runner's ``client_factory`` (``factory(service_name, config=None)``); without one the run
fails before anything starts with a :class:`ConfigurationError`.

The last stage's (last command's) output becomes ``artifacts/state`` according to the
task's ``state_from`` (``stdout``, the default; ``stderr``, the original handoff
behaviour; ``none``), only when the task succeeded — a failed run never clobbers the
previous state, unless the task says ``state_on_failure: last_line`` (the last complete
line of its state output is kept: ``TaskResult.partial_state``; the run is still
``failed``, and is published to ``last/`` so that the next run resumes from there). See
:mod:`handoff_provider.core.run.task_state`.

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
but no shell runs.

What the summary and the logs contain: commands *as written* (command + unrendered
``args`` template), exit codes, durations, byte counts, error messages — never rendered
args, env values or config file contents.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.aws.clients import ClientFactory
from handoff_provider.core.errors import ConfigurationError, HandoffError, StageError
from handoff_provider.core.load.templating import render_text, render_workspace_files
from handoff_provider.core.model.callbacks import LogFn, StderrLineFn
from handoff_provider.core.model.project import Project
from handoff_provider.core.model.secrets import redact_tree
from handoff_provider.core.run.pipeline import DEFAULT_KILL_GRACE, PipelineControl
from handoff_provider.core.run.summary import (
    CALLER_TIMEOUT,
    RunSummary,
    TaskResult,
    describe_exception,
    write_run_summary,
)
from handoff_provider.core.run.workspace import Workspace
from handoff_provider.core.steps import RunScope, kind_named
from handoff_provider.core.steps.base import renderer

if TYPE_CHECKING:
    import logging

    from handoff_provider.core.run.transfers import TransferPhase


def _logger() -> logging.Logger:
    """This module's logger, the default log of a runner given none (the CLI and the
    operators pass their own: only then is :mod:`logging` imported)."""
    import logging

    return logging.getLogger(__name__)


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
        self.log: LogFn = log or _logger().info
        self.log_error: LogFn = log_error or (_logger().error if log is None else log)
        self.timeout_errors = timeout_errors
        self.on_stderr_line: StderrLineFn = on_stderr_line or self._default_stderr_line
        self.template_functions = template_functions
        self.kill_grace = kill_grace
        self.render_files = render_files
        self.client_factory = client_factory
        self.redact: Callable[[str], str] = redact if redact is not None else _same
        self._control = PipelineControl()
        self._clients = ClientCache(client_factory)
        self._transfers: TransferPhase | None = None

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
            self._run_phases(summary)
        except HandoffError as exc:
            failure = exc
        except BaseException as exc:  # a timeout/kill of the caller, an OSError, a bug
            failure = exc
            summary.error = describe_exception(exc)
        self._finish(summary, failure)
        if failure is not None:
            raise failure
        self.log(f"run succeeded in {summary.seconds} s")
        return summary

    def _run_phases(self, summary: RunSummary) -> None:
        self.workspace.prepare()
        self._write_summary(summary)
        if self.client_factory is None:
            check_no_aws(self.project)
        if self.render_files:
            render_workspace_files(
                self.workspace.files_dir, self.variables, functions=self.template_functions
            )
        self._transfers = self._transfer_phase()
        scope = self._scope()
        tasks = zip(self.project.tasks, summary.tasks, strict=True)
        plans = [(kind_named(t.kind).plan(t, scope), r) for t, r in tasks if t.active]
        if self._transfers is not None:
            self._checkpoint("downloading the inputs")
            self._transfers.download()
        for plan, result in plans:
            self._checkpoint(f"task '{plan.task.name}' started", task=plan.task.name)
            kind_named(plan.task.kind).run(plan, scope, result)
        if self._transfers is not None:
            self._checkpoint("uploading the outputs")
            self._transfers.publish()

    def _finish(self, summary: RunSummary, failure: BaseException | None) -> None:
        """The summary's final status and error (redacted), written and logged."""
        if self._transfers is not None:
            summary.transfers = redact_tree(self._transfers.to_dict(), self.redact)
        if failure is None:
            summary.finish("success")
            self._write_summary(summary)
            return
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
        if isinstance(failure, StageError) and failure.task:
            self.log_error(str(summary.error))  # "task 'load' stage 2 exited with ..."
        else:
            self.log_error(f"run {summary.status.replace('_', ' ')}: {summary.error}")

    def _checkpoint(self, phase: str, task: str = "") -> None:
        """Refuse to go on once terminated (``phase``: what would happen next)."""
        if self._control.terminated:
            raise StageError(
                f"run terminated ({self._control.reason}) before {phase}",
                task=task,
                stage_index=0,
                command="",
                exit_code=None,
            )

    def _scope(self) -> RunScope:
        return RunScope(
            workspace=self.workspace,
            project=self.project,
            variables=self.variables,
            template_functions=self.template_functions,
            base_env=base_env(self.project, self.variables, self.template_functions, self.env),
            venvs=self.venvs,
            redact=self.redact,
            log=self.log,
            on_stderr_line=self.on_stderr_line,
            control=self._control,
            kill_grace=self.kill_grace,
            client=self._clients,
        )

    def _transfer_phase(self) -> TransferPhase | None:
        spec = self.project.transfers
        if not (spec.inputs or spec.outputs):
            return None
        from handoff_provider.core.run.transfers import TransferPhase  # the S3 modules

        return TransferPhase.rendered(
            spec,
            renderer(self.variables, self.template_functions, f"{self.project.source}: "),
            s3_client=lambda: self._clients("s3"),
            workspace_root=self.workspace.root,
            files_dir=self.workspace.files_dir,
            log=self.log,
        )

    def _default_stderr_line(self, task: str, stage: int, command: str, line: str) -> None:
        self.log(f"[{task}:{stage} {command}] {line}")

    def _write_summary(self, summary: RunSummary) -> None:
        # A run.json that cannot be written must not hide the run's own error.
        with contextlib.suppress(OSError):
            write_run_summary(self.workspace, summary)


def check_no_aws(project: Project) -> None:
    """``ConfigurationError`` naming what needs AWS when ``project`` does (a run without
    a client factory fails before anything starts)."""
    if project.uses_aws():
        users = [f"task '{t.name}' ({t.kind})" for t in project.aws_tasks()]
        if project.transfers.inputs or project.transfers.outputs:
            users.insert(0, "transfers")
        raise ConfigurationError(
            f"{project.source}: {', '.join(users)} need AWS access, but this run has "
            "no AWS client factory: run with a stack/bucket (e.g. `handoff run -a` with "
            "HANDOFF_STACK/HANDOFF_BUCKET) or, in Airflow, with an AWS connection"
        )


def base_env(
    project: Project,
    variables: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]] | None,
    extra: Mapping[str, str],
) -> dict[str, str]:
    """Every command's environment: ``os.environ`` + the project's ``envs`` (rendered;
    secret ones as they are) + ``extra``, later ones winning."""
    env = dict(os.environ)
    for index, var in enumerate(project.envs):
        if var.secret:  # never a template: a syntax error would quote the secret
            env[var.key] = var.value
            continue
        env[var.key] = render_text(
            var.value,
            variables,
            source=f"{project.source}: envs[{index}].value",
            functions=functions,
        )
    env.update(extra)
    return env


class ClientCache:
    """``cache(service, config=None, *, key="")``: one AWS client per (service, key) from
    ``factory``, made on first use (``key`` tells apart clients of one service with
    different configs)."""

    def __init__(self, factory: ClientFactory | None) -> None:
        self.factory = factory
        self._clients: dict[tuple[str, str], Any] = {}

    def __call__(self, service: str, config: Any = None, *, key: str = "") -> Any:
        from handoff_provider.core.aws.clients import make_client

        client = self._clients.get((service, key))
        if client is None:
            assert self.factory is not None  # checked by check_no_aws
            client = make_client(self.factory, service, config)
            self._clients[(service, key)] = client
        return client


def _same(text: str) -> str:
    return text
