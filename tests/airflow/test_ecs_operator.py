"""HandoffEcsRunOperator against a real moto server (ECS, EC2, CloudWatch Logs, S3, SSM).

moto's ECS accepts ``run_task`` and records the task, but runs no container. The only fake
here is :class:`FakeFargate`, which plays the part moto cannot: on ``RunTask`` it runs "the
container" (a callable; in the contract test, the real ``handoff`` CLI in a subprocess with
exactly the command and environment the operator sent), writes its output to moto's
CloudWatch Logs under the stream name the ``awslogs`` driver would use, and makes
``DescribeTasks`` report the task STOPPED with the container's exit code. Everything else -
the Amazon operator's reattach lookup, ``run_task``, the ``tasks_stopped`` waiter, the
CloudWatch log fetcher, ``_check_success_task``, the deferrable trigger - runs unpatched.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from string import Template
from typing import Any

import boto3
import pytest
from af_helpers import capture_task_log
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.providers.amazon.aws.triggers.ecs import TaskDoneTrigger
from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

from handoff_provider._compat import AirflowException, Asset, run_key_from_context
from handoff_provider.core.cli.container import (
    ENTRYPOINT,
    WORKSPACE,
    container_command,
)
from handoff_provider.operators.ecs import HandoffEcsRunOperator

try:  # Airflow 3
    from airflow.sdk.exceptions import TaskDeferred
    from airflow.sdk.execution_time.context import OutletEventAccessors
except ImportError:  # Airflow 2.x
    from airflow.exceptions import TaskDeferred
    from airflow.utils.context import OutletEventAccessors

pytestmark = pytest.mark.airflow

REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[2]
WORD_COUNT = REPO / "examples" / "projects" / "01_word_count"
HANDOFF_BIN = Path(sys.executable).with_name(ENTRYPOINT[0])
STREAM_PREFIX = "handoff"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
END = datetime(2024, 1, 2, tzinfo=timezone.utc)

# A container: (containerOverrides entry as sent, task ARN) -> (exit code, log lines)
Container = Callable[[dict, str], "tuple[int, list[str]]"]


# -- the world: moto's ECS cluster, task definition, network, log group ------------------


@dataclass
class EcsWorld:
    endpoint: str
    cluster: str
    task_definition: str
    subnet: str
    security_group: str
    log_group: str


@pytest.fixture
def ecs_world(aws: str, monkeypatch: pytest.MonkeyPatch) -> EcsWorld:
    """A cluster, a Fargate task definition (awsvpc, awslogs), a VPC/subnet/SG and a log group."""
    # The operator's default connection, resolved from the environment like any secret backend.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws"}))
    suffix = uuid.uuid4().hex[:8]
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto builds the task's ENI attachment from the VPC's DNS settings
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"handoff-{suffix}", Description="handoff task", VpcId=vpc
    )["GroupId"]
    log_group = f"/ecs/handoff-{suffix}"
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName=log_group)
    ecs = boto3.client("ecs", region_name=REGION)
    cluster = f"handoff-{suffix}"
    ecs.create_cluster(clusterName=cluster)
    family = f"handoff-{suffix}"
    # The documented template (docs/ecs-task-definition.json), as a user registers it.
    spec = json.loads(
        Template((REPO / "docs" / "ecs-task-definition.json").read_text()).substitute(
            AWS_REGION=REGION, ACCOUNT_ID="123456789012", IMAGE_TAG="test"
        )
    )
    spec["family"] = family
    (container,) = spec["containerDefinitions"]
    container["logConfiguration"]["options"]["awslogs-group"] = log_group
    assert container["logConfiguration"]["options"]["awslogs-stream-prefix"] == STREAM_PREFIX
    # moto (not ECS) needs container-level cpu/memory to place a task
    container.update(cpu=int(spec["cpu"]), memory=int(spec["memory"]))
    ecs.register_task_definition(**spec)
    return EcsWorld(aws, cluster, family, subnet, group, log_group)


# -- the one fake: a Fargate that runs the container --------------------------------------


@dataclass
class FakeFargate:
    """Runs the container moto cannot run, on the operator's own (real) ECS client."""

    world: EcsWorld
    container: Container
    container_name: str = "handoff"
    requests: list[dict] = field(default_factory=list)  # RunTask bodies, as sent on the wire
    exit_codes: dict[str, int] = field(default_factory=dict)  # task ARN -> exit code

    def attach(self, operator: HandoffEcsRunOperator) -> HandoffEcsRunOperator:
        events = operator.client.meta.events
        events.register("before-call.ecs.RunTask", self._capture)
        events.register("after-call.ecs.RunTask", self._run)
        events.register("after-call.ecs.DescribeTasks", self._report_stopped)
        return operator

    def _capture(self, params: dict, **_: Any) -> None:
        body = params["body"]
        self.requests.append(json.loads(body.decode() if isinstance(body, bytes) else body))

    def _run(self, parsed: dict, **_: Any) -> None:
        override = next(
            c
            for c in self.requests[-1]["overrides"]["containerOverrides"]
            if c["name"] == self.container_name
        )
        for task in parsed.get("tasks", []):
            arn = task["taskArn"]
            exit_code, lines = self.container(override, arn)
            self.exit_codes[arn] = exit_code
            self.write_log(arn, lines)

    def write_log(self, task_arn: str, lines: list[str]) -> None:
        """What the awslogs driver does: one stream ``<prefix>/<container>/<task id>``."""
        logs = boto3.client("logs", region_name=REGION)
        stream = f"{STREAM_PREFIX}/{self.container_name}/{task_arn.rsplit('/', 1)[-1]}"
        logs.create_log_stream(logGroupName=self.world.log_group, logStreamName=stream)
        now = int(time.time() * 1000)
        if lines:
            logs.put_log_events(
                logGroupName=self.world.log_group,
                logStreamName=stream,
                logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
            )

    def _report_stopped(self, parsed: dict, **_: Any) -> None:
        for task in parsed.get("tasks", []):
            code = self.exit_codes.get(task["taskArn"])
            if code is None:
                continue
            task.update(lastStatus="STOPPED", desiredStatus="STOPPED")
            task["stopCode"] = "EssentialContainerExited"
            task["containers"] = [
                {"name": self.container_name, "lastStatus": "STOPPED", "exitCode": code}
            ]


