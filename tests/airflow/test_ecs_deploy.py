"""``ecs={"register": True}``: the DAG factory registers the project's task definition
(``deploy:``) before the ECS run, and the run uses the registered ARN; the overrides limit.

Against the real moto server of tests/airflow/test_ecs_operator.py. The container's
lifecycle is driven through botocore's event system on the operator's own ECS client
(its ``FakeFargate``): moto records the task, the fake reports it stopped with exit 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from af_helpers import write_project

from handoff_provider._compat import AirflowException
from handoff_provider.dag_factory import handoff_dag
from handoff_provider.operators.deploy import HandoffRegisterTaskDefinitionOperator
from handoff_provider.operators.ecs import HandoffEcsRunOperator
from tests.airflow import test_ecs_operator as ecs_tests
from tests.airflow.test_ecs_operator import REGION, EcsWorld, FakeFargate, make_context

pytestmark = pytest.mark.airflow
ecs_world = ecs_tests.ecs_world  # the fixture, shared

PROJECT = """
commands:
  - command: echo
    args: hello
deploy:
  image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/handoff-runtime:1
  cpu: 256
  memory: 512
  task_role: arn:aws:iam::123456789012:role/handoff-task
  execution_role: arn:aws:iam::123456789012:role/ecs-execution
  readonly_root: true
"""


def test_factory_registers_before_running(tmp_path: Path) -> None:
    project = write_project(tmp_path, PROJECT, name="deployed")
    dag = handoff_dag(
        project,
        stack="deployed",
        bucket="bkt",
        schedule=None,
        execution="ecs",
        ecs={"cluster": "c1", "register": True, "subnets": ["subnet-1"]},
    )
    assert [t.task_id for t in dag.tasks] == [
        "push_config",
        "push_files",
        "register_task_definition",
        "run",
    ]
    register = dag.get_task("register_task_definition")
    run = dag.get_task("run")
    assert isinstance(register, HandoffRegisterTaskDefinitionOperator)
    assert register.task_id in run.upstream_task_ids
    # the run's task definition is the register task's return value (XCom), at run time
    assert run.task_definition.operator is register
    with pytest.raises(Exception, match="register"):
        handoff_dag(
            project,
            dag_id="both",
            execution="ecs",
            ecs={"cluster": "c1", "register": True, "task_definition": "x:1"},
        )


def test_register_then_run_on_the_registered_revision(
    ecs_world: EcsWorld, tmp_path: Path, bucket: str, stack: str
) -> None:
    """The register operator against moto's ECS (second run: unchanged, same ARN); the ECS
    run operator then starts a task of that revision (lifecycle via botocore events)."""
    project = write_project(tmp_path, PROJECT, name="deployed")
    register = HandoffRegisterTaskDefinitionOperator(
        task_id="register_task_definition", project_dir=str(project), stack=stack
    )
    arn = register.execute(make_context())
    assert arn.endswith(f"task-definition/handoff-{stack}:1")
    assert register.execute(make_context()) == arn  # unchanged: nothing registered
    described = boto3.client("ecs", region_name=REGION).describe_task_definition(
        taskDefinition=arn
    )["taskDefinition"]
    (container,) = described["containerDefinitions"]
    assert container["readonlyRootFilesystem"] is True

    fargate = FakeFargate(ecs_world, lambda _o, _a: (0, ["done"]))
    op = fargate.attach(
        HandoffEcsRunOperator(
            task_id="run",
            cluster=ecs_world.cluster,
            task_definition=arn,
            subnets=[ecs_world.subnet],
            security_groups=[ecs_world.security_group],
            stack=stack,
            bucket=bucket,
            region_name=REGION,
            waiter_delay=1,
            deferrable=False,
        )
    )
    summary = op.execute(make_context())
    assert fargate.requests[0]["taskDefinition"] == arn
    assert summary["ecs"]["task_definition"] == arn


def test_overrides_over_8_kib_fail_before_run_task() -> None:
    op = HandoffEcsRunOperator(
        task_id="run",
        cluster="c",
        task_definition="td",
        stack="s",
        bucket="b",
        vars={"big": "x" * 9000},
    )
    with pytest.raises(AirflowException, match=r"overrides: \d+ bytes, over ECS's 8192-byte"):
        op.build_overrides(make_context())
    small = op.build_overrides.__self__  # the same operator, with small vars, passes
    small.vars = {"day": "2024-01-01"}
    assert len(json.dumps(small.build_overrides(make_context()))) < 8192
