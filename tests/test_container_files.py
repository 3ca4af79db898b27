"""Dockerfile, .dockerignore, docker-compose.yaml and the ECS templates, checked without Docker.

These checks need no Docker (``make test-container`` builds and runs the image for real,
tests/container/); the files are validated structurally: the image's ENTRYPOINT + CMD are
the command the ECS operator sends (``core.cli.container``, which the operator builds its
override from), it runs as a non-root user and installs no Airflow; the compose file has
its services, the AWS endpoint and credentials wired, and mounts paths that exist; the
task definition template is a valid ``RegisterTaskDefinition`` request; the task role
policy grants what the container's run uses and no more. No Airflow import here.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from handoff_provider.core.cli.container import (
    CONTAINER_NAME,
    ENTRYPOINT,
    HOME,
    VENV_CACHE,
    WORKSPACE,
    container_argv,
    container_command,
)

REPO = Path(__file__).resolve().parents[1]
#: What the image must contain to `pip install .` (and nothing more).
IMAGE_SOURCES = {"pyproject.toml", "README.md", "handoff_provider"}
PLACEHOLDERS = {
    "AWS_REGION": "us-east-1",
    "ACCOUNT_ID": "123456789012",
    "IMAGE_TAG": "0.1.0",
    "STACK": "word-count",
    "BUCKET": "my-bucket",
    "KMS_KEY_ID": "1234abcd-12ab-34cd-56ef-1234567890ab",
}


# -- Dockerfile -----------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, ``\\`` continuations joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions((REPO / "Dockerfile").read_text())


def only(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def exec_form(args: str) -> list[str]:
    """The JSON-array (exec) form; the shell form would wrap the CLI in ``/bin/sh -c``."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def env_of(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in only(instructions, "ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def test_entrypoint_and_cmd_are_the_command_the_operator_sends(dockerfile) -> None:
    (entrypoint,) = only(dockerfile, "ENTRYPOINT")
    (cmd,) = only(dockerfile, "CMD")
    assert exec_form(entrypoint) == list(ENTRYPOINT) == ["handoff"]
    assert exec_form(cmd) == container_command(WORKSPACE) == ["run", "-w", WORKSPACE, "-a"]
    # The process the container runs without overrides, and with the operator's
    # (an ECS command override replaces CMD only; the entrypoint stays).
    assert exec_form(entrypoint) + exec_form(cmd) == container_argv()
    with_vars = container_command(WORKSPACE, {"day": "2024-01-01"})
    assert with_vars[: len(exec_form(cmd))] == exec_form(cmd)
    assert exec_form(entrypoint) + with_vars == container_argv(variables={"day": "2024-01-01"})


def test_the_operator_builds_its_command_from_core_container() -> None:
    """The operator (Airflow) and this test (no Airflow) share one command builder."""
    source = (REPO / "handoff_provider" / "operators" / "ecs.py").read_text()
    assert "container_command(" in source and "container_environment(" in source
    assert re.search(r"container_name: str = CONTAINER_NAME\b", source)


