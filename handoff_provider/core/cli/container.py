"""The runtime container's contract: its entrypoint, default command and environment.

One module holds what the ``Dockerfile``, the ECS operator and the tests must agree on, so
the command the operator sends to Fargate is, by construction, the one the image runs:
the image's ``ENTRYPOINT`` is :data:`ENTRYPOINT` and its ``CMD`` is
``container_command(WORKSPACE)``. An ECS ``containerOverrides[].command`` replaces the
image's ``CMD`` only (the entrypoint stays), so the operator sends
:func:`container_command` and the process that runs is ``ENTRYPOINT + command``.

No Airflow here: the runtime image installs the core only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from handoff_provider.core.errors import ConfigurationError
from handoff_provider.core.layout import ENV_BUCKET, ENV_STACK
from handoff_provider.core.model.context import (
    ENV_END_AT,
    ENV_LOGICAL_DATE,
    ENV_ORIGIN,
    ENV_RUN_KEY,
    ENV_START_AT,
    origin_text,
)

#: The container's name in the task definition (the operator's default ``container_name``).
CONTAINER_NAME = "handoff"
#: The image's entrypoint (``ENTRYPOINT ["handoff"]``).
ENTRYPOINT: tuple[str, ...] = ("handoff",)
#: Home of the non-root user the image runs as.
HOME = "/home/handoff"
#: The workspace inside the image (in the container's writable layer).
WORKSPACE = f"{HOME}/workspace"
#: The venv cache inside the image (``HANDOFF_VENV_CACHE``).
VENV_CACHE = f"{HOME}/.cache/handoff/venvs"


def container_command(
    workspace: str = WORKSPACE,
    variables: Mapping[str, object] | None = None,
    *,
    config_name: str | None = None,
    full_refresh: bool = False,
    no_state_update: bool = False,
    lock_wait: float | None = None,
) -> list[str]:
    """The command (the image's ``CMD`` part) for a remote run that archives its artifacts.

    ``handoff run -w WORKSPACE -a`` fetches the config from SSM and the files from S3,
    restores ``last/state``, runs, then archives ``artifacts/`` to ``runs/<run key>/`` and
    ``last/``. ``variables`` become ``-v key=value`` arguments (sorted, so the command is
    stable): they are visible in the ECS console, so they must never hold secrets.
    ``config_name`` (an SSM parameter name, not a value) becomes ``--config-name``;
    ``full_refresh``, ``no_state_update`` and ``lock_wait`` the ``run`` options of the
    same names (see docs/state.md).
    """
    command = ["run", "-w", workspace, "-a"]
    if config_name:
        command += ["--config-name", config_name]
    if full_refresh:
        command.append("--full-refresh")
    if no_state_update:
        command.append("--no-state-update")
    if lock_wait is not None:
        from handoff_provider.core.stores.lease import ENV_WAIT, seconds_option

        seconds = seconds_option(lock_wait, name="lock_wait", env=ENV_WAIT, default=0.0)
        command += ["--lock-wait", f"{seconds:g}"]
    for key, value in sorted((variables or {}).items()):
        key = str(key)
        if not key or "=" in key:
            raise ConfigurationError(f"vars: invalid variable name {key!r} (empty or contains '=')")
        command += ["-v", f"{key}={'' if value is None else value}"]
    return command


def container_argv(
    workspace: str = WORKSPACE,
    variables: Mapping[str, object] | None = None,
    **options: Any,
) -> list[str]:
    """The full process the container runs: ``ENTRYPOINT + container_command(...)``."""
    return [*ENTRYPOINT, *container_command(workspace, variables, **options)]


def _iso(value: datetime | str | None) -> str | None:
    if value is None or value == "":
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def container_environment(
    *,
    stack: str,
    bucket: str,
    run_key: str,
    start_at: datetime | str | None = None,
    end_at: datetime | str | None = None,
    logical_date: datetime | str | None = None,
    origin: Mapping[str, str | int] | None = None,
) -> dict[str, str]:
    """The environment a remote run needs beyond its task role: where, which run, which
    interval, who started it.

    These are the variables the CLI reads back (``Remote.from_options`` and
    ``RunContext.from_strings``). Never a config value: the config stays in SSM and the
    container reads it with its task role.
    """
    if not stack:
        raise ConfigurationError("stack: no stack name (set stack= or HANDOFF_STACK)")
    if not bucket:
        raise ConfigurationError("bucket: no S3 bucket (set bucket= or HANDOFF_BUCKET)")
    if not run_key:
        raise ConfigurationError("run_key: empty run key")
    env = {ENV_STACK: stack, ENV_BUCKET: bucket, ENV_RUN_KEY: run_key}
    for name, value in (
        (ENV_START_AT, start_at),
        (ENV_END_AT, end_at),
        (ENV_LOGICAL_DATE, logical_date),
    ):
        text = _iso(value)
        if text:
            env[name] = text
    if origin:
        env[ENV_ORIGIN] = origin_text(origin)
    return env
