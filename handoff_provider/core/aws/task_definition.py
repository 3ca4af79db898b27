"""From a project's ``deploy:`` section to the ECS task definition that runs it on Fargate.

    deploy:
      image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/handoff-runtime:1.4
      cpu: 512                    # Fargate units (256 .. 16384)
      memory: 1024                # MiB, a valid combination with cpu
      task_role: arn:aws:iam::123456789012:role/handoff-task        # what the run may do
      execution_role: arn:aws:iam::123456789012:role/ecs-execution # pull, logs, secrets
      log_group: /ecs/handoff     # awslogs group (default /ecs/handoff)
      ephemeral_storage: 40       # GiB (21 .. 200; default 20 = Fargate's)
      readonly_root: true         # readonlyRootFilesystem + a writable volume at the home
      family: my-task             # default handoff-<stack>
      secrets:                    # container environment from SSM / Secrets Manager
        - name: API_TOKEN
          value_from: arn:aws:ssm:eu-west-1:123456789012:parameter/handoff/api-token

:func:`render_task_definition` builds the ``RegisterTaskDefinition`` request (checked
against botocore's own input shape); :func:`register_task_definition` registers it unless
the family's latest ACTIVE revision already says the same. Secrets only ever appear as
``valueFrom`` ARNs, resolved by ECS with the execution role: no value passes through here,
and nothing secret goes into a ``RunTask`` override (:func:`check_overrides_size`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from handoff_provider.core.cli.container import CONTAINER_NAME, HOME
from handoff_provider.core.errors import ConfigurationError

#: Fargate's task sizes: cpu units -> allowed memory (MiB).
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}
DEFAULT_CPU, DEFAULT_MEMORY = 256, 512
DEFAULT_LOG_GROUP = "/ecs/handoff"
STREAM_PREFIX = "handoff"
#: The writable volume of a read-only root: the user's home (workspace, caches, TMPDIR).
HOME_VOLUME = "handoff-home"
#: ``RunTask`` rejects ``overrides`` larger than 8 KiB (the JSON of the whole structure).
MAX_OVERRIDES_BYTES = 8192

_KEYS = {
    "image",
    "cpu",
    "memory",
    "task_role",
    "execution_role",
    "log_group",
    "log_region",
    "ephemeral_storage",
    "readonly_root",
    "family",
    "secrets",
}
_ROLE_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_SECRET_ARN = re.compile(r"arn:aws[\w-]*:(ssm|secretsmanager):[\w-]+:\d{12}:\S+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FAMILY = re.compile(r"[A-Za-z0-9_-]{1,255}")


def _field(name: str) -> str:
    return f"project.yml: deploy.{name}"


def _int(deploy: Mapping[str, Any], name: str, default: int) -> int:
    value = deploy.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ConfigurationError(f"{_field(name)}: expected a whole number, got {value!r}")
    return int(value)


def _text(deploy: Mapping[str, Any], name: str) -> str | None:
    value = deploy.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{_field(name)}: expected a non-empty string, got {value!r}")
    return value.strip()


def _role(deploy: Mapping[str, Any], name: str) -> str | None:
    value = _text(deploy, name)
    if value is not None and not _ROLE_ARN.fullmatch(value):
        raise ConfigurationError(f"{_field(name)}: not an IAM role ARN: {value!r}")
    return value


def _secrets(deploy: Mapping[str, Any]) -> list[dict[str, str]]:
    entries = deploy.get("secrets") or []
    if not isinstance(entries, list):
        raise ConfigurationError(f"{_field('secrets')}: expected a list of name/value_from")
    secrets, seen = [], set()
    for index, entry in enumerate(entries):
        where = _field(f"secrets[{index}]")
        if not isinstance(entry, Mapping) or set(entry) != {"name", "value_from"}:
            raise ConfigurationError(f"{where}: expected exactly 'name' and 'value_from'")
        name, value_from = entry["name"], entry["value_from"]
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ConfigurationError(f"{where}.name: not an environment variable name: {name!r}")
        if name in seen:
            raise ConfigurationError(f"{where}.name: {name!r} appears twice")
        if not isinstance(value_from, str) or not _SECRET_ARN.fullmatch(value_from):
            raise ConfigurationError(
                f"{where}.value_from: expected an SSM parameter or Secrets Manager ARN "
                "(the secret's value never goes in project.yml)"
            )
        seen.add(name)
        secrets.append({"name": name, "valueFrom": value_from})
    return secrets


def render_task_definition(
    deploy: Mapping[str, Any],
    *,
    stack: str,
    region: str,
    image: str | None = None,
) -> dict[str, Any]:
    """The ``RegisterTaskDefinition`` request for ``deploy`` (``image`` overrides its image).

    Raises :class:`ConfigurationError` naming the ``deploy.*`` field for bad input.
    """
    if not isinstance(deploy, Mapping):
        raise ConfigurationError("project.yml: deploy: expected a mapping")
    unknown = sorted(set(deploy) - _KEYS)
    if unknown:
        raise ConfigurationError(
            f"{_field(unknown[0])}: unknown key (known: {', '.join(sorted(_KEYS))})"
        )
    image = image or _text(deploy, "image")
    if not image:
        raise ConfigurationError(f"{_field('image')}: required (or pass --image)")
    cpu, memory = _size(deploy)
    family = _family(deploy, stack)
    readonly = deploy.get("readonly_root", False)
    if not isinstance(readonly, bool):
        raise ConfigurationError(f"{_field('readonly_root')}: expected true or false")
    container = _container(deploy, image=image, cpu=cpu, memory=memory, region=region)
    secrets = _secrets(deploy)
    if secrets:
        container["secrets"] = secrets
    definition: dict[str, Any] = {
        "family": family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": str(cpu),
        "memory": str(memory),
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        "containerDefinitions": [container],
    }
    for key, name in (("taskRoleArn", "task_role"), ("executionRoleArn", "execution_role")):
        arn = _role(deploy, name)
        if arn:
            definition[key] = arn
    if secrets and "executionRoleArn" not in definition:
        raise ConfigurationError(
            f"{_field('execution_role')}: required with secrets (ECS reads them with it)"
        )
    if "ephemeral_storage" in deploy:
        definition["ephemeralStorage"] = {"sizeInGiB": _ephemeral_gib(deploy)}
    if readonly:
        container["readonlyRootFilesystem"] = True
        container["mountPoints"] = [
            {"sourceVolume": HOME_VOLUME, "containerPath": HOME, "readOnly": False}
        ]
        definition["volumes"] = [{"name": HOME_VOLUME}]
    validate_request("RegisterTaskDefinition", definition)
    return definition


def _family(deploy: Mapping[str, Any], stack: str) -> str:
    family = _text(deploy, "family") or f"handoff-{stack}"
    if not _FAMILY.fullmatch(family):
        raise ConfigurationError(
            f"{_field('family')}: {family!r} (letters, digits, '-' and '_', at most 255)"
        )
    return family


def _ephemeral_gib(deploy: Mapping[str, Any]) -> int:
    size = _int(deploy, "ephemeral_storage", 20)
    if not 21 <= size <= 200:
        raise ConfigurationError(f"{_field('ephemeral_storage')}: {size} GiB (21..200)")
    return size


def _size(deploy: Mapping[str, Any]) -> tuple[int, int]:
    """``(cpu, memory)``: a Fargate size (``ConfigurationError`` naming the field)."""
    cpu = _int(deploy, "cpu", DEFAULT_CPU)
    memory = _int(deploy, "memory", DEFAULT_MEMORY)
    if cpu not in FARGATE_SIZES:
        raise ConfigurationError(
            f"{_field('cpu')}: {cpu} is not a Fargate size ({', '.join(map(str, FARGATE_SIZES))})"
        )
    allowed = FARGATE_SIZES[cpu]
    if memory not in allowed:
        raise ConfigurationError(
            f"{_field('memory')}: {memory} MiB does not go with cpu {cpu} "
            f"({allowed.start}..{allowed.stop - 1} MiB in steps of {allowed.step})"
        )
    return cpu, memory


def _container(
    deploy: Mapping[str, Any], *, image: str, cpu: int, memory: int, region: str
) -> dict[str, Any]:
    """The one container of the task (its secrets, read-only root added by the caller)."""
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        # the one container has the whole task (explicit, so every scheduler places it)
        "cpu": cpu,
        "memory": memory,
        # tini as PID 1: forwards ECS's SIGTERM to handoff and reaps orphans
        "linuxParameters": {"initProcessEnabled": True},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": _text(deploy, "log_group") or DEFAULT_LOG_GROUP,
                "awslogs-region": _text(deploy, "log_region") or region,
                "awslogs-stream-prefix": STREAM_PREFIX,
            },
        },
    }


def validate_request(operation: str, params: Mapping[str, Any]) -> None:
    """Check ``params`` against botocore's input shape of the ECS ``operation``."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model(operation).input_shape
    if shape is None:
        raise ConfigurationError(f"{operation}: the ECS operation takes no input")
    report = ParamValidator().validate(dict(params), shape)
    if report.has_errors():
        raise ConfigurationError(f"{operation}: {report.generate_report()}")