# -- Airflow context ----------------------------------------------------------------------


class TaskInstanceStub:
    """The task instance attributes EcsRunTaskOperator and the AWS links read (plus XCom)."""

    def __init__(self, try_number: int = 1, map_index: int = -1) -> None:
        self.dag_id = "handoff_word_count"
        self.task_id = "run"
        self.run_id = "scheduled__2024-01-01T00:00:00+00:00"
        self.map_index = map_index
        self.try_number = try_number
        self.xcom: dict[str, Any] = {}

    @property
    def key(self) -> TaskInstanceKey:  # amazon < 9.12 derives the reattach id from it
        return TaskInstanceKey(
            self.dag_id, self.task_id, self.run_id, self.try_number, self.map_index
        )

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value


def make_context(try_number: int = 1) -> dict[str, Any]:
    ti = TaskInstanceStub(try_number=try_number)
    return {
        "ti": ti,
        "task_instance": ti,
        "run_id": ti.run_id,
        "data_interval_start": START,
        "data_interval_end": END,
        "logical_date": START,
    }


def make_operator(
    world: EcsWorld, *, stack: str, bucket: str, **kwargs: Any
) -> HandoffEcsRunOperator:
    kwargs.setdefault("awslogs_group", world.log_group)
    kwargs.setdefault("awslogs_stream_prefix", STREAM_PREFIX)
    kwargs.setdefault("awslogs_fetch_interval", timedelta(milliseconds=50))
    kwargs.setdefault("waiter_delay", 1)
    kwargs.setdefault("deferrable", False)
    return HandoffEcsRunOperator(
        task_id="run",
        cluster=world.cluster,
        task_definition=world.task_definition,
        subnets=[world.subnet],
        security_groups=[world.security_group],
        stack=stack,
        bucket=bucket,
        region_name=REGION,
        **kwargs,
    )


def env_of(override: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in override["environment"]}


# -- the container, run locally -----------------------------------------------------------

#: What the Dockerfile copies into the image (tests/test_container_files.py checks this list).
IMAGE_SOURCES = ("pyproject.toml", "README.md", "handoff_provider")


