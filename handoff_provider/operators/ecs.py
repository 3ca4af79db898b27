"""Run a handoff project on ECS Fargate: Airflow launches and watches, the container does the run.

:class:`HandoffEcsRunOperator` is the Amazon provider's ``EcsRunTaskOperator`` with the
container override filled in: the command is the ``handoff`` CLI's remote run
(``handoff run -w <workspace> -a``, see :mod:`handoff_provider.core.container`) and the
environment carries the stack, the bucket, the run key and the data interval. Everything
else - starting the task, reattaching after a worker restart, waiting (or deferring to
the provider's trigger), forwarding the CloudWatch log into the task log, failing with the
log tail on a non-zero exit - is the Amazon operator's own code, untouched.

The overrides never hold a config value: the config stays in SSM and the container reads it
with its task role. ``vars`` travel as ``-v key=value`` arguments, visible in the ECS
console, so they must not be secrets either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.links.logs import CloudWatchEventsLink
from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator

from handoff_provider._compat import (
    AirflowException,
    airflow_setting,
    context_data_interval,
    context_logical_date,
    run_key_from_context,
)
from handoff_provider.core.container import (
    CONTAINER_NAME,
    ENV_BUCKET,
    ENV_STACK,
    WORKSPACE,
    artifacts_uris,
    container_command,
    container_environment,
)
from handoff_provider.core.context import ENV_RUN_KEY
from handoff_provider.links.artifacts import HandoffArtifactsLink, artifacts_prefix
from handoff_provider.operators.run import resolve_bucket, resolve_stack, with_last_outlet

if TYPE_CHECKING:
    from airflow.utils.context import Context


def _default_deferrable() -> bool:
    """``[operators] default_deferrable``, read when the operator is built (not imported)."""
    value = airflow_setting("operators", "default_deferrable", "False") or "False"
    return value.strip().lower() in ("true", "t", "1", "yes", "on")


class HandoffEcsRunOperator(EcsRunTaskOperator):
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
    :param workspace: the workspace directory inside the image.
    :param ecs_kwargs: anything else ``EcsRunTaskOperator`` takes (``overrides`` for cpu/memory,
        ``deferrable``, ``reattach``, ``number_logs_exception``, ``waiter_delay``, ...).

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
    operator_extra_links = (HandoffArtifactsLink(), CloudWatchEventsLink())
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
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        awslogs_group: str | None = None,
        awslogs_region: str | None = None,
        awslogs_stream_prefix: str | None = None,
        workspace: str = WORKSPACE,
        **ecs_kwargs: Any,
    ) -> None:
        if subnets and ecs_kwargs.get("network_configuration") is not None:
            raise ValueError(
                "pass either subnets/security_groups or network_configuration, not both"
            )
        ecs_kwargs.setdefault("launch_type", "FARGATE")
        ecs_kwargs.setdefault("reattach", True)
        ecs_kwargs.setdefault("deferrable", _default_deferrable())
        ecs_kwargs.setdefault("overrides", {})
        # Same data-aware scheduling as the local run: the stack's last/ is an outlet.
        ecs_kwargs["outlets"] = with_last_outlet(ecs_kwargs.get("outlets") or [], stack, bucket)
        super().__init__(
            cluster=cluster,
            task_definition=task_definition,
            container_name=container_name,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            awslogs_group=awslogs_group,
            awslogs_region=awslogs_region,
            awslogs_stream_prefix=awslogs_stream_prefix,
            **ecs_kwargs,
        )
        self.subnets = list(subnets) if subnets else None
        self.security_groups = list(security_groups) if security_groups else None
        self.assign_public_ip = assign_public_ip
        self.stack = stack
        self.bucket = bucket
        self.config_name = config_name
        self.vars = dict(vars or {})
        self.workspace = workspace
        self._handoff_context: Context | None = None

    # -- what the operator sends ---------------------------------------------------------

    def resolve_remote(self) -> tuple[str, str]:
        """Stack and bucket: the (rendered) arguments, else the worker's environment."""
        stack, bucket = resolve_stack(self.stack), resolve_bucket(self.bucket)
        if not stack:
            raise AirflowException("HandoffEcsRunOperator: no stack (set stack= or HANDOFF_STACK)")
        if not bucket:
            raise AirflowException(
                "HandoffEcsRunOperator: no bucket (set bucket= or HANDOFF_BUCKET)"
            )
        return stack, bucket

    def build_container_override(self, context: Context, *, stack: str, bucket: str) -> dict:
        """The ``containerOverrides`` entry of the handoff container: command + environment."""
        start, end = context_data_interval(context)
        environment = container_environment(
            stack=stack,
            bucket=bucket,
            run_key=run_key_from_context(context),
            start_at=start,
            end_at=end,
            logical_date=context_logical_date(context),
        )
        return {
            "name": self.container_name,
            "command": container_command(self.workspace, self.vars, config_name=self.config_name),
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
            return overrides
        if "command" in existing:
            raise AirflowException(
                f"overrides: containerOverrides[{self.container_name}].command is set by "
                "HandoffEcsRunOperator; pass vars instead"
            )
        names = {entry["name"] for entry in ours["environment"]}
        kept = [e for e in existing.get("environment", []) if e.get("name") not in names]
        existing["command"] = ours["command"]
        existing["environment"] = kept + ours["environment"]
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
        # Returns once the task stopped successfully, else raises; in deferrable mode it
        # defers, and the try continues in execute_complete on a new operator instance.
        super().execute(context)
        return self._summary()

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        self._handoff_context = context
        super().execute_complete(context, event)
        return self._summary()

    def _after_execution(self) -> None:
        """The Amazon operator's check of the stopped task (exit code, log tail), plus the
        links and, on failure, where the failed run's artifacts are."""
        location = self._run_location()
        if location is not None:
            self._persist_artifacts_link(location["bucket"], location["stack"], location["run_key"])
        self._persist_log_link()
        try:
            super()._after_execution()
        except AirflowException:
            if location is not None:
                self.log.error("Artifacts of the failed run: %s", location["artifacts"]["runs_uri"])
                self._push_failed_summary(location)
            raise
        self._location = location

    # -- the summary ------------------------------------------------------------------------

    _location: dict[str, Any] | None = None

    def _task_environment(self) -> dict[str, str]:
        """The ``HANDOFF_*`` environment the task really got (a reattached task keeps its own)."""
        if not self.arn:
            return {}
        try:
            response = self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn])
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
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        key = f"{stack}/runs/{run_key}/run.json"
        try:
            hook = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
            record = json.loads(hook.read_key(key, bucket_name=bucket))
        except Exception as exc:
            self.log.warning("No run record at s3://%s/%s: %s", bucket, key, exc)
            return None
        return record if isinstance(record, dict) else None

    def _summary(self) -> dict[str, Any]:
        location = self._location or self._run_location() or {}
        record = (
            self._read_run_record(location["bucket"], location["stack"], location["run_key"])
            if location
            else None
        )
        summary: dict[str, Any] = dict(record or {})
        summary.update(
            {
                "status": "success",
                "commands_status": (record or {}).get("status"),
                "execution": "ecs",
                "task_arn": self.arn,
                "ecs": {"cluster": self.cluster, "task_definition": self.task_definition},
                **location,
            }
        )
        if self._aws_logs_enabled():
            summary["ecs"]["log_group"] = self.awslogs_group
            summary["ecs"]["log_stream"] = self._get_logs_stream_name()
        return summary

    def _push_failed_summary(self, location: dict[str, Any]) -> None:
        """A failed try returns nothing; as for the local run, its summary (the container's
        run record when it got archived) goes to XCom ``handoff_outcome``."""
        if not self.do_xcom_push or self._handoff_context is None:
            return
        try:
            record = self._read_run_record(
                location["bucket"], location["stack"], location["run_key"]
            )
            summary = {
                **(record or {}),
                "status": "failed",
                "commands_status": (record or {}).get("status"),
                "execution": "ecs",
                "task_arn": self.arn,
                **location,
            }
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
            prefix=artifacts_prefix(stack, run_key),
        )

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
