"""Provider metadata for Airflow (entry point ``apache_airflow_provider``).

Airflow calls :func:`get_provider_info` while discovering providers (``airflow providers
list``, the UI's provider pages, config defaults), so this module imports nothing from
Airflow or from the rest of the package. Sensor and trigger modules are listed when they
are installed, so the metadata never points at a module that does not exist.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from handoff_provider import __version__

INTEGRATION = "Handoff"

_OPERATOR_MODULES = (
    "handoff_provider.operators.config",
    "handoff_provider.operators.run",
    "handoff_provider.operators.ecs",
    "handoff_provider.operators.deploy",
)
_SENSOR_MODULES = ("handoff_provider.sensors.s3_file",)
_TRIGGER_MODULES = ("handoff_provider.triggers.s3_file",)


def _existing(modules: tuple[str, ...]) -> list[str]:
    """The modules of ``modules`` that are importable (located, not imported)."""
    found = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is not None:
                found.append(name)
        except (ImportError, ValueError):
            continue
    return found


def _option(
    description: str, *, type_: str = "string", example: str | None = None, default: str | None = ""
) -> dict[str, Any]:
    return {
        "description": description,
        "version_added": "0.1.0",
        "type": type_,
        "example": example,
        "default": default,
    }


def get_provider_info() -> dict[str, Any]:
    """The provider's metadata (``package-name: handoff-provider``). Long because it is one
    literal, Airflow's provider-info document, kept whole so it reads as that document."""
    info: dict[str, Any] = {
        "package-name": "handoff-provider",
        "name": "Handoff",
        "description": (
            "Run handoff projects (unix pipelines of commands described by project.yml, "
            "config in SSM, files and artifacts in S3) on the Airflow worker or on "
            "AWS ECS Fargate."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://github.com/anelendata/handoff",
                "tags": ["aws", "software"],
            }
        ],
        "hooks": [
            {"integration-name": INTEGRATION, "python-modules": ["handoff_provider.hooks.handoff"]}
        ],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": _existing(_OPERATOR_MODULES)}
        ],
        "extra-links": [
            "handoff_provider.links.artifacts.HandoffArtifactsLink",
            "handoff_provider.links.ecs.HandoffEcsTaskLink",
        ],
        "config": {
            "handoff": {
                "description": "Settings of the handoff provider (runs on the worker).",
                "options": {
                    "workspace_root": _option(
                        "Directory under which HandoffRunOperator creates a temporary "
                        "workspace per task try (removed afterwards) when the task gives "
                        "no workspace. Empty: the system temporary directory.",
                        example="/usr/local/airflow/handoff-workspaces",
                    ),
                    "venv_cache_dir": _option(
                        "Directory of the venv cache shared by runs on this worker (venvs "
                        "are keyed by their install spec, so an unchanged project never "
                        "reinstalls). Empty: $HANDOFF_VENV_CACHE, else "
                        "~/.cache/handoff/venvs.",
                        example="/usr/local/airflow/handoff-venvs",
                    ),
                    "parse_cache_dir": _option(
                        "Where the DAG factory remembers validated projects across DAG "
                        "parsing processes (keyed by the mtimes/sizes of project.yml and "
                        "config/, so an unchanged project is not re-validated on every "
                        "parse). Empty: $AIRFLOW_HOME/.cache/handoff-parse; 'none' disables.",
                        example="none",
                    ),
                    "runs_view_stacks": _option(
                        "Stacks the Handoff runs view shows (Browse > Handoff runs): "
                        "'stack' or 'stack@bucket', comma separated; the bucket defaults "
                        "to $HANDOFF_BUCKET. Empty: $HANDOFF_STACK.",
                        example="sales-etl, billing@billing-artifacts",
                    ),
                    "runs_view_aws_conn_id": _option(
                        "The AWS connection the runs view reads the archived runs with.",
                        example="aws_default",
                        default="aws_default",
                    ),
                    "keep_workspace": _option(
                        "Keep temporary workspaces after the run (for debugging).",
                        type_="boolean",
                        example="True",
                        default="False",
                    ),
                },
            }
        },
    }
    if sensors := _existing(_SENSOR_MODULES):
        info["sensors"] = [{"integration-name": INTEGRATION, "python-modules": sensors}]
    if triggers := _existing(_TRIGGER_MODULES):
        info["triggers"] = [{"integration-name": INTEGRATION, "python-modules": triggers}]
    return info