@pytest.fixture(scope="session")
def runtime_handoff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's install without the image: a fresh venv with ``pip install .[runtime]``
    from the files the Dockerfile copies, and no Airflow. Returns its ``handoff``."""
    root = tmp_path_factory.mktemp("runtime-image")
    source = root / "src"
    source.mkdir()
    for name in IMAGE_SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = root / "venv"
    python = venv / "bin" / "python"
    # uv from this venv or the main one (the Makefile installs it there); pip otherwise
    uv = next(
        (c for c in (Path(sys.executable).with_name("uv"), REPO / ".venv/bin/uv") if c.exists()),
        None,
    )
    if uv is not None:
        steps = [
            [str(uv), "venv", "-q", "-p", sys.executable, str(venv)],
            [str(uv), "pip", "install", "-q", "-p", str(python), f"{source}[runtime]"],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", f"{source}[runtime]"],
        ]
    for args in steps:
        subprocess.run(args, check=True, capture_output=True, timeout=300)
    probe = subprocess.run([str(python), "-c", "import airflow"], capture_output=True, check=False)
    assert probe.returncode != 0, "the runtime install must not contain Airflow"
    return venv / "bin" / ENTRYPOINT[0]


def run_like_the_container(
    override: dict, *, handoff: Path, endpoint: str, root: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``ENTRYPOINT + override["command"]`` with only the override's environment.

    ``handoff`` is the image's install (no Airflow). The process gets what a Fargate task
    has and nothing from this test process: PATH, a HOME, the task role's credentials (fake
    here), the AWS endpoint (moto), the venv cache the image sets, and the override's
    environment. The workspace is the one thing swapped: the image's path becomes a fresh
    local directory.
    """
    command = list(override["command"])
    at = command.index("-w") + 1
    assert command[at] == WORKSPACE
    command[at] = str(root / "workspace")
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.pathsep.join([str(handoff.parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "HANDOFF_VENV_CACHE": str(root / "venvs"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL": endpoint,
        **env_of(override),
    }
    return subprocess.run(
        [str(handoff), *command],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
        check=False,
    )


def handoff_cli(*args: str) -> None:
    proc = subprocess.run(
        [str(HANDOFF_BIN), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"handoff {' '.join(args)} failed:\n{proc.stderr}"


def s3_keys(bucket: str, prefix: str) -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))


# -- contract -------------------------------------------------------------------------------


def test_contract_operator_request_runs_the_project_like_the_container(
    ecs_world: EcsWorld,
    bucket: str,
    stack: str,
    tmp_path: Path,
    runtime_handoff: Path,
) -> None:
    """execute() sends run_task with the handoff command/env; that exact request, run as the
    container would run it, archives the word-count artifacts to runs/<key>/ and last/."""
    handoff_cli("config", "push", "-p", str(WORD_COUNT), "--stack", stack, "--bucket", bucket)
    handoff_cli("files", "push", "-p", str(WORD_COUNT), "--stack", stack, "--bucket", bucket)

    outputs: list[subprocess.CompletedProcess[str]] = []

    def container(override: dict, _arn: str) -> tuple[int, list[str]]:
        proc = run_like_the_container(
            override, handoff=runtime_handoff, endpoint=ecs_world.endpoint, root=tmp_path
        )
        outputs.append(proc)
        return proc.returncode, proc.stdout.splitlines()

    fargate = FakeFargate(ecs_world, container)
    op = fargate.attach(
        make_operator(ecs_world, stack=stack, bucket=bucket, vars={"greeting": "hello world"})
    )
    context = make_context()
    context["outlet_events"] = OutletEventAccessors()  # as the task runner provides it
    with capture_task_log(op.log.name) as task_log:  # the operator's log, from any thread
        summary = op.execute(context)

    # The request on the wire: Fargate, awsvpc network, the reattach token, our override.
    assert len(fargate.requests) == 1
    request = fargate.requests[0]
    assert request["launchType"] == "FARGATE"
    assert request["cluster"] == ecs_world.cluster
    assert request["taskDefinition"] == ecs_world.task_definition
    assert request["networkConfiguration"] == {
        "awsvpcConfiguration": {
            "subnets": [ecs_world.subnet],
            "securityGroups": [ecs_world.security_group],
            "assignPublicIp": "DISABLED",
        }
    }
    ti = context["ti"]
    assert request["startedBy"] == generate_uuid(ti.dag_id, ti.task_id, ti.run_id, "-1")
    (override,) = request["overrides"]["containerOverrides"]
    assert override["name"] == "handoff"
    assert override["command"] == [
        "run", "-w", WORKSPACE, "-a", "-v", "greeting=hello world"
    ]  # fmt: skip
    env = env_of(override)
    run_key = env.pop("HANDOFF_RUN_KEY")
    assert env == {
        "HANDOFF_STACK": stack,
        "HANDOFF_BUCKET": bucket,
        "HANDOFF_START_AT": START.isoformat(),
        "HANDOFF_END_AT": END.isoformat(),
        "HANDOFF_LOGICAL_DATE": START.isoformat(),
        "HANDOFF_ORIGIN": json.dumps(
            {"dag_id": ti.dag_id, "map_index": -1, "run_id": ti.run_id, "task_id": ti.task_id,
             "try_number": ti.try_number or 1},
            sort_keys=True, separators=(",", ":"),
        ),
    }  # fmt: skip
    assert run_key == run_key_from_context(context)  # per try: see _compat.run_key_for

    # moto recorded the same overrides on the task.
    task = boto3.client("ecs", region_name=REGION).describe_tasks(
        cluster=ecs_world.cluster, tasks=[summary["task_arn"]]
    )["tasks"][0]
    assert task["overrides"]["containerOverrides"] == request["overrides"]["containerOverrides"]

    # The container did the right thing: exit 0 and artifacts in runs/<key>/ and last/.
    (proc,) = outputs
    assert proc.returncode == 0, proc.stdout
    runs = s3_keys(bucket, f"{stack}/runs/{run_key}/")
    last = s3_keys(bucket, f"{stack}/last/")
    assert "state" in runs and "state" in last, (runs, last)
    state = (
        boto3.client("s3", region_name=REGION)
        .get_object(Bucket=bucket, Key=f"{stack}/last/state")["Body"]
        .read()
    )
    assert state.split() == [b"5"]  # wc -l of the five lines in files/lines.txt
    # The last/ outlet's event says what happened (see tests/airflow/test_asset_events.py).
    (outlet,) = op.outlets
    extra = context["outlet_events"][outlet].extra
    assert extra["run_key"] == run_key and extra["status"] == "success"
    assert extra["data_interval"] == {"start": START.isoformat(), "end": END.isoformat()}
    assert extra["tasks"] == {"default": "success"} and extra["bytes_out"] == len(state)
    assert extra["state"] == {"size": len(state), "sha256": hashlib.sha256(state).hexdigest()}

    # The summary: ECS task, artifacts location, the container's run record.
    assert summary["task_arn"] == task["taskArn"]
    assert summary["run_key"] == run_key
    assert summary["artifacts"] == {
        "run_key": run_key,
        "runs_uri": f"s3://{bucket}/{stack}/runs/{run_key}/",
        "last_uri": f"s3://{bucket}/{stack}/last/",
    }
    # the container's run record (runs/<key>/run.json): the pipeline's stages and exit codes
    assert summary["commands_status"] == "success"
    (task_result,) = summary["tasks"]
    assert [stage["command"] for stage in task_result["stages"]] == ["cat files/lines.txt", "wc -l"]
    assert {stage["exit_code"] for stage in task_result["stages"]} == {0}
    json.dumps(summary)  # XCom-safe

    # The Airflow task log shows the container's log (forwarded from CloudWatch).
    container_lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert container_lines
    assert container_lines[-1] in task_log.text()
    # The CloudWatch link points at the container's stream.
    link = ti.xcom["cloudwatch_events"]
    assert link["awslogs_group"] == ecs_world.log_group
    assert link["awslogs_stream_name"] == summary["ecs"]["log_stream"]
    assert summary["ecs"]["log_stream"].endswith(task["taskArn"].rsplit("/", 1)[-1])
    artifacts_link = ti.xcom["handoff_artifacts"]
    assert (artifacts_link["bucket"], artifacts_link["prefix"]) == (
        bucket,
        f"{stack}/runs/{run_key}/",
    )


#: A stateful project: its state counts the runs that restored it (one more each time).
COUNTER = """\
tasks:
  - name: count
    pipeline:
      - command: sh
        args: "-c 'echo $(( $(cat artifacts/state 2>/dev/null || echo 0) + 1 ))'"
"""


def test_state_options_reach_the_container_full_refresh_and_no_state_update(
    ecs_world: EcsWorld, bucket: str, stack: str, tmp_path: Path, runtime_handoff: Path
) -> None:
    """The run operator's full_refresh / no_state_update (and lock_wait) on Fargate: the
    command the operator sends, run as the container runs it (a fresh workspace each time),
    starts without the published state and publishes the new one, or archives without
    touching last/."""
    project = tmp_path / "counter"
    project.mkdir()
    (project / "project.yml").write_text(COUNTER)
    handoff_cli("config", "push", "-p", str(project), "--stack", stack, "--bucket", bucket)
    s3 = boto3.client("s3", region_name=REGION)

    def state(prefix: str) -> bytes:
        return s3.get_object(Bucket=bucket, Key=f"{stack}/{prefix}state")["Body"].read()

    def run(try_number: int, **kwargs: Any) -> tuple[list[str], dict[str, Any]]:
        def container(override: dict, _arn: str) -> tuple[int, list[str]]:
            proc = run_like_the_container(
                override,
                handoff=runtime_handoff,
                endpoint=ecs_world.endpoint,
                root=tmp_path / f"try{try_number}",
            )
            return proc.returncode, proc.stdout.splitlines()

        fargate = FakeFargate(ecs_world, container)
        # (moto keeps the earlier tries' tasks RUNNING: no reattaching to them)
        op = make_operator(ecs_world, stack=stack, bucket=bucket, reattach=False, **kwargs)
        summary = fargate.attach(op).execute(make_context(try_number=try_number))
        (override,) = fargate.requests[-1]["overrides"]["containerOverrides"]
        assert fargate.exit_codes[summary["task_arn"]] == 0
        return override["command"], summary

    plain, _ = run(1)
    run(2)
    assert state("last/") == b"2\n"
    assert plain == ["run", "-w", WORKSPACE, "-a"]

    command, summary = run(3, full_refresh=True)
    assert command == ["run", "-w", WORKSPACE, "-a", "--full-refresh"]
    assert state("last/") == b"1\n"  # started from no state, and published
    assert state(f"runs/{summary['run_key']}/") == b"1\n"

    command, summary = run(4, no_state_update=True, lock_wait=5)
    assert command == ["run", "-w", WORKSPACE, "-a", "--no-state-update", "--lock-wait", "5"]
    assert state(f"runs/{summary['run_key']}/") == b"2\n"  # restored 1, archived its 2
    assert state("last/") == b"1\n"  # last/ untouched


def test_lock_wait_must_be_seconds() -> None:
    with pytest.raises(ValueError, match="lock_wait"):
        HandoffEcsRunOperator(task_id="t", cluster="c", task_definition="td", lock_wait=-1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"subnets": "subnet-1"}, "subnets: expected a list of strings (got a string)"),
        (
            {"security_groups": ["sg-1", 2]},
            "security_groups: expected a list of strings (got an int",
        ),
        ({"vars": "day=1"}, "vars: expected a dict of names to values (got a string)"),
    ],
)
def test_container_arguments_of_the_wrong_shape_are_one_line(
    arguments: dict[str, Any], message: str
) -> None:
    """A subnet ID given as a string would otherwise become one subnet per letter."""
    with pytest.raises(ValueError, match=re.escape(message)):
        HandoffEcsRunOperator(task_id="t", cluster="c", task_definition="td", **arguments)
    assert HandoffEcsRunOperator(
        task_id="t", cluster="c", task_definition="td", subnets=("subnet-1",)
    ).subnets == ["subnet-1"]


