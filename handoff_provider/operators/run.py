"""``HandoffRunOperator``: run a handoff project on the Airflow worker.

The operator is a thin shell over ``core.run.orchestrate.HandoffRun`` (the same flow as
``handoff run`` and the Fargate container). What it adds is the Airflow part:

* the run context from the task: ``data_interval_start``/``data_interval_end`` and the
  logical date become ``start_at``/``end_at``/``ds``/``logical_date`` in ``args``
  templates and ``HANDOFF_START_AT``/``HANDOFF_END_AT``/... in the commands' environment,
  so a backfill re-runs exactly its interval;
* a run key per task try (``_compat.run_key_for``): retries and concurrent runs never
  share an artifacts prefix;
* secrets masking before anything is logged: ``secret_envs`` values right after the
  templates are rendered (so they are masked in the rendered-fields view too), the
  config values of a local project before the run starts, those of a remote config as
  soon as it is fetched (:class:`handoff_provider.masking.MaskingConfigStore`), and
  ``ssm()``/``secret()`` template lookups before a template receives them (``on_secret``);
* every stage's stderr streamed to the task log line by line, prefixed with its stage;
* the summary (``RunOutcome.to_dict()``) as XCom, the S3-console extra link, the outlet
  ``s3://<bucket>/<stack>/last/`` for data-aware scheduling, and ``on_kill``.

Parse-time cost matters (DAG files are parsed every few seconds): this module does not
import the core runner (``execute`` does). boto3 comes with the Amazon provider's
``AwsBaseOperator`` (as it does with the ``s3://`` outlet's asset), but no client is made
before ``execute``.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider._compat import (
    AirflowException,
    AirflowTaskTimeout,
    Asset,
    airflow_sensitive_words,
    aws_template_fields,
    context_run_fields,
    fill_missing_data_interval,
    provider_setting,
    run_key_from_context,
)
from handoff_provider.arguments import mapping_argument
from handoff_provider.asset_events import report_last_event
from handoff_provider.core.layout import bucket_name, last_prefix, runs_prefix, s3_uri, stack_name
from handoff_provider.lineage import RunLineageMixin
from handoff_provider.links.artifacts import (
    HandoffArtifactsLink,
    aws_partition,
    aws_region_from_env,
)
from handoff_provider.masking import mask_values
from handoff_provider.operators.base import HandoffBaseOperator

if TYPE_CHECKING:
    from handoff_provider.core.run.orchestrate import HandoffRun, RunRequest
    from handoff_provider.core.stores import Remote


def _is_templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def last_asset_uri(stack: str | None, bucket: str | None) -> str | None:
    """``s3://<bucket>/<stack>/last/`` when both are plain values known now, else None."""
    stack, bucket = stack_name(stack), bucket_name(bucket)
    if not stack or not bucket or _is_templated(stack) or _is_templated(bucket):
        return None
    return s3_uri(bucket, last_prefix(stack))


def with_last_outlet(outlets: Any, stack: str | None, bucket: str | None) -> list[Any]:
    """``outlets`` plus the Asset (Dataset on 2.x) of the stack's ``last/`` when known."""
    if outlets is None:
        merged: list[Any] = []
    else:
        merged = list(outlets) if isinstance(outlets, Sequence) else [outlets]
    uri = last_asset_uri(stack, bucket)
    if uri is not None and not any(getattr(o, "uri", None) == uri.rstrip("/") for o in merged):
        merged.append(Asset(uri))
    return merged