def check_overrides_size(overrides: Mapping[str, Any]) -> int:
    """The size of ``RunTask``'s ``overrides``; over 8 KiB is refused with one clear line."""
    size = len(json.dumps(overrides, separators=(",", ":")).encode())
    if size > MAX_OVERRIDES_BYTES:
        raise ConfigurationError(
            f"overrides: {size} bytes, over ECS's {MAX_OVERRIDES_BYTES}-byte limit for "
            "RunTask overrides (fewer or shorter vars/environment; secrets belong in the task "
            "definition's secrets, not in overrides)"
        )
    return size


#: Fields ECS adds to a registered revision (never part of the request).
_SERVER_FIELDS = {
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
}


def _without_defaults(value: Any) -> Any:
    """``value`` without the empty defaults ECS fills in (``[]``, ``{}``, ``None``, ``0``,
    ``False``), so a described revision compares equal to the request it came from."""
    if isinstance(value, Mapping):
        cleaned = {k: _without_defaults(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in ([], {}, None, 0, False, "")}
    if isinstance(value, list):
        return [_without_defaults(v) for v in value]
    return value


def same_definition(wanted: Mapping[str, Any], registered: Mapping[str, Any]) -> bool:
    """Whether a registered revision says what ``wanted`` (a request) says."""
    current = {k: v for k, v in registered.items() if k not in _SERVER_FIELDS}
    return _without_defaults(dict(wanted)) == _without_defaults(current)


def register_task_definition(ecs: Any, definition: Mapping[str, Any]) -> tuple[str, bool]:
    """Register ``definition`` unless the family's latest ACTIVE revision is the same.

    Returns ``(task definition ARN, registered?)``.
    """
    from botocore.exceptions import ClientError

    from handoff_provider.core.aws.errors import error_code

    try:
        latest = ecs.describe_task_definition(taskDefinition=definition["family"])["taskDefinition"]
    except ClientError as error:
        if error_code(error) not in (
            "ClientException",
            "InvalidParameterException",
        ):
            raise
        latest = None
    if (
        latest is not None
        and latest.get("status") == "ACTIVE"
        and same_definition(definition, latest)
    ):
        return latest["taskDefinitionArn"], False
    response = ecs.register_task_definition(**definition)
    return response["taskDefinition"]["taskDefinitionArn"], True
