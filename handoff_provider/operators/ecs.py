"""Run a handoff project on ECS Fargate: Airflow launches and watches, the container does the run.

:class:`HandoffEcsRunOperator` is the Amazon provider's ``EcsRunTaskOperator`` with the
container override filled in: the command is the ``handoff`` CLI's remote run
(``handoff run -w <workspace> -a``, see :mod:`handoff_provider.core.cli.container`) and the
environment carries the stack, the bucket, the run key and the data interval. Everything
else - starting the task, reattaching after a worker restart, waiting (or deferring to
the provider's trigger), forwarding the CloudWatch log into the task log, failing with the
log tail on a non-zero exit - is the Amazon operator's own code, untouched.

The overrides never hold a config value: the config stays in SSM and the container reads it
with its task role. ``vars`` travel as ``-v key=value`` arguments, visible in the ECS
console, so they must not be secrets either.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.amazon.aws.exceptions import EcsOperatorError, EcsTaskFailToStart
from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook
from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink
from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid
from airflow.providers.amazon.aws.utils.task_log_fetcher import AwsTaskLogFetcher
from botocore.exceptions import ClientError

from handoff_provider._compat import (
    AirflowException,
    AirflowSkipException,
    AirflowTaskTimeout,
    Context,
    context_run_fields,
    default_deferrable,
    run_key_from_context,
)
from handoff_provider.arguments import mapping_argument, string_list_argument
from handoff_provider.asset_events import report_last_event
from handoff_provider.core.aws.ecs_failures import capacity_failure, transient_stop
from handoff_provider.core.aws.errors import error_code
from handoff_provider.core.aws.task_definition import check_overrides_size
from handoff_provider.core.cli.container import (
    CONTAINER_NAME,
    WORKSPACE,
    container_command,
    container_environment,
)
from handoff_provider.core.errors import ConfigurationError
from handoff_provider.core.layout import (
    ENV_BUCKET,
    ENV_STACK,
    artifacts_uris,
    bucket_name,
    run_record_key,
    runs_prefix,
    stack_name,
)
from handoff_provider.core.model.context import ENV_RUN_KEY
from handoff_provider.hooks.handoff import HandoffHook
from handoff_provider.lineage import RunLineageMixin
from handoff_provider.links.artifacts import HandoffArtifactsLink
from handoff_provider.links.ecs import HandoffEcsTaskLink
from handoff_provider.operators.run import with_last_outlet

#: Whether the Amazon operator takes ``container_name`` (amazon provider >= 9.4). Before,
#: it has no notion of which container is the task's and names the CloudWatch stream
#: ``<prefix>/<task id>`` (9.0), while the awslogs driver writes
#: ``<prefix>/<container>/<task id>``: this operator then keeps the name and names the stream.
_AMAZON_TAKES_CONTAINER_NAME = (
    "container_name" in inspect.signature(EcsRunTaskOperator.__init__).parameters
)
#: Whether the installed Amazon provider's operator takes ``skip_on_exit_code`` (else: ours).
UPSTREAM_SKIP_ON_EXIT_CODE = (
    "skip_on_exit_code" in inspect.signature(EcsRunTaskOperator.__init__).parameters
)
#: Whether the installed provider's log fetcher reads the stream once more when stopped
#: (newer ones do; older ones drop the events written after their last poll).
FETCHER_READS_AFTER_STOP = hasattr(AwsTaskLogFetcher, "_forward_log_events")
#: XCom key counting the ECS tasks a try started (survives a deferral).
_ATTEMPT_KEY = "handoff_ecs_attempt"


class FinalReadLogFetcher(AwsTaskLogFetcher):
    """The provider's CloudWatch log fetcher, plus one last read once stopped: the
    container's last lines (its error, handoff's summary) are written just before the task
    stops, after the fetcher's last poll. Used when the installed fetcher lacks that read."""

    def run(self) -> None:
        token = AwsLogsHook.ContinuationToken()
        while not self.is_stopped():
            self._event.wait(self.fetch_interval.total_seconds())
            self._forward(token)
        self._forward(token)  # the events written since the last poll

    def _forward(self, token: AwsLogsHook.ContinuationToken) -> None:
        try:
            for event in self.hook.get_log_events(
                self.log_group, self.log_stream_name, continuation_token=token
            ):
                self.logger.info(self.event_to_str(dict(event)))
        except ClientError as error:
            if error_code(error) != "ResourceNotFoundException":
                self.logger.warning("Error on retrieving Cloudwatch log events: %s", error)