def test_config_values_never_in_the_request(
    ecs_world: EcsWorld, bucket: str, stack: str, tmp_path: Path
) -> None:
    """The config stays in SSM: no value of the pushed config document is in run_task."""
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    project = tmp_path / "project"
    (project / "config").mkdir(parents=True)
    (project / "project.yml").write_text(
        "commands:\n  - command: cat\n    args: config/creds.json\n"
    )
    (project / "config" / "creds.json").write_text(json.dumps({"password": secret}))
    handoff_cli("config", "push", "-p", str(project), "--stack", stack, "--bucket", bucket)

    fargate = FakeFargate(ecs_world, lambda _o, _a: (0, ["done"]))
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket, vars={"k": "v"}))
    op.execute(make_context())
    assert fargate.requests and secret not in json.dumps(fargate.requests)


# -- failure path ------------------------------------------------------------------------


def test_nonzero_exit_fails_the_task_with_the_log_tail(
    ecs_world: EcsWorld,
    bucket: str,
    stack: str,
) -> None:
    lines = [f"line {i}" for i in range(1, 13)] + [
        "handoff: run failed: task default, stage 2 (wc) exited with 3"
    ]
    fargate = FakeFargate(ecs_world, lambda _o, _a: (3, lines))
    op = fargate.attach(
        make_operator(ecs_world, stack=stack, bucket=bucket, number_logs_exception=4)
    )
    context = make_context()
    with capture_task_log(op.log.name) as task_log, pytest.raises(AirflowException) as failure:
        op.execute(context)
    message = str(failure.value)
    assert "not in success state" in message
    assert "stage 2 (wc) exited with 3" in message  # the tail of the container log...
    assert "line 10" in message and "line 9" not in message  # ...the last 4 lines only
    log = task_log.text()
    assert f"s3://{bucket}/{stack}/runs/" in log  # where the failed run's artifacts are
    outcome = context["ti"].xcom["handoff_outcome"]  # as the local run: the failed summary
    assert outcome["status"] == "failed" and outcome["task_arn"] in fargate.exit_codes
    assert "line 1\n" in log or "line 1 " in log  # the whole container log was forwarded