def _as_str_dict(name: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AirflowException(f"{name} must be a mapping of names to values")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


class HandoffRunOperator(RunLineageMixin, HandoffBaseOperator):
    """Run a handoff project on the worker: install venvs (cached), run, archive artifacts.

    :param project_dir: the project directory (``project.yml``, ``config/``, ``files/``).
        Without it the project comes from the stack's remote config (SSM) and files (S3),
        as pushed by ``HandoffConfigPushOperator``/``HandoffFilesPushOperator``.
    :param workspace: where commands run; default a new temporary directory under
        ``[handoff] workspace_root`` removed after the try (``[handoff] keep_workspace``).
    :param stack: the stack (``HANDOFF_STACK``/``STACK_NAME`` when not given); names the
        SSM parameter ``/handoff/<stack>/config`` and the S3 prefix ``<stack>/``.
    :param bucket: the S3 bucket (``HANDOFF_BUCKET``/``S3_BUCKET_NAME``).
    :param vars: template variables overriding the project's ``vars`` (templated, e.g.
        ``{"start_date": "{{ data_interval_start | ds }}"}``).
    :param envs: extra environment variables for the commands (templated).
    :param secret_envs: environment variables whose values are secrets (templated, e.g.
        ``{"API_TOKEN": "{{ conn.my_api.password }}"}``); masked in logs and rendered
        fields. Never put secrets in ``vars`` or ``envs``.
    :param push_artifacts: archive ``artifacts/`` to ``s3://<bucket>/<stack>/runs/<key>/``
        (also when the run fails) and, on success, replace ``last/`` (whose ``state`` the
        next run restores). Declares ``s3://<bucket>/<stack>/last/`` as an outlet.
    :param full_refresh: start without the published state (the tap reads from its start
        date, e.g. ``vars={"start_date": "{{ data_interval_start | ds }}"}``) and publish
        the new one: re-reads an interval in a backfill.
    :param no_state_update: archive to ``runs/<key>/`` but leave ``last/`` (and the state)
        as it is.
    :param lock: hold the stack lease while the run archives (default True; False is
        unsafe: concurrent runs of the stack then restore the same state).
    :param lock_wait: seconds to wait for the stack lease held by another run before
        failing (default ``$HANDOFF_LOCK_WAIT``, else 600).
    :param venv_cache_dir: the venv cache (``[handoff] venv_cache_dir``, else the core's
        default ``$HANDOFF_VENV_CACHE`` / ``~/.cache/handoff/venvs``).
    :param config_name: SSM parameter name of the config (default ``/handoff/<stack>/config``).
    :param kms_key_id: KMS key of the config (used when reading large configs).

    ``aws_conn_id``, ``region_name``, ``verify`` and ``botocore_config`` (templated) make the
    task's one ``HandoffHook`` (:class:`~handoff_provider.operators.base.HandoffBaseOperator`).

    Returns (XCom) the run summary: per task and stage the command as written, exit code,
    seconds and bytes; the run key and artifact URIs. Never a config value.
    """

    template_fields: Sequence[str] = aws_template_fields(
        "project_dir",
        "workspace",
        "stack",
        "bucket",
        "config_name",
        "vars",
        "envs",
        "secret_envs",
        "botocore_config",
    )
    template_fields_renderers = {"vars": "json", "envs": "json", "secret_envs": "json"}
    operator_extra_links = (HandoffArtifactsLink(),)
    ui_color = "#e8f1fb"

    # The state of one try (set by execute/on_kill); class defaults, not set per instance
    # at parse time (each attribute set on an operator goes through BaseOperator.__setattr__).
    _run: HandoffRun | None = None
    _killed: str | None = None
    _log_context: contextvars.Context | None = None

    def __init__(
        self,
        *,
        project_dir: str | os.PathLike[str] | None = None,
        workspace: str | os.PathLike[str] | None = None,
        stack: str | None = None,
        bucket: str | None = None,
        vars: Mapping[str, Any] | None = None,
        envs: Mapping[str, Any] | None = None,
        secret_envs: Mapping[str, Any] | None = None,
        push_artifacts: bool = True,
        full_refresh: bool = False,
        no_state_update: bool = False,
        lock: bool = True,
        lock_wait: float | None = None,
        venv_cache_dir: str | os.PathLike[str] | None = None,
        config_name: str | None = None,
        kms_key_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if push_artifacts:
            kwargs["outlets"] = with_last_outlet(kwargs.get("outlets"), stack, bucket)
        super().__init__(**kwargs)
        self._name_stores(stack, bucket, config_name, kms_key_id)
        self.project_dir = os.fspath(project_dir) if project_dir is not None else None
        self.workspace = os.fspath(workspace) if workspace is not None else None
        self.vars = mapping_argument("vars", vars)
        self.envs = mapping_argument("envs", envs)
        self.secret_envs = mapping_argument("secret_envs", secret_envs)
        self.push_artifacts = push_artifacts
        self.full_refresh = full_refresh
        self.no_state_update = no_state_update
        self.lock = lock
        self.lock_wait = lock_wait
        self.venv_cache_dir = os.fspath(venv_cache_dir) if venv_cache_dir is not None else None

    # -- masking

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render, then register the ``secret_envs`` values with the secrets masker at
        once: before Airflow stores the rendered fields and before anything is logged."""
        fill_missing_data_interval(context)  # a manual run: templates still see an interval
        super().render_template_fields(context, jinja_env)
        mask_values((self.secret_envs or {}).values())

    # -- run

    def _workspace(self, run_key: str) -> tuple[Path, bool]:
        """(workspace, temporary?)"""
        if self.workspace:
            return Path(self.workspace), False
        root = provider_setting("workspace_root") or None
        if root:
            Path(root).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"handoff-{run_key[:60]}-", dir=root)), True

    def _needs_remote(self) -> bool:
        return self.project_dir is None or self.push_artifacts

    def execute(self, context: Any) -> dict[str, Any]:
        from handoff_provider.core.errors import HandoffError
        from handoff_provider.core.run.orchestrate import HandoffRun

        run_key = run_key_from_context(context)
        request, temporary = self._run_request(context, run_key)
        remote, project_dir, workspace = request.remote, request.project_dir, request.workspace
        self.log.info(
            "handoff run %s: %s, workspace %s",
            run_key,
            f"project {project_dir}" if project_dir else f"remote config of stack {remote.stack}",  # type: ignore[union-attr]
            workspace,
        )
        run = HandoffRun(request)
        self._run = run
        try:
            if self._killed is not None:
                run.terminate(self._killed)
            outcome = run.execute()
        except BaseException as exc:
            # Whatever ended the try (a failed stage, execution_timeout, a kill, a bug),
            # HandoffRun has recorded and archived it: publish that, then let it go on
            # (a timeout stays a timeout for Airflow's retry logic).
            if run.outcome is not None:
                self._lineage_summary = run.outcome.to_dict()
                self._publish_failed(context, remote, run.outcome)
            if isinstance(exc, HandoffError):
                raise AirflowException(f"handoff run failed: {exc}") from None
            raise
        finally:
            self._run = None
            if temporary and not _keep_workspace():
                shutil.rmtree(workspace, ignore_errors=True)
        if remote is not None and outcome.artifacts is not None:
            self._persist_link(context, remote, run_key)
        self.log.info("%s", outcome.describe())
        summary = outcome.to_dict()
        self._lineage_summary = summary
        if remote is not None and outcome.artifacts is not None and outcome.artifacts.last_uri:
            report_last_event(context, self.outlets, remote.artifacts, summary, self.log)
        return summary

    def _run_request(self, context: Any, run_key: str) -> tuple[RunRequest, bool]:
        """The core's request for this try (secrets masked before anything can log them),
        and whether its workspace is a temporary one to remove afterwards. A broken project
        fails here, before any AWS call."""
        from handoff_provider.core.errors import HandoffError
        from handoff_provider.core.load.project import load_project
        from handoff_provider.core.model.context import RunContext
        from handoff_provider.core.run.orchestrate import RunRequest
        from handoff_provider.masking import MaskingConfigStore

        # Stage lines are logged from reader threads: give them this thread's log context
        # (Airflow 3 binds the task instance's ids to it).
        self._log_context = contextvars.copy_context()
        secret_env = _as_str_dict("secret_envs", self.secret_envs)
        mask_values(secret_env.values())  # also when execute() is called without rendering
        extra_env = _as_str_dict("envs", self.envs)
        variables = _as_str_dict("vars", self.vars)

        project_dir = Path(self.project_dir).expanduser() if self.project_dir else None
        try:
            if project_dir is not None:
                mask_values(load_project(project_dir).secret_values(airflow_sensitive_words()))
            remote = self.remote() if self._needs_remote() else None  # no AWS call yet
        except HandoffError as exc:
            raise AirflowException(str(exc)) from None
        if remote is not None and project_dir is None:
            # mask as soon as fetched (a ConfigBackend over the remote's own)
            remote.config = MaskingConfigStore(remote.config)
        workspace, temporary = self._workspace(run_key)
        cache_dir = self.venv_cache_dir or provider_setting("venv_cache_dir")
        request = RunRequest(
            workspace=workspace,
            project_dir=project_dir,
            remote=remote,
            push_artifacts=self.push_artifacts,
            variables=variables,
            extra_env=extra_env,
            secret_env=secret_env,
            context=RunContext(**context_run_fields(context)),
            run_key=run_key,
            venv_cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
            log=self._log_line,
            log_error=self._log_error_line,
            on_stderr_line=self._log_stderr_line,
            timeout_errors=(AirflowTaskTimeout,),
            sensitive_words=airflow_sensitive_words(),
            # ssm()/secret() values: masked before any template (or log line) gets them
            on_secret=_mask_one,
            # AWS clients of ssm()/secret(), transfers and lambda/s3_touch: the remote's
            # (made by the hook), or the hook's for a local project without a remote
            client_factory=None if remote is not None else self.hook.get_client,
            full_refresh=self.full_refresh,
            no_state_update=self.no_state_update,
            lock=self.lock,
            lock_wait=self.lock_wait,
        )
        return request, temporary

    # -- OpenLineage (RunLineageMixin; called by the openlineage provider when installed)

    def _lineage_target(self, summary: Mapping[str, Any] | None) -> dict[str, Any]:
        return {
            "stack": stack_name(self.stack),
            "bucket": bucket_name(self.bucket),
            "reads_remote_files": self.project_dir is None,
            "archives": self.push_artifacts,
        }

    def on_kill(self) -> None:
        """Task cleared, marked, or timed out: kill every stage's process group."""
        self._killed = "the Airflow task was killed"
        run = self._run
        if run is not None:
            run.terminate(self._killed)

    # -- helpers

    def _log_line(self, message: str) -> None:
        self.log.info("%s", message)

    def _log_error_line(self, message: str) -> None:
        self.log.error("%s", message)

    def _log_stderr_line(self, task: str, stage: int, command: str, line: str) -> None:
        text = line.rstrip("\n")
        if self._log_context is None:
            self.log.info("[%s:%d %s] %s", task, stage, command, text)
            return
        # A copy per line: several reader threads may log at once.
        self._log_context.copy().run(self.log.info, "[%s:%d %s] %s", task, stage, command, text)

    def _persist_link(self, context: Any, remote: Remote, run_key: str) -> None:
        region = self.region_name or aws_region_from_env()
        HandoffArtifactsLink.persist(
            context=context,
            operator=self,
            region_name=region,
            aws_partition=aws_partition(region),
            bucket=remote.bucket,
            prefix=runs_prefix(remote.stack, run_key),
        )

    def _publish_failed(self, context: Any, remote: Remote | None, outcome: Any) -> None:
        """A failed try returns nothing: its summary goes to XCom ``handoff_outcome`` and,
        when the artifacts were archived, the link points at them (else no link)."""
        try:
            if remote is not None and outcome.artifacts is not None:
                self._persist_link(context, remote, outcome.run_key)
            if self.do_xcom_push:
                context["ti"].xcom_push(key="handoff_outcome", value=outcome.to_dict())
        except Exception as exc:  # never hide the run's own failure behind this
            self.log.warning("could not publish the failed run's summary: %s", exc)


def _mask_one(value: str) -> None:
    mask_values([value])


def _keep_workspace() -> bool:
    return (provider_setting("keep_workspace") or "false").strip().lower() in ("true", "1", "yes")