def test_runs_as_a_non_root_user_with_workspace_and_cache_in_its_home(dockerfile) -> None:
    users = only(dockerfile, "USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # the last USER comes after every RUN (nothing runs as root at the end)
    last_user = max(i for i, (kw, _) in enumerate(dockerfile) if kw == "USER")
    last_run = max(i for i, (kw, _) in enumerate(dockerfile) if kw == "RUN")
    assert last_user > last_run
    assert f"/home/{user}" == HOME and WORKSPACE.startswith(HOME + "/")
    env = env_of(dockerfile)
    assert env["HOME"] == HOME
    assert env["HANDOFF_VENV_CACHE"] == VENV_CACHE and VENV_CACHE.startswith(HOME + "/")
    created = " ".join(only(dockerfile, "RUN"))
    assert f"--home-dir {HOME}" in created
    assert WORKSPACE in created and VENV_CACHE in created  # created, owned by the user
    assert f"-o {user} -g {user}" in created
    assert only(dockerfile, "VOLUME") == []  # the writable layer, not an anonymous volume


def test_small_python_base_image(dockerfile) -> None:
    defaults = [a.split("=", 1) for a in only(dockerfile, "ARG") if "=" in a]
    args = {name: value for name, value in defaults}
    (base,) = only(dockerfile, "FROM")
    image = Template(base.split()[0]).safe_substitute(args)
    assert re.fullmatch(r"python:3\.(11|12|13)-slim", image), image


def test_installs_the_core_without_airflow(dockerfile) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in pyproject["dependencies"] if "airflow" in d.lower()]
    assert not [d for d in pyproject["optional-dependencies"]["runtime"] if "airflow" in d.lower()]
    runs = only(dockerfile, "RUN")
    installs = [r for r in runs if "pip install" in r]
    assert installs
    for run in installs:
        assert "airflow" not in run.lower(), run
    # the package is installed from the copied sources, with the (empty) runtime extra
    assert any(
        re.search(r"pip install (--no-cache-dir )?\"?/tmp/handoff-src(\[runtime\])?\"?", r)
        for r in runs
    )
    assert pyproject["scripts"]["handoff"] == "handoff_provider.core.cli.main:main"


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.rstrip("/")
        candidates = [path, *(str(p) for p in PurePosixPath(path).parents if str(p) != ".")]
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            excluded = not negate
    return excluded


