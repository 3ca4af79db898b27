"""The flows shared by the CLI, the Airflow operators and the container.

A run (:class:`HandoffRun`) goes through these phases, in order:

1. **prepare** the workspace: with a project directory, compile it, write its config
   files (0600) and copy ``PROJECT/files/``; without one, fetch the document from SSM,
   write its config files and mirror ``s3://<bucket>/<stack>/files/`` into ``files/``;
2. **restore state**: when a remote with a bucket is given (a run from remote config, or
   a local run with ``--push-artifacts``), ``last/state`` of the stack's last published
   run replaces ``artifacts/state`` (not with ``full_refresh``: the run starts without
   state and publishes the new one). A run that archives first repairs an interrupted
   ``last/`` publish (``stores/artifacts.py``). The remote wins over a local file because runs of a
   stack may happen on different machines (Airflow workers, Fargate tasks): the local
   file may be older than the last published run. With no published state the local
   file (if any) is kept. A purely local run (no remote) never touches the state;
3. **install** the venvs (cached by spec: a no-op when unchanged);
4. **run** (``ProjectRunner``) with the template variables (project ``vars``, run
   context, overrides; plus ``stack`` and ``bucket`` of the remote unless the project or
   an override defines them) and the environment ``context.as_env()`` + ``extra_env`` +
   ``secret_env``. Within the run, in this order: ``files/`` templates are rendered; the
   project's ``transfers.inputs`` are downloaded into ``files/<dest>/`` (never rendered);
   the tasks run (``lambda``/``s3_touch`` tasks included); only if all succeeded, the
   ``transfers.outputs`` are uploaded, then their flag files written, then the inputs'
   post-copy actions (move/delete) applied. A failure at any step stops there: no flag, no
   post-copy, and the run fails with a message naming the transfer (``transfers.outputs[0]:
   ...``);
5. **archive** (``push_artifacts``): ``artifacts/`` to ``runs/<run-key>/`` whatever the
   outcome; ``last/`` replaced only after a success whose upload completed (or a failed
   run whose task kept a partial state, ``state_on_failure: last_line``), never with
   ``no_state_update``, and only if ``last/`` is still what this run restored (else the
   run fails as a conflict, :class:`~handoff_provider.core.errors.PublishConflict`).

**One run of a stack at a time.** A run that archives (``push_artifacts``) holds the
stack lease (``stores/lease.py``) from before phase 1 until its publish is done (released
whatever ends the run); a run that can't get it within ``lock_wait`` seconds fails with
one line naming the holder. ``lock=False`` (``--no-lock``) skips it: unsafe, two runs
then restore the same state (the conditional publish still refuses the second one).

**AWS inside a run.** A run with a ``remote`` (or a ``client_factory``) gets AWS clients
from it (the remote's factory: boto3's chain for the CLI and the container, the
connection for Airflow) for the transfers, the ``lambda``/``s3_touch`` tasks and the
``ssm('/name')`` and ``secret('name', 'json.path')`` (Secrets Manager) template functions
(usable in ``vars``, ``envs``, ``args``, ``files/`` templates, step and transfer fields).
Both read a value lazily, once per run;
each value is registered **before** the template gets it: with the run's own redactor
(every line of ``log``/``on_stderr_line`` and the errors recorded in ``run.json`` are
redacted) and with ``RunRequest.on_secret`` (the Airflow operator passes its masker).
Without AWS access these features fail with a :class:`ConfigurationError` /
``ssm()`` error saying so, before any command starts.

**Every try that started is recorded.** Once the workspace is prepared (the project is
valid and its config written), ``artifacts/run.json`` says ``running``; whatever ends the
run then — a failed stage or install, a termination, a timeout of the caller
(``RunRequest.timeout_errors``, e.g. Airflow's ``AirflowTaskTimeout``), any unexpected
exception — finalises it (``failed``/``timed_out``/``killed`` and why) and archives it
(when asked; ``last/`` only after a success, or per ``state_on_failure``) before the
exception leaves.
:attr:`HandoffRun.outcome` then holds the :class:`RunOutcome`. Handoff errors, a failed
archive after a successful run (the run is then reported failed: nothing downstream
should trust an unpublished state) and a termination raise :class:`RunFailed` carrying the
outcome; anything else propagates unchanged (a timeout stays a timeout). Failures before
that (bad project, missing config) raise their own :class:`HandoffError`. The project's
secrets (:mod:`handoff_provider.core.model.secrets`) and ``secret_env`` values are redacted from
every line the run logs and everything it records.
:meth:`HandoffRun.terminate` works in every phase: before the runner exists it makes the
run stop at the next phase boundary (an install in progress finishes first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.aws.clients import ClientFactory
from handoff_provider.core.aws.secret_lookup import (
    make_secret_function,
    unavailable_secret_function,
)
from handoff_provider.core.aws.ssm_lookup import (
    SecretRedactor,
    make_ssm_function,
    unavailable_ssm_function,
)
from handoff_provider.core.errors import ConfigurationError, HandoffError, RunFailed
from handoff_provider.core.model.callbacks import LogFn, StderrLineFn
from handoff_provider.core.model.context import RunContext
from handoff_provider.core.model.run_key import new_run_key

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Project
    from handoff_provider.core.run.runner import ProjectRunner
    from handoff_provider.core.run.summary import RunReport, RunSummary
    from handoff_provider.core.run.workspace import Workspace
    from handoff_provider.core.stores import (
        ArtifactsLocation,
        LastRef,
        Remote,
        RepairResult,
        StackLease,
    )


def stderr_log(line: str) -> None:
    """The default ``log``: one line to stderr, flushed (the container's log stream)."""
    print(line, file=sys.stderr, flush=True)


@dataclass
class RunRequest:
    """Everything a run needs; see the module docstring for how each part is used."""

    workspace: Path
    project_dir: Path | None = None
    remote: Remote | None = None
    push_artifacts: bool = False
    variables: Mapping[str, str] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    context: RunContext = field(default_factory=RunContext)
    run_key: str | None = None
    venv_cache_dir: Path | None = None
    log: LogFn = stderr_log
    on_stderr_line: StderrLineFn | None = None
    template_functions: Mapping[str, Callable[..., Any]] | None = None
    #: Called with each secret value (``ssm()``/``secret()`` lookups) before any template
    #: receives it, e.g. the Airflow operator's ``mask_values([value])``.
    on_secret: Callable[[str], None] | None = None
    #: AWS clients for ssm()/secret()/transfers/lambda/s3_touch; default: the remote's factory.
    client_factory: ClientFactory | None = None
    #: Hold the stack lease while archiving runs (``False``: ``--no-lock``, unsafe).
    lock: bool = True
    #: Seconds to wait for the lease (None: ``$HANDOFF_LOCK_WAIT``, else 600).
    lock_wait: float | None = None
    #: Lease TTL in seconds (None: ``$HANDOFF_LOCK_TTL``, else 60); renewed every TTL/3.
    lock_ttl: float | None = None
    #: Start without the published state (and publish the new one).
    full_refresh: bool = False
    #: Run and archive to ``runs/<key>/`` but never touch ``last/``.
    no_state_update: bool = False
    #: Failure lines (``run failed: ...``); default: ``log``.
    log_error: LogFn | None = None
    #: Exceptions meaning "the caller's time limit hit" (Airflow's AirflowTaskTimeout):
    #: the run is recorded ``timed_out``, then the exception propagates unchanged.
    timeout_errors: tuple[type[BaseException], ...] = ()
    #: Key words marking config values as secrets (see core/model/secrets.py); the Airflow
    #: layer passes Airflow's own list.
    sensitive_words: frozenset[str] | None = None

    def validate(self) -> None:
        if self.project_dir is None and self.remote is None:
            raise ConfigurationError(
                "no project: pass -p PROJECT, or a stack (--stack / HANDOFF_STACK) to run "
                "from the remote config"
            )
        if self.push_artifacts:
            if self.remote is None:
                raise ConfigurationError(
                    "pushing artifacts needs a stack and bucket (--stack/--bucket or "
                    "HANDOFF_STACK/HANDOFF_BUCKET)"
                )
            if not self.remote.bucket:
                raise ConfigurationError(
                    "pushing artifacts needs an S3 bucket: pass --bucket or set "
                    "HANDOFF_BUCKET (or S3_BUCKET_NAME)"
                )


@dataclass
class RunOutcome:
    """What a run did. ``to_dict()`` is the XCom-able summary: per task and stage the
    command as written, exit code, duration, bytes out; artifact URIs. No config value."""

    run_key: str
    workspace: Path
    summary: RunSummary
    artifacts: ArtifactsLocation | None = None
    artifacts_error: str | None = None
    state_restored: bool = False

    @property
    def succeeded(self) -> bool:
        return self.summary.succeeded and self.artifacts_error is None

    @property
    def status(self) -> str:
        """``success``, ``failed``, ``timed_out`` or ``killed`` (``failed`` also when the
        commands succeeded but the archive did not)."""
        if self.summary.succeeded:
            return "success" if self.artifacts_error is None else "failed"
        return self.summary.status

    def report(self) -> RunReport:
        """The run as the CLI and the operators report it."""
        from handoff_provider.core.run.summary import RunReport

        return RunReport(
            status=self.status,
            run_key=self.run_key,
            record=self.summary.to_dict(),
            artifacts=self.artifacts.to_dict() if self.artifacts else None,
            details={
                "workspace": str(self.workspace),
                "state_restored": self.state_restored,
                "artifacts_error": self.artifacts_error,
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return self.report().to_dict()

    def describe(self) -> str:
        """One line: status, duration, tasks, transfers and where the artifacts are."""
        tasks = ", ".join(f"{task.name} {task.status}" for task in self.summary.tasks)
        seconds = self.summary.seconds
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        text = f"run {self.run_key}: {self.summary.status}{took}"
        if tasks:
            text += f" ({tasks})"
        transfers = self.summary.transfers
        if transfers:
            counts = ", ".join(
                f"{len(transfers.get(kind) or [])} {kind.replace('_', '-')}"
                for kind in ("inputs", "outputs", "flags", "post_copy")
            )
            text += f"; transfers: {counts}"
        if self.artifacts is not None:
            text += f"; artifacts: {self.artifacts}"
        elif self.artifacts_error:
            text += f"; artifacts NOT archived: {self.artifacts_error}"
        else:
            text += f"; artifacts in {self.workspace / 'artifacts'} (not pushed)"
        return text


class _Terminated(Exception):
    pass


class HandoffRun:
    """One run of a project; :meth:`execute` once, :meth:`terminate` from anywhere."""

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        # Re-entrant: terminate() may run in a signal handler interrupting this thread.
        self._lock = threading.RLock()
        self._runner: ProjectRunner | None = None
        self._terminate_reason: str | None = None
        #: The project's secrets, secret envs and ssm()/secret() values: redacted from every
        #: line this run logs and everything it records (run.json, messages).
        self.redactor = SecretRedactor()
        #: What happened, once the workspace is prepared (also when execute() raised).
        self.outcome: RunOutcome | None = None
        self._lease: StackLease | None = None
        #: ``last/`` as this run restored it: its publish is conditional on it.
        self._state_base: LastRef | None = None

    def terminate(self, reason: str = "terminated") -> None:
        """Stop the run: kill the running commands, or keep them from starting."""
        with self._lock:
            if self._terminate_reason is None:
                self._terminate_reason = reason or "terminated"
            runner = self._runner
            lease = self._lease
        if lease is not None:
            lease.cancel(reason)
        if runner is not None:
            runner.terminate(reason)

    def _checkpoint(self, phase: str) -> None:
        with self._lock:
            if self._terminate_reason is not None:
                raise _Terminated(
                    f"run terminated ({self._terminate_reason}) before {phase}; no command ran"
                )

    def execute(self) -> RunOutcome:
        """Run the phases under the stack lease; returns the outcome or raises (see the
        module docstring).

        Once the workspace is prepared, whatever ends the run (a handoff error, a timeout
        or kill of the caller, any other exception) is recorded in ``artifacts/run.json``
        and archived (when asked) before the exception leaves; :attr:`outcome` then holds
        what happened. Handoff errors leave as :class:`RunFailed`, anything else as it came.
        """
        request = self.request
        request.validate()
        self.run_key = new_run_key(request.run_key or request.context.run_key)
        with self._stack_lease(self._redacting_log(request.log)):
            return self._execute()

    def _install_keeping_log(
        self, project: Project, workspace: Workspace, log: LogFn
    ) -> dict[str, Path]:
        """Install the venvs; when that fails, its output is also written (redacted) to
        ``artifacts/install.log``, so the archived try shows the installer's own error: on
        Fargate the run's log is otherwise only in CloudWatch. A successful install's lines
        are in the run's log already and leave no file."""
        lines: list[str] = []

        def keep(line: str) -> None:
            lines.append(line)
            log(line)

        try:
            return _install(project, workspace, self.request.venv_cache_dir, keep)
        except BaseException:
            text = "".join(self.redactor(line) + "\n" for line in lines)
            with contextlib.suppress(OSError):
                (workspace.artifacts_dir / "install.log").write_text(text, encoding="utf-8")
            raise

    def _stack_lease(self, log: LogFn) -> contextlib.AbstractContextManager[Any]:
        """The stack lease for a run that archives (a no-op context otherwise)."""
        request = self.request
        if not request.push_artifacts or self._terminate_reason is not None:
            return contextlib.nullcontext()  # (terminated: the first checkpoint raises)
        if not request.lock:
            log("lease: --no-lock: NOT holding the stack lease (concurrent runs may collide)")
            return contextlib.nullcontext()
        from handoff_provider.core.stores.lease import lease_options

        assert request.remote is not None
        lease = request.remote.lease(
            self.run_key, log=log, **lease_options(request.lock_wait, request.lock_ttl)
        )
        with self._lock:
            self._lease = lease
            if self._terminate_reason is not None:
                lease.cancel(self._terminate_reason)
        return lease

    def _execute(self) -> RunOutcome:
        from handoff_provider.core.model.secrets import SENSITIVE_KEY_WORDS
        from handoff_provider.core.run.summary import RunSummary, write_run_summary
        from handoff_provider.core.run.workspace import Workspace

        request = self.request
        log = self._redacting_log(request.log)
        log_error = self._redacting_log(request.log_error or request.log)
        run_key = self.run_key
        context = dataclasses.replace(request.context, run_key=run_key)
        workspace = Workspace(request.workspace)
        self.redactor.add_all(request.secret_env.values())
        try:
            self._checkpoint("preparing the workspace")
        except _Terminated as exc:
            summary = RunSummary(status="killed", error=str(exc), run_key=run_key)
            summary.finish("killed")
            self.outcome = RunOutcome(run_key=run_key, workspace=workspace.root, summary=summary)
            raise RunFailed(str(exc), outcome=self.outcome) from None
        project = prepare_workspace(
            workspace, project_dir=request.project_dir, remote=request.remote, log=log
        )
        self.redactor.add_all(project.secret_values(request.sensitive_words or SENSITIVE_KEY_WORDS))
        summary = RunSummary(
            run_key=run_key,
            data_interval=context.data_interval(),
            origin=dict(context.origin) if context.origin else None,
        )
        outcome = RunOutcome(run_key=run_key, workspace=workspace.root, summary=summary)
        self.outcome = outcome
        try:
            write_run_summary(workspace, summary)  # status "running"
            if request.remote is not None and request.remote.bucket:
                self._checkpoint("restoring the state")
                outcome.state_restored, self._state_base = self._restore_state(workspace, log)
            elif request.full_refresh:
                workspace.state_path.unlink(missing_ok=True)
                log("state: full refresh: starting without state")
            self._checkpoint("installing the venvs")
            venvs = self._install_keeping_log(project, workspace, log)
            self._checkpoint("starting the commands")
            runner = self._make_runner(project, workspace, venvs, context, log, log_error)
            runner.run(summary)
        except BaseException as exc:
            self._record_failure(summary, exc, log_error)
            self._archive(outcome, log)
            if isinstance(exc, (HandoffError, _Terminated)):
                message = self.redactor(f"{summary.error}; {_where_artifacts(outcome)}")
                raise RunFailed(message, outcome=outcome) from (
                    None if isinstance(exc, _Terminated) else exc
                )
            raise
        self._archive(outcome, log)
        if outcome.artifacts_error is not None:
            raise RunFailed(
                f"the commands succeeded but archiving the artifacts failed "
                f"({outcome.artifacts_error}); last/ still holds the previous complete run",
                outcome=outcome,
            )
        return outcome

    def _restore_state(self, workspace: Workspace, log: LogFn) -> tuple[bool, LastRef]:
        """Phase 2 for this run: repair an interrupted publish (only under the lease),
        then restore the state (unless ``full_refresh``); returns (restored, base)."""
        request = self.request
        assert request.remote is not None
        artifacts = request.remote.artifacts
        if self._lease is not None:
            repair = artifacts.repair_last()
            if repair.repaired:
                log(f"artifacts: {artifacts.last_uri}: {repair}")
            base = repair.last
        else:
            base = artifacts.read_last()
        if request.full_refresh:
            workspace.state_path.unlink(missing_ok=True)
            held = f" (last/ holds run {base.run_key})" if base.run_key else ""
            log(f"state: full refresh: starting without state{held}")
            return False, base
        return restore_state(workspace, request.remote, log=log, last=base), base

    def _publishes(self, summary: RunSummary, log: LogFn) -> bool:
        """Whether this run's archive replaces ``last/``."""
        if self.request.no_state_update:
            log("state: --no-state-update: last/ left unchanged")
            return False
        if summary.succeeded:
            return True
        if summary.keeps_partial_state:
            log("state: the failed task kept its last complete state line (state_on_failure)")
            return True
        return False

    def _record_failure(self, summary: RunSummary, exc: BaseException, log_error: LogFn) -> None:
        """Finalise ``summary`` (and ``run.json``) for a run ``exc`` ended; the runner has
        done so already when the commands ran, a timeout/kill of the caller is re-labelled."""
        from handoff_provider.core.run.summary import (
            CALLER_TIMEOUT,
            describe_exception,
            write_run_summary,
        )
        from handoff_provider.core.run.workspace import Workspace

        if summary.status != "running":
            return  # the runner recorded it (and logged it)
        with self._lock:
            terminated = self._terminate_reason
        if isinstance(exc, self.request.timeout_errors):
            status, error = "timed_out", describe_exception(exc, CALLER_TIMEOUT)
        elif terminated is not None or isinstance(exc, (_Terminated, KeyboardInterrupt)):
            status = "killed"
            error = (
                str(exc)
                if isinstance(exc, (_Terminated, HandoffError))
                else (f"killed ({terminated or describe_exception(exc)})")
            )
        elif isinstance(exc, HandoffError):
            status, error = "failed", str(exc)
        else:
            status, error = "failed", describe_exception(exc)
        summary.finish(status, self.redactor(error))
        log_error(f"run {status.replace('_', ' ')}: {summary.error}")
        try:
            write_run_summary(Workspace(self.request.workspace), summary)
        except OSError as write_error:
            log_error(f"artifacts/run.json: could not be written ({write_error.strerror})")

    def _archive(self, outcome: RunOutcome, log: LogFn) -> None:
        """``artifacts/`` to ``runs/<key>/`` (and ``last/`` after a success), when asked.
        A failure to archive is one log line and ``outcome.artifacts_error``."""
        request = self.request
        if not request.push_artifacts:
            return
        assert request.remote is not None
        try:
            outcome.artifacts = request.remote.artifacts.push(
                outcome.workspace / "artifacts",
                outcome.run_key,
                succeeded=outcome.summary.succeeded,
                publish=self._publishes(outcome.summary, log),
                base=self._state_base,
                before_publish=self._lease.check if self._lease is not None else None,
            )
            log(f"artifacts: {outcome.artifacts}")
        except (HandoffError, OSError) as exc:
            outcome.artifacts_error = self.redactor(str(exc))
            log(f"artifacts: NOT archived: {outcome.artifacts_error}")

    def _redacting_log(self, log: LogFn) -> LogFn:
        redact = self.redactor

        def redacted(line: str) -> None:
            log(redact(line))

        return redacted

    def _stderr_callback(self) -> StderrLineFn | None:
        on_line = self.request.on_stderr_line
        if on_line is None:
            return None  # the runner's default goes through the (redacting) log
        redact = self.redactor

        def redacted(task: str, stage: int, command: str, line: str) -> None:
            on_line(task, stage, command, redact(line))

        return redacted

    def _on_secret(self, value: str) -> None:
        self.redactor.add(value)
        if self.request.on_secret is not None:
            self.request.on_secret(value)

    def _template_functions(self, factory: ClientFactory | None) -> dict[str, Callable[..., Any]]:
        """``ssm()`` and ``secret()`` (lazy; values registered before use), then the
        request's functions."""
        if factory is not None:
            ssm = make_ssm_function(factory, on_value=self._on_secret)
            secret = make_secret_function(factory, on_value=self._on_secret)
        else:
            reason = (
                "this run has no AWS access: run with a stack/bucket (e.g. `handoff run -a`) "
                "or, in Airflow, with an AWS connection"
            )
            ssm = unavailable_ssm_function(reason)
            secret = unavailable_secret_function(reason)
        return {"ssm": ssm, "secret": secret, **(self.request.template_functions or {})}

    def _make_runner(
        self,
        project: Project,
        workspace: Workspace,
        venvs: Mapping[str, Path],
        context: RunContext,
        log: LogFn,
        log_error: LogFn,
    ) -> ProjectRunner:
        from handoff_provider.core.load.templating import build_variables
        from handoff_provider.core.run.runner import ProjectRunner

        request = self.request
        factory = run_client_factory(request)
        functions = self._template_functions(factory)
        overrides = {**_remote_variables(request.remote, project), **request.variables}
        variables = build_variables(project, context, overrides, functions=functions)
        env = {**context.as_env(), **request.extra_env, **request.secret_env}
        runner = ProjectRunner(
            project,
            workspace,
            venvs,
            variables=variables,
            env=env,
            log=log,
            on_stderr_line=self._stderr_callback(),
            template_functions=functions,
            client_factory=factory,
            redact=self.redactor,
            log_error=log_error,
            timeout_errors=request.timeout_errors,
        )
        with self._lock:
            self._checkpoint("starting the commands")
            self._runner = runner
        return runner


def run_client_factory(request: RunRequest) -> ClientFactory | None:
    """The AWS client factory of a run: ``request.client_factory``, else the remote's
    (plain clients shared with the stores; a client with its own botocore ``config``, e.g.
    Lambda's long read timeout, made fresh from the remote's factory). ``None``: no AWS."""
    if request.client_factory is not None:
        return request.client_factory
    remote = request.remote
    if remote is None:
        return None
    from handoff_provider.core.aws.clients import make_client

    base = remote.client_factory

    def factory(service_name: str, config: Any = None) -> Any:
        if config is None:
            return remote.client(service_name)
        return make_client(base, service_name, config)

    return factory


def _remote_variables(remote: Remote | None, project: Project) -> dict[str, str]:
    """``stack``/``bucket`` for templates (``directory: "{{ stack }}/inbox"``), unless the
    project declares a var of that name (then it keeps its own)."""
    if remote is None:
        return {}
    values = {"stack": remote.stack, "bucket": remote.bucket}
    return {key: value for key, value in values.items() if value and key not in project.vars}


def _where_artifacts(outcome: RunOutcome) -> str:
    if outcome.artifacts is not None:
        return f"artifacts: {outcome.artifacts.runs_uri} (last/ unchanged)"
    if outcome.artifacts_error is not None:
        return f"artifacts NOT archived ({outcome.artifacts_error})"
    return f"artifacts in {outcome.workspace / 'artifacts'}"


# ------------------------------------------------------------------------ phases


def prepare_workspace(
    workspace: Workspace,
    *,
    project_dir: Path | None = None,
    remote: Remote | None = None,
    log: LogFn = stderr_log,
) -> Project:
    """Phase 1: config files and ``files/`` in place; returns the validated project."""
    from handoff_provider.core.load.project import load_project, project_from_document

    workspace.prepare()
    if project_dir is not None:
        project = load_project(Path(project_dir))
        workspace.write_config_files(project.files)
        copied = workspace.copy_project_files(project_dir)
        log(
            f"workspace {workspace.root}: project {project_dir}, {len(project.files)} config "
            f"file(s), {len(copied)} file(s) in files/"
        )
        return project
    if remote is None:
        raise ConfigurationError("no project: pass -p PROJECT or a stack for the remote config")
    document = remote.config.fetch()
    project = project_from_document(document, source=f"remote config ({remote.config.name})")
    workspace.write_config_files(project.files)
    log(f"config: {len(project.files)} config file(s) from SSM parameter {remote.config.name}")
    result = remote.files.get(workspace.files_dir)
    log(f"files: {result}")
    return project


def restore_state(
    workspace: Workspace,
    remote: Remote,
    *,
    log: LogFn = stderr_log,
    last: LastRef | None = None,
) -> bool:
    """Phase 2: ``last/state`` -> ``artifacts/state`` (see the module docstring);
    ``last``: ``last/``'s manifest when already read."""
    had_local = workspace.state_path.exists()
    artifacts = remote.artifacts
    if artifacts.restore_state(workspace.state_path, last):
        log(f"state: restored artifacts/state from {artifacts.last_uri}state")
        return True
    if had_local:
        log(f"state: none published under {artifacts.last_uri}; keeping the local artifacts/state")
    else:
        log(f"state: none published under {artifacts.last_uri}; starting without state")
    return False


def _install(
    project: Project, workspace: Workspace, venv_cache_dir: Path | None, log: LogFn
) -> dict[str, Path]:
    from handoff_provider.core.run.workspace import VenvCache, install_venvs

    return install_venvs(project, VenvCache(venv_cache_dir), log, workspace)


def install_workspace(
    workspace: Path,
    *,
    project_dir: Path | None = None,
    remote: Remote | None = None,
    venv_cache_dir: Path | None = None,
    log: LogFn | None = None,
) -> dict[str, Path]:
    """Prepare the workspace (config, files) and install its venvs; {venv name: dir}.

    Install commands may use ``files/`` (``pip install ./files/pkg``), hence the prepare.
    """
    from handoff_provider.core.run.workspace import Workspace

    log = log or stderr_log
    ws = Workspace(workspace)
    project = prepare_workspace(ws, project_dir=project_dir, remote=remote, log=log)
    return _install(project, ws, venv_cache_dir, log)


def push_workspace_artifacts(
    workspace: Path,
    remote: Remote,
    *,
    run_key: str | None = None,
    by_hand: bool = False,
    lock: bool = True,
    lock_wait: float | None = None,
    log: LogFn = stderr_log,
) -> ArtifactsLocation:
    """Archive ``WORKSPACE/artifacts/`` (``handoff artifacts push``), under the stack lease.

    The run's own completion record, ``artifacts/run.json``, decides: ``success`` is
    archived and published to ``last/``, ``failed`` goes to ``runs/`` only. A record
    that is missing, unreadable or still says ``running`` (the run was killed, or is
    still going) is refused with nothing pushed: publishing it would pass a partial run
    off as complete. Files put into ``artifacts/`` by hand (a state seeded or corrected
    by hand) have no record: ``by_hand=True`` (``--by-hand``) publishes them, and
    refuses if there *is* a ``run.json``.
    """
    from handoff_provider.core.run.workspace import Workspace
    from handoff_provider.core.stores.lease import lease_options

    ws = Workspace(workspace)
    if not ws.artifacts_dir.is_dir():
        raise ConfigurationError(f"{ws.artifacts_dir}: no artifacts directory to push")
    succeeded, partial = _recorded_outcome(ws, by_hand=by_hand)
    publish = succeeded or partial
    key = new_run_key(run_key)
    artifacts = remote.artifacts
    if not lock:
        log("lease: --no-lock: NOT holding the stack lease")
        return artifacts.push(ws.artifacts_dir, key, succeeded=succeeded, publish=publish)
    lease = remote.lease(key, operation="artifacts push", log=log, **lease_options(lock_wait))
    with lease:
        repair = artifacts.repair_last()
        if repair.repaired:
            log(f"artifacts: {artifacts.last_uri}: {repair}")
        return artifacts.push(
            ws.artifacts_dir,
            key,
            succeeded=succeeded,
            publish=publish,
            base=repair.last,
            before_publish=lease.check,
        )


def _recorded_outcome(ws: Workspace, *, by_hand: bool) -> tuple[bool, bool]:
    """``(succeeded, keeps_partial_state)`` of the run whose artifacts ``ws`` holds, from
    its ``run.json`` (see :func:`push_workspace_artifacts`)."""
    from handoff_provider.core.load.safe_tree import read_regular_file

    record = ws.run_summary_path
    if by_hand:
        if record.exists() or record.is_symlink():
            raise ConfigurationError(
                f"{record}: exists, so these artifacts are a run's, not put there by hand; "
                "push without --by-hand (or remove run.json)"
            )
        return True, True
    try:
        data = json.loads(read_regular_file(record, limit=16 << 20, error=ConfigurationError))
    except FileNotFoundError:
        raise ConfigurationError(
            f"{record}: missing, so no run completed in this workspace; nothing pushed "
            "(for files put into artifacts/ by hand, pass --by-hand)"
        ) from None
    except ValueError:
        raise ConfigurationError(f"{record}: not valid JSON; nothing pushed") from None
    status = data.get("status") if isinstance(data, dict) else None
    if status not in ("success", "failed"):
        raise ConfigurationError(
            f"{record}: status {status!r}: the run did not complete (killed, or still "
            "running); nothing pushed"
        )
    succeeded = status == "success"
    # A failed run whose task kept its last complete state line is published too.
    partial = any(
        isinstance(task, dict) and task.get("partial_state") for task in data.get("tasks", [])
    )
    return succeeded, partial


def repair_artifacts(
    remote: Remote, *, lock: bool = True, lock_wait: float | None = None, log: LogFn = stderr_log
) -> RepairResult:
    """Finish an interrupted ``last/`` publish (``handoff artifacts repair``), under the lease."""
    from handoff_provider.core.stores.lease import lease_options

    if not lock:
        log("lease: --no-lock: NOT holding the stack lease")
        return remote.artifacts.repair_last()
    key = new_run_key(f"{new_run_key()}.repair")
    with remote.lease(key, operation="artifacts repair", log=log, **lease_options(lock_wait)):
        return remote.artifacts.repair_last()