def test_failing_project_fails_the_task_with_handoffs_own_log_tail(
    ecs_world: EcsWorld, bucket: str, stack: str, tmp_path: Path, runtime_handoff: Path
) -> None:
    """End to end with the real CLI as the container: a failing stage exits non-zero, the
    Airflow task fails with the container's last log lines (naming the stage), the failed
    run is archived in runs/<key>/ and last/ is left alone."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(
        "commands:\n  - command: sh\n    args: \"-c 'echo half-done; echo broken >&2; exit 3'\"\n"
    )
    handoff_cli("config", "push", "-p", str(project), "--stack", stack, "--bucket", bucket)

    def container(override: dict, _arn: str) -> tuple[int, list[str]]:
        proc = run_like_the_container(
            override, handoff=runtime_handoff, endpoint=ecs_world.endpoint, root=tmp_path / "c"
        )
        return proc.returncode, proc.stdout.splitlines()

    fargate = FakeFargate(ecs_world, container)
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket))
    context = make_context()
    with pytest.raises(AirflowException) as failure:
        op.execute(context)
    assert list(fargate.exit_codes.values()) == [1]  # handoff's exit status for a failed run
    message = str(failure.value)
    assert "handoff: run failed" in message and "echo broken" in message  # the stage named
    run_key = run_key_from_context(context)
    assert "run.json" in s3_keys(bucket, f"{stack}/runs/{run_key}/")
    assert s3_keys(bucket, f"{stack}/last/") == []
    outcome = context["ti"].xcom["handoff_outcome"]
    assert outcome["status"] == "failed" and outcome["commands_status"] == "failed"
    (stage,) = outcome["tasks"][0]["stages"]
    assert stage["exit_code"] == 3


def test_nonzero_exit_without_awslogs_names_the_exit_code(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    fargate = FakeFargate(ecs_world, lambda _o, _a: (2, []))
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket, awslogs_group=None))
    with pytest.raises(AirflowException, match=r"'exitCode': 2"):
        op.execute(make_context())


def test_success_with_exit_zero_is_not_a_failure_of_the_fake(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    """Guards the failure tests: the same set-up with exit 0 succeeds (no run record)."""
    fargate = FakeFargate(ecs_world, lambda _o, _a: (0, ["ok"]))
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket))
    summary = op.execute(make_context())
    assert summary["status"] == "success" and summary["commands_status"] is None
    assert fargate.exit_codes == {summary["task_arn"]: 0}


# -- reattach --------------------------------------------------------------------------


def test_reattach_keeps_the_running_tasks_run_key(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    """A retry whose first try's task still runs attaches to it (no new task) and reports
    that task's artifacts location, not one for a run key it never used."""
    first = make_context(try_number=1)
    ti = first["ti"]
    ecs = boto3.client("ecs", region_name=REGION)
    earlier = make_operator(ecs_world, stack=stack, bucket=bucket)
    running = ecs.run_task(
        cluster=ecs_world.cluster,
        taskDefinition=ecs_world.task_definition,
        launchType="FARGATE",
        startedBy=generate_uuid(ti.dag_id, ti.task_id, ti.run_id, str(ti.map_index)),
        overrides=earlier.build_overrides(first),
        networkConfiguration=earlier.build_network_configuration(),
    )["tasks"][0]["taskArn"]

    fargate = FakeFargate(ecs_world, lambda _o, _a: (0, []))
    fargate.exit_codes[running] = 0  # the first try's container finishes while we wait
    fargate.write_log(running, ["first try, still running"])
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket))
    second = make_context(try_number=2)
    summary = op.execute(second)
    assert fargate.requests == []  # no second task
    assert summary["task_arn"] == running
    first_key = run_key_from_context(first)
    assert summary["run_key"] == first_key != run_key_from_context(second)
    # the artifacts link is corrected to where the reattached run archives
    assert second["ti"].xcom["handoff_artifacts"]["prefix"] == f"{stack}/runs/{first_key}/"


