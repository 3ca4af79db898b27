"""HandoffEcsRunOperator when AWS fails the task, not the project: retries, stops, links.

Against the real moto server of tests/airflow/test_ecs_operator.py (its ECS world and its
``FakeFargate``). Each test drives the container's lifecycle through botocore's event
system on the operator's own ECS client, the one thing moto cannot do: ``before-call``
handlers answer ``RunTask`` with a capacity failure (no task created, as ECS does), and
``after-call`` handlers make ``DescribeTasks`` report how the task stopped (a transient
start failure, an exit code, a stop). Everything else - the Amazon operator's start,
reattach, waiter, log fetcher and checks - runs unpatched.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import boto3
import pytest
from af_helpers import capture_task_log
from airflow.providers.amazon.aws.exceptions import EcsOperatorError
from botocore.awsrequest import AWSResponse

import handoff_provider.operators.ecs as ecs_module
from handoff_provider._compat import AirflowException, AirflowSkipException, AirflowTaskTimeout
from handoff_provider.links.ecs import HandoffEcsTaskLink
from tests.airflow import test_ecs_operator as ecs_tests
from tests.airflow.test_ecs_operator import (  # the shared ECS world and its one fake
    REGION,
    EcsWorld,
    FakeFargate,
    TaskInstanceStub,
    make_context,
    make_operator,
)

try:  # Airflow 3
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.execution_time.timeout import timeout
except ImportError:  # Airflow 2.x
    from airflow.exceptions import TaskDeferred
    from airflow.utils.timeout import timeout

pytestmark = pytest.mark.airflow
ecs_world = ecs_tests.ecs_world  # the fixture, shared

CAPACITY = "Capacity is unavailable at this time. Please try again later or in a different AZ"
TRANSIENT_STOPS = [
    "Timeout waiting for network interface provisioning to complete.",
    "Timeout waiting for EphemeralStorage provisioning to complete.",
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to "
    "resolve ref 123.dkr.ecr.us-east-1.amazonaws.com/handoff:1: dial tcp 1.2.3.4:443: "
    "i/o timeout",
    "CannotPullContainerError: ref pull has been retried 1 time(s): failed to copy: "
    "httpReadSeeker: failed open: unexpected EOF",
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource "
    "retrieval failed: unable to retrieve secret from asm: service call has been retried 5 "
    "time(s): RequestError: send request failed caused by: Post "
    "https://secretsmanager.us-east-1.amazonaws.com: context deadline exceeded",
]


class XcomTaskInstance(TaskInstanceStub):
    """The stub task instance, with ``xcom_pull`` of its own XComs (deferral survives)."""

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcom.get(key)


def xcom_context(try_number: int = 1) -> dict[str, Any]:
    context = make_context(try_number)
    ti = XcomTaskInstance(try_number=try_number)
    context.update(ti=ti, task_instance=ti)
    return context


@dataclass
class FlakyFargate(FakeFargate):
    """FakeFargate, plus what AWS does when it fails a task before its container ran.

    ``capacity_failures`` RunTask calls are answered (``before-call``, nothing created) with
    a capacity failure; then the ``start_failures`` next tasks stop with a transient reason
    and no exit code; later tasks run the container. ``StopTask`` ends a running task with
    exit code 143 (SIGTERM), as ECS does.
    """

    capacity_failures: int = 0
    start_failures: list[str] = field(default_factory=list)
    failed_starts: dict[str, str] = field(default_factory=dict)
    stops: list[dict] = field(default_factory=list)
    run_task_calls: int = 0

    def attach(self, operator: Any) -> Any:
        super().attach(operator)
        events = operator.client.meta.events
        events.register("before-call.ecs.RunTask", self._maybe_no_capacity)
        events.register("before-call.ecs.StopTask", self._stop)
        return operator

    def _maybe_no_capacity(self, **_: Any) -> tuple[AWSResponse, dict] | None:
        self.run_task_calls += 1
        if self.capacity_failures <= 0:
            return None
        self.capacity_failures -= 1
        failure = {"arn": "arn:aws:ecs:us-east-1:123456789012:cluster/x", "reason": CAPACITY}
        return AWSResponse("", 200, {}, None), {"tasks": [], "failures": [failure]}

    def _run(self, parsed: dict, **kwargs: Any) -> None:
        if self.start_failures and parsed.get("tasks"):
            reason = self.start_failures.pop(0)
            for task in parsed["tasks"]:
                self.failed_starts[task["taskArn"]] = reason
                boto3.client("ecs", region_name=REGION).stop_task(
                    cluster=self.world.cluster, task=task["taskArn"], reason=reason[:255]
                )
            return
        super()._run(parsed, **kwargs)

    def _report_stopped(self, parsed: dict, **kwargs: Any) -> None:
        super()._report_stopped(parsed, **kwargs)
        for task in parsed.get("tasks", []):
            reason = self.failed_starts.get(task["taskArn"])
            if reason is None:
                continue
            task.update(lastStatus="STOPPED", desiredStatus="STOPPED")
            task.update(stopCode="TaskFailedToStart", stoppedReason=reason)
            task["containers"] = [
                {"name": self.container_name, "lastStatus": "STOPPED", "reason": reason}
            ]

    def _stop(self, params: dict, **_: Any) -> None:
        body = params["body"]
        request = json.loads(body.decode() if isinstance(body, bytes) else body)
        self.stops.append(request)
        self.exit_codes[request["task"]] = 143


def flaky(world: EcsWorld, exit_code: int = 0, **kwargs: Any) -> FlakyFargate:
    return FlakyFargate(world, lambda _o, _a: (exit_code, ["container ran"]), **kwargs)


def operator(world: EcsWorld, stack: str, bucket: str, **kwargs: Any) -> Any:
    kwargs.setdefault("start_retry_delay", 0)
    return make_operator(world, stack=stack, bucket=bucket, **kwargs)


# -- retries ------------------------------------------------------------------------------


def test_capacity_failure_of_run_task_is_retried_and_logged(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    """Lifecycle through botocore events: RunTask answered twice with a capacity failure
    (before-call), then a task whose container exits 0. Three RunTask calls, two warnings."""
    fargate = flaky(ecs_world, capacity_failures=2)
    op = fargate.attach(operator(ecs_world, stack, bucket, start_attempts=3))
    with capture_task_log(op.log.name) as task_log:
        summary = op.execute(make_context())
    assert fargate.run_task_calls == 3
    assert summary["task_arn"] in fargate.exit_codes
    warnings = [line for line in task_log.lines if "failed to start" in line]
    assert len(warnings) == 2 and CAPACITY in warnings[0] and "attempt 2 of 3" in warnings[0]


def test_capacity_retries_are_bounded(ecs_world: EcsWorld, bucket: str, stack: str) -> None:
    """Lifecycle through botocore events: every RunTask answered with a capacity failure.
    The try fails with the Amazon operator's error after start_attempts calls."""
    fargate = flaky(ecs_world, capacity_failures=10)
    op = fargate.attach(operator(ecs_world, stack, bucket, start_attempts=2))
    with pytest.raises(EcsOperatorError):
        op.execute(make_context())
    assert fargate.run_task_calls == 2