def _check_arguments(
    start_attempts: int, lock_wait: float | None, subnets: Any, ecs_kwargs: Mapping[str, Any]
) -> None:
    if start_attempts < 1:
        raise ValueError("start_attempts: at least 1")
    if lock_wait is not None and not (
        isinstance(lock_wait, (int, float)) and 0 <= lock_wait < float("inf")
    ):
        raise ValueError(f"lock_wait: {lock_wait!r} is not a number of seconds (>= 0)")
    if subnets and ecs_kwargs.get("network_configuration") is not None:
        raise ValueError("pass either subnets/security_groups or network_configuration, not both")


def _exit_codes(skip_on_exit_code: int | Collection[int] | None) -> list[int]:
    if skip_on_exit_code is None:
        return []
    if isinstance(skip_on_exit_code, int):
        return [skip_on_exit_code]
    return list(skip_on_exit_code)


def _upstream_kwargs(
    ecs_kwargs: dict[str, Any],
    *,
    stack: str | None,
    bucket: str | None,
    container_name: str,
    codes: list[int],
) -> dict[str, Any]:
    """The Amazon operator's arguments: the user's, with this operator's defaults (Fargate,
    reattach, ``[operators] default_deferrable``), the ``last/`` outlet, and the arguments
    the installed provider version takes (``skip_on_exit_code``, ``container_name``)."""
    ecs_kwargs.setdefault("launch_type", "FARGATE")
    ecs_kwargs.setdefault("reattach", True)
    ecs_kwargs.setdefault("deferrable", default_deferrable())
    ecs_kwargs.setdefault("overrides", {})
    # Same data-aware scheduling as the local run: the stack's last/ is an outlet.
    ecs_kwargs["outlets"] = with_last_outlet(ecs_kwargs.get("outlets") or [], stack, bucket)
    if UPSTREAM_SKIP_ON_EXIT_CODE:
        ecs_kwargs["skip_on_exit_code"] = codes or None
    if _AMAZON_TAKES_CONTAINER_NAME:
        ecs_kwargs["container_name"] = container_name
    return ecs_kwargs