def test_copied_sources_exist_and_pass_dockerignore(dockerfile) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    sources: set[str] = set()
    for args in only(dockerfile, "COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        sources.update(parts[:-1])
    assert sources == IMAGE_SOURCES
    for source in sources:
        assert (REPO / source).exists(), source
        assert not dockerignore_excludes(patterns, source), f".dockerignore drops {source}"
    for path in (
        "handoff_provider/core/cli/main.py",
        "handoff_provider/core/load/project_schema.json",
    ):
        assert not dockerignore_excludes(patterns, path), path
    for kept_out in (".venv/bin/python", ".git/config", "tests/conftest.py", "dags/x.py"):
        assert dockerignore_excludes(patterns, kept_out), kept_out


def test_the_contract_test_installs_what_the_dockerfile_copies() -> None:
    source = (REPO / "tests" / "airflow" / "test_ecs_operator.py").read_text()
    match = re.search(r"IMAGE_SOURCES = \(([^)]*)\)", source)
    assert match
    assert set(re.findall(r'"([^"]+)"', match.group(1))) == IMAGE_SOURCES


# -- docker-compose.yaml ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


def compose_default(value: str) -> str:
    """``${VAR:-default}`` -> default (what compose uses when VAR is unset)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def test_compose_services_and_order(compose) -> None:
    services = compose["services"]
    assert {"moto", "aws-init", "airflow"} <= set(services)
    assert compose_default(services["moto"]["image"]).startswith("motoserver/moto:")
    airflow_image = compose_default(services["airflow"]["image"])
    assert re.match(r"apache/airflow:3\.", airflow_image), airflow_image
    assert services["aws-init"]["depends_on"]["moto"]["condition"] == "service_healthy"
    assert "healthcheck" in services["moto"]
    assert (
        services["airflow"]["depends_on"]["aws-init"]["condition"]
        == "service_completed_successfully"
    )
    assert "8080:8080" in services["airflow"]["ports"]


@pytest.mark.parametrize("service", ["aws-init", "airflow"])
def test_compose_aws_endpoint_and_fake_credentials(compose, service: str) -> None:
    services = compose["services"]
    env = services[service]["environment"]
    endpoint = env["AWS_ENDPOINT_URL"]
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", endpoint)
    assert match, endpoint
    host, port = match.groups()
    assert host == "moto" and host in services
    assert any(str(p).endswith(f":{port}") for p in services["moto"]["ports"])
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"]
    assert env["HANDOFF_BUCKET"]


def test_compose_airflow_installs_the_provider_and_mounts_existing_paths(compose) -> None:
    airflow = compose["services"]["airflow"]
    env = airflow["environment"]
    connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection["conn_type"] == "aws" and "password" not in connection
    mounts = {}
    for volume in airflow["volumes"]:
        host, target = volume.split(":")[:2]
        assert (REPO / host).resolve().exists(), f"{host} does not exist in the repository"
        assert (REPO / host).resolve().is_relative_to(REPO), host  # nothing outside the repo
        mounts[Path(host).as_posix().rstrip("/") or "."] = target
    assert {".", "dags", "examples"} <= set(mounts)
    command = " ".join(airflow["command"])
    assert f"pip install --no-cache-dir --quiet -e {mounts['.']}" in command
    assert "airflow standalone" in command
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == mounts["dags"]
    # DAG files refer to ../examples/projects/<name>, relative to the DAGs folder
    assert PurePosixPath(mounts["dags"]).parent / "examples" == PurePosixPath(mounts["examples"])
    assert (REPO / "examples" / "projects").is_dir()


def test_compose_init_creates_the_bucket(compose) -> None:
    init = compose["services"]["aws-init"]
    script = " ".join(init["command"])
    compile(script, "aws-init", "exec")  # the inline Python is valid
    assert "create_bucket" in script and "HANDOFF_BUCKET" in script


# -- ECS task definition template and IAM policy ------------------------------------------


def load_template(name: str) -> Any:
    text = (REPO / "docs" / name).read_text()
    filled = Template(text).substitute(PLACEHOLDERS)  # every ${...} is a documented one
    return json.loads(filled)


def test_task_definition_template_is_a_valid_register_request() -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    spec = load_template("ecs-task-definition.json")
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(spec, shape)
    assert not report.has_errors(), report.generate_report()

    assert spec["requiresCompatibilities"] == ["FARGATE"] and spec["networkMode"] == "awsvpc"
    assert spec["executionRoleArn"] != spec["taskRoleArn"]
    (container,) = spec["containerDefinitions"]
    assert container["name"] == CONTAINER_NAME
    # the image's ENTRYPOINT/CMD apply; the operator overrides the command
    assert "command" not in container and "entryPoint" not in container
    logs = container["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logs["options"])
    names = {e["name"] for e in container.get("environment", [])}
    assert not {n for n in names if re.search("SECRET|PASSWORD|TOKEN|KEY", n)}


def statements_for(policy: dict, action: str) -> list[dict]:
    found = []
    for statement in policy["Statement"]:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        if statement["Effect"] == "Allow" and action in actions:
            found.append(statement)
    return found


def resources(statements: list[dict]) -> set[str]:
    out: set[str] = set()
    for statement in statements:
        value = statement["Resource"]
        out.update([value] if isinstance(value, str) else value)
    return out


def test_task_role_policy_grants_the_run_and_no_more() -> None:
    policy = load_template("iam-task-role-policy.json")
    assert policy["Version"] == "2012-10-17"
    bucket, stack = f"arn:aws:s3:::{PLACEHOLDERS['BUCKET']}", PLACEHOLDERS["STACK"]
    ssm = resources(statements_for(policy, "ssm:GetParameter"))
    assert ssm == {f"arn:aws:ssm:us-east-1:123456789012:parameter/handoff/{stack}/*"}
    assert statements_for(policy, "kms:Decrypt")
    gets = resources(statements_for(policy, "s3:GetObject"))
    assert f"{bucket}/{stack}/files/*" in gets and f"{bucket}/{stack}/last/*" in gets
    puts = resources(statements_for(policy, "s3:PutObject"))
    assert puts == {f"{bucket}/{stack}/runs/*", f"{bucket}/{stack}/last/*"}
    deletes = resources(statements_for(policy, "s3:DeleteObject"))
    assert deletes == {f"{bucket}/{stack}/runs/*", f"{bucket}/{stack}/last/*"}  # not files/
    (listing,) = statements_for(policy, "s3:ListBucket")
    assert listing["Resource"] == bucket
    prefixes = listing["Condition"]["StringLike"]["s3:prefix"]
    assert {f"{stack}/files/*", f"{stack}/runs/*", f"{stack}/last/*"} <= set(prefixes)
    every = resources(policy["Statement"])
    assert "*" not in every and not any(r.endswith(":::*") for r in every)
    assert not statements_for(policy, "ssm:PutParameter")  # the container never writes config
