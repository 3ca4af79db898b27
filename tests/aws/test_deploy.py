"""``deploy:`` -> ECS task definition: render (botocore's input shape), register against
the moto server (idempotent), the CLI verbs, and the RunTask overrides size limit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from handoff_provider.core.aws.task_definition import (
    MAX_OVERRIDES_BYTES,
    check_overrides_size,
    register_task_definition,
    render_task_definition,
)
from handoff_provider.core.cli import main as cli
from handoff_provider.core.cli.container import HOME
from handoff_provider.core.errors import ConfigurationError

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/handoff-task"
EXEC_ROLE = "arn:aws:iam::123456789012:role/ecs-execution"
SECRET = "arn:aws:ssm:us-east-1:123456789012:parameter/handoff/api-token"
FULL = {
    "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/handoff-runtime:1",
    "cpu": 512,
    "memory": 2048,
    "task_role": ROLE,
    "execution_role": EXEC_ROLE,
    "log_group": "/ecs/my-handoff",
    "ephemeral_storage": 40,
    "readonly_root": True,
    "secrets": [{"name": "API_TOKEN", "value_from": SECRET}],
}


def test_render_maps_every_deploy_field() -> None:
    definition = render_task_definition(FULL, stack="word-count", region=REGION)
    assert definition["family"] == "handoff-word-count"
    assert (definition["cpu"], definition["memory"]) == ("512", "2048")
    assert definition["taskRoleArn"] == ROLE and definition["executionRoleArn"] == EXEC_ROLE
    assert definition["ephemeralStorage"] == {"sizeInGiB": 40}
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    (container,) = definition["containerDefinitions"]
    assert container["name"] == "handoff" and container["image"] == FULL["image"]
    assert container["readonlyRootFilesystem"] is True
    assert container["mountPoints"] == [
        {"sourceVolume": "handoff-home", "containerPath": HOME, "readOnly": False}
    ]
    assert definition["volumes"] == [{"name": "handoff-home"}]
    assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/my-handoff"
    assert container["secrets"] == [{"name": "API_TOKEN", "valueFrom": SECRET}]
    assert "environment" not in container  # nothing secret, nothing per-run


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ({"cpu": 256}, "deploy.image: required"),
        ({**FULL, "cpu": 300}, "deploy.cpu: 300 is not a Fargate size"),
        ({**FULL, "cpu": 256, "memory": 4096}, "deploy.memory: 4096 MiB does not go with cpu 256"),
        ({**FULL, "cpu": "lots"}, "deploy.cpu: expected a whole number"),
        ({**FULL, "task_role": "handoff-task"}, "deploy.task_role: not an IAM role ARN"),
        ({**FULL, "ephemeral_storage": 500}, "deploy.ephemeral_storage: 500 GiB"),
        ({**FULL, "readonly_root": "yes"}, "deploy.readonly_root: expected true or false"),
        ({**FULL, "memroy": 1}, "deploy.memroy: unknown key"),
        (
            {**FULL, "secrets": [{"name": "T", "value_from": "hunter2"}]},
            "deploy.secrets[0].value_from: expected an SSM parameter or Secrets Manager ARN",
        ),
        (
            {**{k: v for k, v in FULL.items() if k != "execution_role"}},
            "deploy.execution_role: required with secrets",
        ),
    ],
)
def test_bad_deploy_field_is_one_clear_error(deploy: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match="^" + re.escape(f"project.yml: {message}")):
        render_task_definition(deploy, stack="s", region=REGION)


def test_a_bad_secret_value_is_not_echoed() -> None:
    deploy = {**FULL, "secrets": [{"name": "T", "value_from": "hunter2"}]}
    with pytest.raises(ConfigurationError) as error:
        render_task_definition(deploy, stack="s", region=REGION)
    assert "hunter2" not in str(error.value)


def test_register_is_idempotent_against_ecs(aws: str) -> None:
    """moto's ECS: the first register makes revision 1, the same definition again registers
    nothing, a changed one makes revision 2."""
    ecs = boto3.client("ecs", region_name=REGION)
    definition = render_task_definition(FULL, stack="idem", region=REGION)
    first, registered = register_task_definition(ecs, definition)
    assert registered and first.endswith(":1")
    again, registered = register_task_definition(ecs, definition)
    assert (again, registered) == (first, False)
    changed = render_task_definition({**FULL, "memory": 4096}, stack="idem", region=REGION)
    second, registered = register_task_definition(ecs, changed)
    assert registered and second.endswith(":2")
    arns = ecs.list_task_definitions(familyPrefix="handoff-idem")["taskDefinitionArns"]
    assert len(arns) == 2


def write_project(root: Path, deploy: dict[str, Any]) -> Path:
    root.mkdir()
    (root / "project.yml").write_text(
        "commands:\n  - command: echo\n    args: hi\ndeploy: " + json.dumps(deploy) + "\n"
    )
    return root


def test_cli_render_and_register(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    project = write_project(tmp_path / "p", FULL)
    assert cli.main(["deploy", "render", "-p", str(project), "--stack", "cli"]) == 0
    rendered = json.loads(capsys.readouterr().out)
    assert rendered == render_task_definition(FULL, stack="cli", region=REGION)
    assert cli.main(["deploy", "register", "-p", str(project), "--stack", "cli"]) == 0
    out = capsys.readouterr()
    assert "deploy register: registered" in out.err and out.out.strip().endswith(":1")
    assert cli.main(["deploy", "register", "-p", str(project), "--stack", "cli"]) == 0
    assert "deploy register: unchanged" in capsys.readouterr().err


def test_cli_bad_deploy_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", REGION)
    project = write_project(tmp_path / "p", {**FULL, "cpu": 3})
    assert cli.main(["deploy", "render", "-p", str(project), "--stack", "s"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.strip().splitlines() == [
        "handoff: error: project.yml: deploy.cpu: 3 is not a Fargate size "
        "(256, 512, 1024, 2048, 4096, 8192, 16384)"
    ]


def test_overrides_over_8_kib_are_refused() -> None:
    small = {"containerOverrides": [{"name": "handoff", "environment": []}]}
    assert check_overrides_size(small) < MAX_OVERRIDES_BYTES
    big = {"containerOverrides": [{"name": "handoff", "command": ["-v", "x=" + "y" * 9000]}]}
    with pytest.raises(ConfigurationError, match=r"^overrides: \d+ bytes, over ECS's 8192-byte"):
        check_overrides_size(big)