class HandoffEcsRunOperator(RunLineageMixin, EcsRunTaskOperator):
    """Run a handoff project (config in SSM, files in S3) as an ECS task, by default on Fargate.

    The task definition's container runs the handoff runtime image (``Dockerfile``); this
    operator sends it ``handoff run -w <workspace> -a [-v key=value ...]`` and the
    environment ``HANDOFF_STACK``, ``HANDOFF_BUCKET``, ``HANDOFF_RUN_KEY`` (unique per try)
    and ``HANDOFF_START_AT``/``HANDOFF_END_AT``/``HANDOFF_LOGICAL_DATE`` (the data
    interval). The container fetches its config and files, runs, and archives its artifacts
    to ``s3://<bucket>/<stack>/runs/<run key>/`` (and ``last/`` on success).

    :param cluster: ECS cluster name or ARN.
    :param task_definition: task definition family[:revision] or ARN of the handoff image.
    :param container_name: the container in the task definition that runs handoff.
    :param subnets: subnets for the task's awsvpc network (Fargate needs one).
    :param security_groups: security groups for the task's network interface.
    :param assign_public_ip: give the task a public IP (needed in a public subnet without NAT
        to reach ECR, SSM and S3).
    :param stack: handoff stack (default: ``$HANDOFF_STACK``/``$STACK_NAME`` on the worker).
    :param bucket: S3 bucket (default: ``$HANDOFF_BUCKET``/``$S3_BUCKET_NAME`` on the worker).
    :param config_name: SSM parameter name of the config (default ``/handoff/<stack>/config``).
    :param vars: project variable overrides, sent as ``-v key=value`` (templated). They are
        visible in the ECS console and API: never secrets (those belong in the config).
    :param aws_conn_id: the Airflow AWS connection (``aws_default``).
    :param region_name: AWS region of the cluster (overrides the connection's).
    :param awslogs_group: CloudWatch log group of the container (``awslogs`` driver), so the
        Airflow task log shows the container's log and a failure shows its tail.
    :param awslogs_region: region of that log group (default: ``region_name``).
    :param awslogs_stream_prefix: the ``awslogs-stream-prefix`` of the task definition.
    :param full_refresh: the container starts without the published state and publishes
        the new one (``handoff run --full-refresh``): re-reads an interval in a backfill.
    :param no_state_update: the container archives to ``runs/<key>/`` but leaves ``last/``
        (and the state) as it is (``--no-state-update``).
    :param lock_wait: seconds the container waits for the stack lease held by another run
        before failing (``--lock-wait``; default the image's ``$HANDOFF_LOCK_WAIT``, else
        600).
    :param workspace: the workspace directory inside the image.
    :param start_attempts: how many ECS tasks a try may start when AWS fails it before the
        container ran: a capacity failure of ``RunTask``, or a task stopped by a transient
        start problem (network interface or ephemeral storage timeout, image pull i/o
        timeout/EOF, secrets retrieval timeout; see :mod:`handoff_provider.core.aws.ecs_failures`).
        A container that ran and failed is never started again here (that is Airflow's
        ``retries``).
    :param start_retry_delay: seconds between those attempts (doubled each time).
    :param skip_on_exit_code: container exit code(s) that skip the task instead of failing
        it (passed to the Amazon operator when it supports it, else handled here).
    :param ecs_kwargs: anything else ``EcsRunTaskOperator`` takes (``overrides`` for cpu/memory,
        ``deferrable``, ``reattach``, ``number_logs_exception``, ``waiter_delay``, ...).

    The ECS task is stopped when the Airflow task is killed (``on_kill``), times out
    (``execution_timeout``) or its deferral times out. Links: the run's artifacts (S3), the
    ECS task (console) and its CloudWatch log stream.

    Returns (XCom) a summary: the ECS task ARN, the run key and the artifacts URIs, plus the
    container's run record (``runs/<key>/run.json``: per task and stage the command, exit
    code, seconds, bytes) when it was archived. Never a config value.
    """

    template_fields: Sequence[str] = (
        *EcsRunTaskOperator.template_fields,
        "stack",
        "bucket",
        "config_name",
        "vars",
        "workspace",
        "subnets",
        "security_groups",
    )
    template_fields_renderers = {**EcsRunTaskOperator.template_fields_renderers, "vars": "json"}
    operator_extra_links = (HandoffArtifactsLink(), HandoffEcsTaskLink(), CloudWatchEventsLink())
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        cluster: str,
        task_definition: str,
        container_name: str = CONTAINER_NAME,
        subnets: Sequence[str] | None = None,
        security_groups: Sequence[str] | None = None,
        assign_public_ip: bool = False,
        stack: str | None = None,
        bucket: str | None = None,
        config_name: str | None = None,
        vars: Mapping[str, Any] | None = None,
        full_refresh: bool = False,
        no_state_update: bool = False,
        lock_wait: float | None = None,
        workspace: str = WORKSPACE,
        start_attempts: int = 3,
        start_retry_delay: float = 30,
        skip_on_exit_code: int | Collection[int] | None = None,
        **ecs_kwargs: Any,
    ) -> None:
        _check_arguments(start_attempts, lock_wait, subnets, ecs_kwargs)
        codes = _exit_codes(skip_on_exit_code)
        super().__init__(
            cluster=cluster,
            task_definition=task_definition,
            **_upstream_kwargs(
                ecs_kwargs, stack=stack, bucket=bucket, container_name=container_name, codes=codes
            ),
        )
        self.container_name = container_name
        self.subnets = string_list_argument("subnets", subnets)
        self.security_groups = string_list_argument("security_groups", security_groups)
        self.assign_public_ip = assign_public_ip
        self.stack = stack
        self.bucket = bucket
        self.config_name = config_name
        self.vars = mapping_argument("vars", vars)
        self.full_refresh = full_refresh
        self.no_state_update = no_state_update
        self.lock_wait = lock_wait
        self.workspace = workspace
        self.start_attempts = start_attempts
        self.start_retry_delay = start_retry_delay
        #: exit codes this class turns into a skip (the Amazon operator does when it can)
        self.handoff_skip_exit_codes = [] if UPSTREAM_SKIP_ON_EXIT_CODE else codes
        self._handoff_context: Context | None = None
        self._watching_client = False
        self._stopped_arn: str | None = None
        #: the task of the last RunTask/ListTasks answer or trigger event (see _recall_arn)
        self._task_arn_seen: str | None = None

    if not _AMAZON_TAKES_CONTAINER_NAME:

        def _get_logs_stream_name(self) -> str:
            """The awslogs driver's stream, ``<prefix>/<container>/<task id>``."""
            prefix = self.awslogs_stream_prefix or ""
            if not prefix.endswith(f"/{self.container_name}"):
                prefix = f"{prefix}/{self.container_name}"
            return f"{prefix}/{self._get_ecs_task_id(self.arn)}"

    @property
    def _ecs(self) -> Any:
        """The Amazon operator's ECS client (``self.client``, whose ``boto3.client``
        annotation type checkers read as a function, not a client)."""
        return self.client

    @cached_property
    def handoff_hook(self) -> HandoffHook:
        """The hook of the stack's stores (``hook`` is the Amazon operator's ECS one), made
        from the same rendered AWS arguments."""
        return HandoffHook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        )

    # -- what the operator sends ---------------------------------------------------------

    def resolve_remote(self) -> tuple[str, str]:
        """Stack and bucket: the (rendered) arguments, else the worker's environment."""
        stack, bucket = stack_name(self.stack), bucket_name(self.bucket)
        if not stack:
            raise AirflowException("HandoffEcsRunOperator: no stack (set stack= or HANDOFF_STACK)")
        if not bucket:
            raise AirflowException(
                "HandoffEcsRunOperator: no bucket (set bucket= or HANDOFF_BUCKET)"
            )
        return stack, bucket

    def build_container_override(self, context: Context, *, stack: str, bucket: str) -> dict:
        """The ``containerOverrides`` entry of the handoff container: command + environment."""
        environment = container_environment(
            stack=stack, bucket=bucket, **context_run_fields(context)
        )
        return {
            "name": self.container_name,
            "command": container_command(
                self.workspace,
                self.vars,
                config_name=self.config_name,
                full_refresh=self.full_refresh,
                no_state_update=self.no_state_update,
                lock_wait=self.lock_wait,
            ),
            "environment": [{"name": k, "value": v} for k, v in environment.items()],
        }

    def build_overrides(self, context: Context) -> dict:
        """The user's ``overrides`` (cpu, memory, other containers...) plus the handoff container.

        The handoff container's entry keeps the user's other fields and environment
        entries; its command and the ``HANDOFF_*`` variables are the operator's.
        """
        stack, bucket = self.resolve_remote()
        ours = self.build_container_override(context, stack=stack, bucket=bucket)
        overrides = json.loads(json.dumps(self.overrides or {}, default=str))  # a deep copy
        containers = overrides.setdefault("containerOverrides", [])
        existing = next((c for c in containers if c.get("name") == self.container_name), None)
        if existing is None:
            containers.append(ours)
            return self._checked_size(overrides)
        if "command" in existing:
            raise AirflowException(
                f"overrides: containerOverrides[{self.container_name}].command is set by "
                "HandoffEcsRunOperator; pass vars instead"
            )
        names = {entry["name"] for entry in ours["environment"]}
        kept = [e for e in existing.get("environment", []) if e.get("name") not in names]
        existing["command"] = ours["command"]
        existing["environment"] = kept + ours["environment"]
        return self._checked_size(overrides)

    @staticmethod
    def _checked_size(overrides: dict) -> dict:
        """ECS refuses overrides over 8 KiB: fail before RunTask, with the reason."""
        try:
            check_overrides_size(overrides)
        except ConfigurationError as exc:
            raise AirflowException(f"HandoffEcsRunOperator: {exc}") from None
        return overrides

    def build_network_configuration(self) -> dict | None:
        """``awsvpcConfiguration`` from subnets/security groups (else ``network_configuration``)."""
        if not self.subnets:
            return self.network_configuration
        config: dict[str, Any] = {
            "subnets": list(self.subnets),
            "assignPublicIp": "ENABLED" if self.assign_public_ip else "DISABLED",
        }
        if self.security_groups:
            config["securityGroups"] = list(self.security_groups)
        return {"awsvpcConfiguration": config}

    # -- execution: the Amazon operator does the work -------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        self._handoff_context = context
        self.overrides = self.build_overrides(context)
        self.network_configuration = self.build_network_configuration()
        stack, bucket = self.resolve_remote()
        self._persist_artifacts_link(bucket, stack, run_key_from_context(context))
        self._watch_task_arns()
        attempt = self._attempts_so_far(context)
        while True:
            attempt += 1
            self._record_attempt(context, attempt)
            try:
                # Returns once the task stopped successfully, else raises; in deferrable mode
                # it defers, and the try continues in execute_complete on a new instance.
                super().execute(context)
            except AirflowSkipException:
                raise
            except AirflowTaskTimeout:
                self._stop_task("Airflow task timed out (execution_timeout)")
                raise
            except (AirflowException, EcsOperatorError, EcsTaskFailToStart) as exc:
                self._recall_arn()
                if not self._retry_start(exc, attempt):
                    self._on_failure(exc)
                continue
            break
        self._on_success()
        return self._succeeded(context)

    def execute_complete(  # type: ignore[override]  # the run summary, not a log line
        self, context: Context, event: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self._handoff_context = context
        self._watch_task_arns()
        self._task_arn_seen = (event or {}).get("task_arn")
        try:
            super().execute_complete(context, event)
        except AirflowSkipException:
            raise
        except (AirflowException, EcsTaskFailToStart) as exc:
            self._recall_arn()
            if not self._retry_start(exc, self._attempts_so_far(context)):
                self._on_failure(exc)
            # a new task, and a new deferral (execute counts the attempts in XCom)
            self.arn = None
            return self.execute(context)
        self._on_success()
        return self._succeeded(context)

    def _succeeded(self, context: Context) -> dict[str, Any]:
        """The summary (XCom), after putting what happened on the ``last/`` asset event."""
        summary = self._summary()
        self._lineage_summary = summary
        if summary.get("stack") and summary.get("bucket"):
            remote = self.handoff_hook.get_remote(stack=summary["stack"], bucket=summary["bucket"])
            report_last_event(context, self.outlets, remote.artifacts, summary, self.log)
        return summary

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        """A deferral that failed or timed out (``next_method == "__fail__"``) leaves the ECS
        task running: stop it before Airflow fails the try."""
        if next_method == "__fail__":
            self._handoff_context = context
            self._stop_started_tasks(context, "Airflow deferral failed or timed out")
        return super().resume_execution(next_method, next_kwargs, context)

    def on_kill(self) -> None:
        """The Amazon operator stops the task (unless the timeout handler just did)."""
        if self.arn and self.arn == self._stopped_arn:
            return
        if self.arn:
            self.log.warning("Stopping ECS task %s (the Airflow task was killed)", self.arn)
        super().on_kill()

    def _get_task_log_fetcher(self) -> AwsTaskLogFetcher:
        """The provider's fetcher, or one that reads the stream a last time once stopped."""
        fetcher = super()._get_task_log_fetcher()
        if FETCHER_READS_AFTER_STOP:
            return fetcher
        return FinalReadLogFetcher(
            aws_conn_id=self.aws_conn_id,
            region_name=fetcher.hook.region_name,
            log_group=fetcher.log_group,
            log_stream_name=fetcher.log_stream_name,
            fetch_interval=fetcher.fetch_interval,
            logger=fetcher.logger,
        )

    # -- retries of tasks AWS failed to start -----------------------------------------------

    def _recall_arn(self) -> None:
        """Put the failed task's ARN back on ``self.arn`` when the Amazon operator cleared it.

        Some versions (9.0.0) set ``self.arn = None`` before raising ``EcsTaskFailToStart``;
        deciding on a retry, a skip exit code and the failed run's summary all read that
        task, so the operator remembers the ARN it last saw itself.
        """
        if not self.arn and self._task_arn_seen:
            self.arn = self._task_arn_seen

    def _retry_reason(self, exc: BaseException) -> str | None:
        """Why a failure is AWS's, worth a new task: a capacity failure or a transient stop."""
        if isinstance(exc, EcsOperatorError):
            return capacity_failure(exc.failures)
        if not self.arn:
            return None
        try:
            response = self._ecs.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        except Exception as error:  # keep the task's own failure as the one raised
            self.log.warning("Could not describe ECS task %s: %s", self.arn, error)
            return None
        for task in response.get("tasks", []):
            reason = transient_stop(task)
            if reason:
                return reason
        return None

    def _retry_start(self, exc: BaseException, attempt: int) -> bool:
        """True when a new task should be started (logged), False when ``exc`` is final."""
        reason = self._retry_reason(exc)
        if reason is None:
            return False
        if attempt >= self.start_attempts:
            self.log.error(
                "ECS task %s failed to start (%s); giving up after %d attempts",
                self.arn or "(not started)",
                reason,
                attempt,
            )
            return False
        delay = self.start_retry_delay * 2 ** (attempt - 1)
        self.log.warning(
            "ECS task %s failed to start (%s): starting a new task in %.0f s (attempt %d of %d)",
            self.arn or "(not started)",
            reason,
            delay,
            attempt + 1,
            self.start_attempts,
        )
        self.arn = None
        time.sleep(delay)
        return True

    def _attempts_so_far(self, context: Context) -> int:
        """Tasks this try started before (XCom of the try; 0 on a fresh try)."""
        try:
            value = context["ti"].xcom_pull(task_ids=self.task_id, key=_ATTEMPT_KEY)
        except Exception:  # no XCom backend (a bare context): count from here
            return 0
        return value if isinstance(value, int) else 0

    def _record_attempt(self, context: Context, attempt: int) -> None:
        if attempt > 1 or self.deferrable:
            context["ti"].xcom_push(key=_ATTEMPT_KEY, value=attempt)

    # -- stopping ---------------------------------------------------------------------------

    def _stop_task(self, reason: str) -> None:
        if not self.arn:
            return
        self.log.warning("Stopping ECS task %s: %s", self.arn, reason)
        self._stopped_arn = self.arn
        try:
            self._ecs.stop_task(cluster=self.cluster, task=self.arn, reason=reason[:255])
        except Exception as error:
            self.log.error("Could not stop ECS task %s: %s", self.arn, error)

    def _stop_started_tasks(self, context: Context, reason: str) -> None:
        """Stop the running tasks this try started (found by the reattach ``startedBy``)."""
        ti = context["ti"]
        started_by = generate_uuid(*map(str, [ti.dag_id, ti.task_id, ti.run_id, ti.map_index]))
        try:
            arns = self._ecs.list_tasks(
                cluster=self.cluster, desiredStatus="RUNNING", startedBy=started_by
            )["taskArns"]
        except Exception as error:
            self.log.error("Could not list the ECS tasks of this try: %s", error)
            return
        for arn in arns:
            self.arn = arn
            self._stop_task(reason)

    # -- outcome ------------------------------------------------------------------------------

    def _skip_for(self, exc: BaseException) -> bool:
        """Our ``skip_on_exit_code`` (when the Amazon operator lacks it): the container's."""
        if not self.handoff_skip_exit_codes or not self.arn or isinstance(exc, EcsOperatorError):
            return False
        try:
            response = self._ecs.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        except Exception:
            return False
        for task in response.get("tasks", []):
            for container in task.get("containers", []):
                if container.get("name") == self.container_name:
                    return container.get("exitCode") in self.handoff_skip_exit_codes
        return False

    def _on_failure(self, exc: BaseException) -> None:
        """Links, where the failed run's artifacts are, the summary in XCom; then raise."""
        location = self._run_location()
        self._persist_links(location)
        if location is not None and self.arn:
            self.log.error("Artifacts of the failed run: %s", location["artifacts"]["runs_uri"])
            self._lineage_summary = {**location, "status": "failed"}
            self._push_failed_summary(location)
        if self._skip_for(exc):
            raise AirflowSkipException(f"ECS container exited with a skip exit code: {exc}")
        raise exc

    def _on_success(self) -> None:
        self._location = self._run_location()
        self._persist_links(self._location)

    def _persist_links(self, location: dict[str, Any] | None) -> None:
        if location is not None:
            self._persist_artifacts_link(location["bucket"], location["stack"], location["run_key"])
        self._persist_log_link()

    # -- OpenLineage (RunLineageMixin; called by the openlineage provider when installed) ----

    def _lineage_target(self, summary: Mapping[str, Any] | None) -> dict[str, Any]:
        stack, bucket = (summary or {}).get("stack"), (summary or {}).get("bucket")
        if not (stack and bucket):
            stack, bucket = stack_name(self.stack), bucket_name(self.bucket)
        # the container runs from the remote config and files/, and always archives
        return {"stack": stack, "bucket": bucket, "reads_remote_files": True, "archives": True}

    # -- the summary ------------------------------------------------------------------------

    _location: dict[str, Any] | None = None

    def _task_environment(self) -> dict[str, str]:
        """The ``HANDOFF_*`` environment the task really got (a reattached task keeps its own)."""
        if not self.arn:
            return {}
        try:
            response = self._ecs.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        except Exception as exc:  # the summary must not fail a task whose run succeeded
            self.log.warning("Could not describe ECS task %s: %s", self.arn, exc)
            return {}
        for task in response.get("tasks", []):
            for container in task.get("overrides", {}).get("containerOverrides", []):
                if container.get("name") == self.container_name:
                    return {
                        e["name"]: e.get("value", "")
                        for e in container.get("environment", [])
                        if e.get("name", "").startswith("HANDOFF_")
                    }
        return {}

    def _run_location(self) -> dict[str, Any] | None:
        """Stack, bucket, run key and artifacts URIs of the run the ECS task performs."""
        env = self._task_environment()
        stack, bucket, run_key = env.get(ENV_STACK), env.get(ENV_BUCKET), env.get(ENV_RUN_KEY)
        if not (stack and bucket and run_key):
            if self._handoff_context is None:
                return None
            stack, bucket = self.resolve_remote()
            run_key = run_key_from_context(self._handoff_context)
        return {
            "stack": stack,
            "bucket": bucket,
            "run_key": run_key,
            "artifacts": {"run_key": run_key, **artifacts_uris(bucket, stack, run_key)},
        }

    def _read_run_record(self, bucket: str, stack: str, run_key: str) -> dict | None:
        """The container's ``artifacts/run.json`` (tasks, stages, exit codes), if archived."""
        try:
            key = run_record_key(stack, run_key)
            body = self.handoff_hook.get_client("s3").get_object(Bucket=bucket, Key=key)["Body"]
            record = json.loads(body.read())
        except Exception as exc:
            self.log.warning(
                "No run record of run %s in s3://%s/%s: %s", run_key, bucket, stack, exc
            )
            return None
        return record if isinstance(record, dict) else None

    def _report(self, status: str, location: Mapping[str, Any], **details: Any) -> dict[str, Any]:
        """The run's summary (the :class:`RunReport` both operators return): the container's
        run record when it was archived, the ECS task, where the artifacts are."""
        from handoff_provider.core.run.summary import RunReport

        record = None
        if location:
            record = self._read_run_record(
                location["bucket"], location["stack"], location["run_key"]
            )
            details.update(stack=location["stack"], bucket=location["bucket"])
        return RunReport(
            status=status,
            run_key=location.get("run_key"),
            record=record,
            artifacts=location.get("artifacts"),
            details={"execution": "ecs", "task_arn": self.arn, **details},
        ).to_dict()

    def _summary(self) -> dict[str, Any]:
        ecs: dict[str, Any] = {"cluster": self.cluster, "task_definition": self.task_definition}
        if self._aws_logs_enabled():
            ecs.update(log_group=self.awslogs_group, log_stream=self._get_logs_stream_name())
        return self._report("success", self._location or self._run_location() or {}, ecs=ecs)

    def _push_failed_summary(self, location: dict[str, Any]) -> None:
        """A failed try returns nothing; as for the local run, its summary (the container's
        run record when it got archived) goes to XCom ``handoff_outcome``."""
        if not self.do_xcom_push or self._handoff_context is None:
            return
        try:
            summary = self._report("failed", location)
            self._handoff_context["ti"].xcom_push(key="handoff_outcome", value=summary)
        except Exception as exc:  # never hide the task's own failure behind this
            self.log.warning("Could not push the failed run's summary to XCom: %s", exc)

    # -- links --------------------------------------------------------------------------------

    def _link_region(self) -> str | None:
        return self.region_name or self.hook.conn_region_name

    def _persist_artifacts_link(self, bucket: str, stack: str, run_key: str) -> None:
        if self._handoff_context is None:
            return
        HandoffArtifactsLink.persist(
            context=self._handoff_context,
            operator=self,
            region_name=self._link_region(),
            aws_partition=self.hook.conn_partition,
            bucket=bucket,
            prefix=runs_prefix(stack, run_key),
        )

    def _watch_task_arns(self) -> None:
        """Persist the ECS console link (and remember the ARN) as soon as a task is started or
        reattached: botocore reports the ARNs in this operator's own ``RunTask``/``ListTasks``
        responses."""
        if self._watching_client:
            return
        events = self._ecs.meta.events
        events.register("after-call.ecs.RunTask", self._on_task_arns)
        events.register("after-call.ecs.ListTasks", self._on_task_arns)
        self._watching_client = True

    def _on_task_arns(self, parsed: dict, **_: Any) -> None:
        arns = [t.get("taskArn") for t in parsed.get("tasks", [])] + parsed.get("taskArns", [])
        arns = [arn for arn in arns if arn]
        # (a capacity failure answers RunTask without a task: nothing to recall then)
        self._task_arn_seen = arns[0] if arns else None
        if not arns or self._handoff_context is None:
            return
        try:
            HandoffEcsTaskLink.persist(
                context=self._handoff_context,
                operator=self,
                region_name=self._link_region(),
                aws_partition=self.hook.conn_partition,
                cluster=self.cluster,
                task_arn=arns[0],
            )
        except Exception as error:  # a link must never fail the run
            self.log.warning("Could not persist the ECS task link: %s", error)

    def _persist_log_link(self) -> None:
        if self._handoff_context is None or not self._aws_logs_enabled() or not self.arn:
            return
        # (amazon 9.17 fills awslogs_region in __init__; later versions resolve it lazily)
        region = self.awslogs_region or self._link_region()
        CloudWatchEventsLink.persist(
            context=self._handoff_context,
            operator=self,
            region_name=region,
            aws_partition=self.hook.conn_partition,
            awslogs_group=self.awslogs_group,
            awslogs_region=region,
            awslogs_stream_name=self._get_logs_stream_name(),
        )