# -- deferrable ------------------------------------------------------------------------


def test_deferrable_defers_to_the_provider_trigger_and_resumes(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    fargate = FakeFargate(ecs_world, lambda _o, _a: (0, ["done"]))
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket, deferrable=True))
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, TaskDoneTrigger)
    assert deferred.value.method_name == "execute_complete"
    (task_arn,) = fargate.exit_codes

    # The trigger serializes (to the triggerer) and rebuilds to the same thing.
    classpath, kwargs = trigger.serialize()
    json.dumps(kwargs)
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["task_arn"] == task_arn and kwargs["cluster"] == ecs_world.cluster
    assert kwargs["log_group"] == ecs_world.log_group
    assert kwargs["log_stream"] == f"{STREAM_PREFIX}/handoff/{task_arn.rsplit('/', 1)[-1]}"

    # Resuming happens on a fresh operator instance (after the triggerer's event).
    resumed = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket, deferrable=True))
    event = {"status": "success", "task_arn": task_arn, "cluster": ecs_world.cluster}
    summary = resumed.execute_complete(context, event)
    assert summary["task_arn"] == task_arn
    assert summary["run_key"] == run_key_from_context(context)
    assert (
        summary["artifacts"]["runs_uri"]
        == f"s3://{bucket}/{stack}/runs/{run_key_from_context(context)}/"
    )


