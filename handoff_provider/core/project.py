"""The project model: load and validate ``project.yml`` + ``config/``, compile the document.

(First version: the dataclasses other modules code against; loading follows.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from handoff_provider.core.errors import ProjectError

TaskKind = Literal["pipeline", "commands"]
StateFrom = Literal["stdout", "stderr", "none"]

#: The task name a seed-form project (top-level ``commands:``) gets.
DEFAULT_TASK_NAME = "default"


@dataclass(frozen=True)
class Command:
    """One stage of a pipeline (or one step of a ``commands:`` task).

    ``args`` is the unrendered template string; the runner renders it, then splits it
    with :func:`handoff_provider.core.templating.split_args`. ``location`` is the
    document path (``tasks[0].pipeline[1]``) for error messages.
    """

    command: str
    args: str = ""
    venv: str | None = None
    location: str = field(default="", compare=False)


@dataclass(frozen=True)
class Task:
    """A named pipeline (stages joined by OS pipes) or a list of commands run in order."""

    name: str
    kind: TaskKind
    commands: tuple[Command, ...]
    active: bool = True
    timeout: float | None = None
    state_from: StateFrom = "stdout"
    description: str | None = None


@dataclass(frozen=True)
class EnvVar:
    """An environment variable exported to every command (value hidden from repr)."""

    key: str
    value: str = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class ConfigFile:
    """A file of ``config/`` embedded in the document (``name`` relative, ``/``-separated)."""

    name: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Schedule:
    """A schedule entry (cron: 5-field standard or 6-field AWS EventBridge)."""

    cron: str
    target_id: str | None = None
    description: str | None = None
    envs: tuple[EnvVar, ...] = ()
    vars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """A validated project (from a directory or from a compiled document)."""

    tasks: tuple[Task, ...]
    installs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    envs: tuple[EnvVar, ...] = ()
    vars: Mapping[str, str] = field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    deploy: Mapping[str, Any] = field(default_factory=dict)
    transfers: tuple[Any, ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    description: str | None = None
    source: str = field(default="project.yml", compare=False)

    def active_tasks(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task.active)


def compile_document(project_dir: Path) -> dict[str, Any]:
    raise ProjectError("not implemented yet")


def project_from_document(document: Mapping[str, Any], *, source: str) -> Project:
    raise ProjectError("not implemented yet")


def load_project(project_dir: Path) -> Project:
    return project_from_document(
        compile_document(project_dir), source=str(Path(project_dir) / "project.yml")
    )
