"""The project model: what a validated ``project.yml`` (or compiled document) is.

Pure, frozen data: :class:`Project` and its :class:`Task` s, :class:`Command` s,
:class:`EnvVar` s, :class:`ConfigFile` s and :class:`Schedule` s. They are built by
:mod:`handoff_provider.core.load.project` (loading, validation) and read by the runner, the
CLI and the Airflow layer; nothing here reads files or talks to AWS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.model.secrets import (
    SENSITIVE_KEY_WORDS,
    SecretRef,
    config_file_secrets,
    maskable,
)
from handoff_provider.core.model.transfers import TransfersSpec

#: A task's kind: its key in project.yml (:data:`handoff_provider.core.steps.KIND_MODULES`).
TaskKind = str
StateFrom = Literal["stdout", "stderr", "none"]
StateOnFailure = Literal["discard", "last_line"]
StateFormat = Literal["text", "json"]

#: The task name a seed-form project (top-level ``commands:``) gets.
DEFAULT_TASK_NAME = "default"
PROJECT_FILE = "project.yml"
CONFIG_DIR = "config"


@dataclass(frozen=True)
class Command:
    """One stage of a pipeline (or one step of a ``commands:`` task).

    ``args`` is the unrendered template string; the runner renders it, then splits it
    with :func:`handoff_provider.core.load.templating.split_args`. ``location`` is the
    document path (``tasks[0].pipeline[1]``) for error messages, e.g.
    ``f"{project.source}: {command.location}.args"``.
    """

    command: str
    args: str = ""
    venv: str | None = None
    location: str = field(default="", compare=False)


@dataclass(frozen=True)
class Task:
    """A named pipeline (stages joined by OS pipes), a list of commands run in order, or
    one AWS step (``kind`` ``lambda`` / ``s3_touch``: ``step`` holds its unrendered spec
    and ``commands`` is empty)."""

    name: str
    kind: TaskKind
    commands: tuple[Command, ...]
    active: bool = True
    timeout: float | None = None
    state_from: StateFrom = "stdout"
    #: What a failed run leaves as the state: ``discard`` (nothing: the previous state
    #: stays) or ``last_line`` (the last complete line the task's state output wrote).
    state_on_failure: StateOnFailure = "discard"
    description: str | None = None
    #: The spec of a kind that is one call (``LambdaStep``, ``TouchStep``; see core/steps/).
    step: Any = None
    #: A ``commands:`` task's stdout (all but the state) also goes to the log.
    log_stdout: bool = True


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
    """A schedule entry (cron: 5-field standard or 6-field AWS EventBridge, kept as is)."""

    cron: str
    target_id: str | None = None
    description: str | None = None
    envs: tuple[EnvVar, ...] = ()
    vars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """A validated project (from a directory or from a compiled document).

    ``installs`` maps every venv the project uses (in order of first use) to its install
    commands: top-level ``installs`` first, then each stage's, duplicates dropped. A venv
    with no install commands is still listed (and created). ``source`` names where the
    project came from (``<dir>/project.yml`` or ``remote config``) for error messages.
    """

    tasks: tuple[Task, ...]
    installs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    envs: tuple[EnvVar, ...] = ()
    vars: Mapping[str, str] = field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    deploy: Mapping[str, Any] = field(default_factory=dict)
    transfers: TransfersSpec = field(default_factory=TransfersSpec)
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    description: str | None = None
    source: str = field(default=PROJECT_FILE, compare=False)
    #: ``state_format: json`` makes ``handoff state set`` refuse a state that isn't JSON.
    state_format: StateFormat = "text"

    @property
    def stateful(self) -> bool:
        """Whether a run carries state to the next (an active task writes ``state``)."""
        return any(task.active and task.state_from != "none" for task in self.tasks)

    #: ``secrets:`` entries (config files / JSONPaths whose values are secrets).
    secrets: tuple[SecretRef, ...] = ()

    def active_tasks(self) -> tuple[Task, ...]:
        """The tasks a run executes, in project order."""
        return tuple(task for task in self.tasks if task.active)

    def task(self, name: str) -> Task:
        """The task called ``name`` (``ProjectError`` naming the known tasks otherwise)."""
        for task in self.tasks:
            if task.name == name:
                return task
        known = ", ".join(repr(t.name) for t in self.tasks)
        raise ProjectError(f"{self.source}: no task {name!r} (tasks: {known})")

    def uses_aws(self) -> bool:
        """Whether a run needs AWS clients of its own (transfers, an active task whose kind
        needs AWS: lambda, s3_touch)."""
        return bool(self.transfers.inputs or self.transfers.outputs) or bool(self.aws_tasks())

    def aws_tasks(self) -> tuple[Task, ...]:
        """The active tasks whose kind needs AWS (:mod:`handoff_provider.core.steps`)."""
        from handoff_provider.core.steps import kind_named

        return tuple(t for t in self.active_tasks() if kind_named(t.kind).needs_aws)

    def shell_lines(self) -> list[str]:
        """The tasks as shell lines, for ``handoff show commands`` (see
        :func:`handoff_provider.core.load.display.shell_lines`)."""
        from handoff_provider.core.load.display import shell_lines

        return shell_lines(self)

    def secret_values(self, sensitive_words: Iterable[str] = SENSITIVE_KEY_WORDS) -> list[str]:
        """The values to mask (:mod:`handoff_provider.core.model.secrets` says which): config
        values under sensitive-looking keys or declared in ``secrets:``, and ``secret:
        true`` env values. ``sensitive_words``: the key words (the Airflow layer passes
        Airflow's own list). Too short values are dropped; order kept, deduped."""
        values: list[str] = []
        for config_file in self.files:
            values.extend(
                config_file_secrets(
                    config_file.name, config_file.value, self.secrets, words=sensitive_words
                )
            )
        env_sets = [self.envs, *(schedule.envs for schedule in self.schedules)]
        values.extend(env.value for envs in env_sets for env in envs if env.secret)
        return maskable(values)