def test_deferrable_resume_fails_on_nonzero_exit(
    ecs_world: EcsWorld, bucket: str, stack: str
) -> None:
    fargate = FakeFargate(ecs_world, lambda _o, _a: (5, ["boom"]))
    op = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket, deferrable=True))
    context = make_context()
    with pytest.raises(TaskDeferred):
        op.execute(context)
    (task_arn,) = fargate.exit_codes
    resumed = fargate.attach(make_operator(ecs_world, stack=stack, bucket=bucket, deferrable=True))
    event = {"status": "success", "task_arn": task_arn, "cluster": ecs_world.cluster}
    with pytest.raises(AirflowException, match=r"'exitCode': 5"):
        resumed.execute_complete(context, event)


# -- construction, overrides, network ------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    op = HandoffEcsRunOperator(task_id="t", cluster="c", task_definition="td")
    assert (op.launch_type, op.reattach, op.container_name) == ("FARGATE", True, "handoff")
    assert op.deferrable is False
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert HandoffEcsRunOperator(task_id="t", cluster="c", task_definition="td").deferrable is True
    assert (op.full_refresh, op.no_state_update, op.lock_wait) == (False, False, None)
    for templated in ("vars", "stack", "bucket", "overrides", "config_name"):
        assert templated in HandoffEcsRunOperator.template_fields


def test_last_is_an_outlet_like_the_local_run() -> None:
    op = HandoffEcsRunOperator(
        task_id="t", cluster="c", task_definition="td", stack="s", bucket="b"
    )
    assert op.outlets == [Asset("s3://b/s/last/")]
    templated = HandoffEcsRunOperator(
        task_id="t", cluster="c", task_definition="td", stack="{{ params.s }}", bucket="b"
    )
    assert templated.outlets == []  # unknown until rendered: no wrong asset


def test_dag_factory_signature_is_accepted() -> None:
    """The kwargs the DAG factory passes in execution="ecs" mode."""
    op = HandoffEcsRunOperator(
        task_id="t",
        cluster="c",
        task_definition="td",
        container_name="runner",
        subnets=["subnet-1", "subnet-2"],
        security_groups=["sg-1"],
        assign_public_ip=True,
        stack="s",
        bucket="b",
        config_name="/custom/config",
        vars={"a": "1"},
        aws_conn_id="aws_other",
        region_name="eu-west-1",
        awslogs_group="/ecs/handoff",
        awslogs_region="eu-west-1",
        awslogs_stream_prefix="handoff",
        number_logs_exception=20,
    )
    assert op.build_network_configuration() == {
        "awsvpcConfiguration": {
            "subnets": ["subnet-1", "subnet-2"],
            "assignPublicIp": "ENABLED",
            "securityGroups": ["sg-1"],
        }
    }
    override = op.build_overrides(make_context())["containerOverrides"][0]
    assert override["name"] == "runner"
    assert override["command"] == [
        "run", "-w", WORKSPACE, "-a", "--config-name", "/custom/config", "-v", "a=1"
    ]  # fmt: skip
    assert (op.aws_conn_id, op.region_name, op.number_logs_exception) == (
        "aws_other",
        "eu-west-1",
        20,
    )