@pytest.mark.parametrize("reason", TRANSIENT_STOPS, ids=["eni", "storage", "pull-io", "eof", "ssm"])
def test_transient_stop_starts_a_new_task(
    ecs_world: EcsWorld, bucket: str, stack: str, reason: str
) -> None:
    """Lifecycle through botocore events: the first task stops before its container ran
    (DescribeTasks after-call: TaskFailedToStart, the transient reason, no exit code); the
    second runs the container. The try succeeds on the second task."""
    fargate = flaky(ecs_world, start_failures=[reason])
    op = fargate.attach(operator(ecs_world, stack, bucket))
    summary = op.execute(make_context())
    assert len(fargate.requests) == 2
    (failed,) = fargate.failed_starts
    assert summary["task_arn"] != failed and fargate.exit_codes[summary["task_arn"]] == 0


def test_project_failure_is_not_retried(ecs_world: EcsWorld, bucket: str, stack: str) -> None:
    """Lifecycle through botocore events: the container ran and exited 1 (DescribeTasks
    after-call). That is the project's failure: one task, the try fails."""
    fargate = flaky(ecs_world, exit_code=1)
    op = fargate.attach(operator(ecs_world, stack, bucket))
    with pytest.raises(AirflowException, match="not in success state"):
        op.execute(make_context())
    assert len(fargate.requests) == 1


def test_non_transient_start_failure_is_not_retried(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    """Lifecycle through botocore events: a task that failed to start for a lasting reason
    (an image that does not exist) is not started again."""
    fargate = flaky(ecs_world, start_failures=["CannotPullContainerError: manifest unknown"])
    op = fargate.attach(operator(ecs_world, stack, bucket))
    with pytest.raises(Exception, match="manifest unknown"):
        op.execute(make_context())
    assert len(fargate.requests) == 1


def test_deferrable_transient_stop_defers_again_on_a_new_task(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    """Lifecycle through botocore events: deferrable; the first task fails to start
    (transient). Resuming starts a second task and defers again; the attempt count lives in
    the try's XCom, so the bound holds across deferrals."""
    fargate = flaky(ecs_world, start_failures=[TRANSIENT_STOPS[0], TRANSIENT_STOPS[2]])
    context = xcom_context()
    first = fargate.attach(operator(ecs_world, stack, bucket, deferrable=True, start_attempts=2))
    with pytest.raises(TaskDeferred):
        first.execute(context)
    (arn,) = fargate.failed_starts
    event = {"status": "success", "task_arn": arn, "cluster": ecs_world.cluster}
    resumed = fargate.attach(operator(ecs_world, stack, bucket, deferrable=True, start_attempts=2))
    with pytest.raises(TaskDeferred):
        resumed.execute_complete(context, event)
    assert len(fargate.requests) == 2
    second = next(a for a in fargate.failed_starts if a != arn)
    last = fargate.attach(operator(ecs_world, stack, bucket, deferrable=True, start_attempts=2))
    event = {"status": "success", "task_arn": second, "cluster": ecs_world.cluster}
    with pytest.raises(Exception, match="i/o timeout"):
        last.execute_complete(context, event)  # two attempts used: no third task
    assert len(fargate.requests) == 2


# -- stopping the task --------------------------------------------------------------------


def desired_status(world: EcsWorld, arn: str) -> str:
    ecs = boto3.client("ecs", region_name=REGION)
    return ecs.describe_tasks(cluster=world.cluster, tasks=[arn])["tasks"][0]["desiredStatus"]


def never_ending(world: EcsWorld) -> FlakyFargate:
    """A container that runs until the task is stopped (no exit code before StopTask)."""
    fargate = flaky(world)
    fargate.container = lambda _o, _a: (0, ["still running"])
    original = fargate._run

    def run_forever(parsed: dict, **kwargs: Any) -> None:
        original(parsed, **kwargs)
        for task in parsed.get("tasks", []):
            fargate.exit_codes.pop(task["taskArn"], None)  # not stopped yet

    fargate._run = run_forever  # type: ignore[method-assign]
    return fargate


def test_execution_timeout_stops_the_task(ecs_world: EcsWorld, bucket: str, stack: str) -> None:
    """Lifecycle through botocore events: the task never stops by itself; Airflow's own
    execution timeout (its signal-based ``timeout``) interrupts the wait, and the operator
    sends StopTask (moto then records the task as stopping)."""
    fargate = never_ending(ecs_world)
    op = fargate.attach(operator(ecs_world, stack, bucket))
    with pytest.raises(AirflowTaskTimeout), timeout(3):
        op.execute(make_context())
    (stop,) = fargate.stops
    assert stop["task"] == op.arn and "execution_timeout" in stop["reason"]
    assert desired_status(ecs_world, op.arn) == "STOPPED"


def test_on_kill_stops_the_task(ecs_world: EcsWorld, bucket: str, stack: str) -> None:
    """Lifecycle through botocore events: while execute() waits for a running task,
    on_kill (what Airflow calls, from another thread, when the task is killed) sends
    StopTask; the container then exits 143 and the try fails."""
    fargate = never_ending(ecs_world)
    op = fargate.attach(operator(ecs_world, stack, bucket))

    def kill_once_started() -> None:
        deadline = time.monotonic() + 60
        while not op.arn and time.monotonic() < deadline:
            time.sleep(0.1)
        op.on_kill()

    killer = threading.Thread(target=kill_once_started)
    killer.start()
    with pytest.raises(AirflowException, match="not in success state"):
        op.execute(make_context())
    killer.join(60)
    (stop,) = fargate.stops
    assert stop["task"] == op.arn


def test_deferral_timeout_stops_the_task(ecs_world: EcsWorld, bucket: str, stack: str) -> None:
    """Lifecycle through botocore events: deferrable; the task keeps running and the
    deferral times out (Airflow resumes the try with ``__fail__``). The operator finds the
    try's task (its reattach ``startedBy``) and stops it before the try fails."""
    fargate = never_ending(ecs_world)
    context = make_context()
    op = fargate.attach(operator(ecs_world, stack, bucket, deferrable=True))
    with pytest.raises(TaskDeferred):
        op.execute(context)
    arn = op.arn
    resumed = fargate.attach(operator(ecs_world, stack, bucket, deferrable=True))
    with pytest.raises(AirflowException):
        resumed.resume_execution("__fail__", {"error": "Trigger timeout"}, context)
    (stop,) = fargate.stops
    assert stop["task"] == arn and "deferral" in stop["reason"]
    assert desired_status(ecs_world, arn) == "STOPPED"


# -- links, skip ------------------------------------------------------------------------


def test_ecs_console_link_is_persisted_when_the_task_starts(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    """Lifecycle through botocore events: deferrable, so execute() stops at the deferral:
    the ECS task link is already in XCom, beside the artifacts link."""
    fargate = never_ending(ecs_world)
    context = make_context()
    op = fargate.attach(operator(ecs_world, stack, bucket, deferrable=True))
    with pytest.raises(TaskDeferred):
        op.execute(context)
    value = context["ti"].xcom[HandoffEcsTaskLink.key]
    assert value["task_arn"] == op.arn and value["cluster"] == ecs_world.cluster
    url = HandoffEcsTaskLink().format_link(**value)
    task_id = op.arn.rsplit("/", 1)[-1]
    assert url == (
        f"https://{REGION}.console.aws.amazon.com/ecs/v2/clusters/{ecs_world.cluster}"
        f"/tasks/{task_id}/configuration?region={REGION}"
    )
    assert "handoff_artifacts" in context["ti"].xcom


# The Amazon operator's own skip_on_exit_code where the installed provider has it; this
# operator's always (it is what an Amazon provider without the parameter gets).
SKIP_PATHS = (
    ["amazon-provider", "handoff"] if ecs_module.UPSTREAM_SKIP_ON_EXIT_CODE else ["handoff"]
)


@pytest.mark.parametrize("path", SKIP_PATHS)
def test_skip_on_exit_code(
    ecs_world: EcsWorld, bucket: str, stack: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lifecycle through botocore events: the container exits 7 (DescribeTasks after-call).
    With skip_on_exit_code=7 the try is skipped, whether the installed Amazon operator
    handles it or (an Amazon provider without the parameter) this operator does."""
    upstream = path == "amazon-provider"
    monkeypatch.setattr(ecs_module, "UPSTREAM_SKIP_ON_EXIT_CODE", upstream)
    fargate = flaky(ecs_world, exit_code=7)
    op = fargate.attach(operator(ecs_world, stack, bucket, skip_on_exit_code=[7, 8]))
    assert op.handoff_skip_exit_codes == ([] if upstream else [7, 8])
    with pytest.raises(AirflowSkipException):
        op.execute(make_context())
    fargate = flaky(ecs_world, exit_code=1)
    op = fargate.attach(operator(ecs_world, stack, bucket, skip_on_exit_code=7))
    with pytest.raises(AirflowException) as failed:
        op.execute(make_context())
    assert not isinstance(failed.value, AirflowSkipException)


# -- the log stream, read a last time --------------------------------------------------


@pytest.mark.parametrize("fetcher", ["installed", "handoff"])
def test_last_log_lines_written_as_the_task_stops_reach_the_task_log(
    ecs_world: EcsWorld,
    bucket: str,
    stack: str,
    fetcher: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lifecycle through botocore events: the container writes its last line to CloudWatch
    just as DescribeTasks first reports it STOPPED (after-call), long before the fetcher's
    next poll. The line still reaches the task log: the fetcher reads the stream once more
    after the task stopped (the installed provider's when it does, else handoff's)."""
    if fetcher == "handoff":
        monkeypatch.setattr(ecs_module, "FETCHER_READS_AFTER_STOP", False)
    fargate = flaky(ecs_world)
    logs = boto3.client("logs", region_name=REGION)
    written: list[str] = []

    def last_words(parsed: dict, **_: Any) -> None:
        for task in parsed.get("tasks", []):
            if task.get("lastStatus") == "STOPPED" and task["taskArn"] not in written:
                written.append(task["taskArn"])
                logs.put_log_events(
                    logGroupName=ecs_world.log_group,
                    logStreamName=f"handoff/handoff/{task['taskArn'].rsplit('/', 1)[-1]}",
                    logEvents=[{"timestamp": int(time.time() * 1000), "message": "LAST WORDS"}],
                )

    op = fargate.attach(
        operator(ecs_world, stack, bucket, awslogs_fetch_interval=timedelta(seconds=30))
    )
    op.client.meta.events.register("after-call.ecs.DescribeTasks", last_words)
    if fetcher == "handoff":
        assert isinstance(op._get_task_log_fetcher(), ecs_module.FinalReadLogFetcher)
    started = time.monotonic()
    with capture_task_log(op.log.name) as task_log:
        op.execute(make_context())
    assert time.monotonic() - started < 25  # not one full fetch interval
    assert written and "LAST WORDS" in task_log.text()