def test_user_overrides_are_kept_and_handoff_env_wins() -> None:
    op = HandoffEcsRunOperator(
        task_id="t",
        cluster="c",
        task_definition="td",
        stack="s",
        bucket="b",
        overrides={
            "cpu": "1024",
            "memory": "4096",
            "containerOverrides": [
                {
                    "name": "handoff",
                    "memory": 4000,
                    "environment": [
                        {"name": "TZ", "value": "UTC"},
                        {"name": "HANDOFF_STACK", "value": "someone-else"},
                    ],
                },
                {"name": "sidecar", "command": ["sleep", "1"]},
            ],
        },
    )
    overrides = op.build_overrides(make_context())
    assert (overrides["cpu"], overrides["memory"]) == ("1024", "4096")
    handoff, sidecar = overrides["containerOverrides"]
    assert sidecar == {"name": "sidecar", "command": ["sleep", "1"]}
    assert handoff["memory"] == 4000
    env = env_of(handoff)
    assert env["TZ"] == "UTC" and env["HANDOFF_STACK"] == "s"
    assert [e["name"] for e in handoff["environment"]].count("HANDOFF_STACK") == 1
    assert op.overrides["containerOverrides"][0]["environment"][1]["value"] == "someone-else"


def test_user_command_for_the_handoff_container_is_refused() -> None:
    op = HandoffEcsRunOperator(
        task_id="t",
        cluster="c",
        task_definition="td",
        stack="s",
        bucket="b",
        overrides={"containerOverrides": [{"name": "handoff", "command": ["sh"]}]},
    )
    with pytest.raises(AirflowException, match="command is set by HandoffEcsRunOperator"):
        op.build_overrides(make_context())
    with pytest.raises(ValueError, match="network_configuration"):
        HandoffEcsRunOperator(
            task_id="t", cluster="c", task_definition="td", subnets=["s"], network_configuration={}
        )


def test_stack_and_bucket_fall_back_to_the_worker_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    op = HandoffEcsRunOperator(task_id="t", cluster="c", task_definition="td")
    monkeypatch.delenv("HANDOFF_STACK", raising=False)
    monkeypatch.delenv("STACK_NAME", raising=False)
    with pytest.raises(AirflowException, match="no stack"):
        op.build_overrides(make_context())
    monkeypatch.setenv("STACK_NAME", "from-env")
    monkeypatch.setenv("HANDOFF_BUCKET", "bucket-env")
    env = env_of(op.build_overrides(make_context())["containerOverrides"][0])
    assert (env["HANDOFF_STACK"], env["HANDOFF_BUCKET"]) == ("from-env", "bucket-env")


def test_manual_run_without_interval_sends_no_interval() -> None:
    op = HandoffEcsRunOperator(
        task_id="t", cluster="c", task_definition="td", stack="s", bucket="b"
    )
    context = make_context()
    context.update(data_interval_start=None, data_interval_end=None, logical_date=None)
    env = env_of(op.build_overrides(context)["containerOverrides"][0])
    # The try's origin travels too (run.json records it); no interval, no logical date.
    assert set(env) == {"HANDOFF_STACK", "HANDOFF_BUCKET", "HANDOFF_RUN_KEY", "HANDOFF_ORIGIN"}


def test_templated_fields_render(tmp_path: Path) -> None:
    """vars/stack/bucket are rendered by Airflow before execute builds the override."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2.x
        from airflow import DAG

    with DAG(dag_id="handoff_render", schedule=None, start_date=START):
        op = HandoffEcsRunOperator(
            task_id="t",
            cluster="c",
            task_definition="td",
            stack="stack-{{ params.env }}",
            bucket="b",
            vars={"day": "{{ ds }}"},
            params={"env": "prod"},
        )
    context = make_context()
    context.update(ds="2024-01-01", params={"env": "prod"})
    op.render_template_fields(context)
    override = op.build_overrides(context)["containerOverrides"][0]
    assert env_of(override)["HANDOFF_STACK"] == "stack-prod"
    assert override["command"][-2:] == ["-v", "day=2024-01-01"]
    assert container_command(WORKSPACE, {"day": "2024-01-01"}) == override["command"]


def test_serializes_with_its_links() -> None:
    """The DAG processor serializes the operator; the webserver rebuilds links from that."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow 2.x
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2.x
        from airflow import DAG

    with DAG(dag_id="handoff_ecs_serialize", schedule=None, start_date=START) as dag:
        HandoffEcsRunOperator(
            task_id="run", cluster="c", task_definition="td", stack="s", bucket="b", vars={"a": "1"}
        )
    task = Serializer.from_dict(Serializer.to_dict(dag)).get_task("run")
    assert {link.name for link in task.operator_extra_links} == {
        "Handoff artifacts (S3)",
        "ECS task",
        "CloudWatch Events",
    }
    assert {"vars", "stack", "bucket", "overrides"} <= set(task.template_fields)
