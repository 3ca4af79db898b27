"""What a task kind provides (:class:`StepKind`) and what a run gives it (:class:`RunScope`).

A task of ``project.yml`` has exactly one kind key (``pipeline``, ``commands``,
``lambda``, ``s3_touch``, ...). Everything specific to a kind lives in its own module of
this package, which exports one :class:`StepKind` object: the JSON Schema fragment of
its value (composed into the project schema), the checks the schema can't express, how
the model is built, how it is shown by ``handoff show commands``, and how a run renders
and runs it. The registry (``steps/__init__.py``) lists the kinds in their canonical
order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from handoff_provider.core.model.callbacks import LogFn

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Project, Task
    from handoff_provider.core.run.pipeline import PipelineControl, StageSpec
    from handoff_provider.core.run.summary import TaskResult
    from handoff_provider.core.run.workspace import Workspace

#: ``render(text, field_path) -> str``: a template rendered, errors naming the field.
RenderFn = Callable[[str, str], str]


class StepKind(Protocol):
    """One task kind. ``key`` is its key in a task of ``project.yml``.

    ``schema`` is the JSON Schema of the value under ``key`` (``$ref`` into the project
    schema's ``$defs`` allowed); ``hint`` names it in "needs exactly one of" errors;
    ``runs_processes`` says whether its output can be the state (``state_from`` and
    ``state_on_failure`` apply) and whether it has stages with ``venv``/``installs``;
    ``needs_aws`` whether a run needs an AWS client factory for it.
    """

    key: str
    schema: Mapping[str, Any]
    hint: str
    runs_processes: bool
    needs_aws: bool

    def validate(self, entry: Mapping[str, Any], *, where: str) -> None:
        """What the schema can't say about ``entry`` (the task's mapping, schema-valid);
        ``ProjectError("<where>...: why")`` without the source (the caller adds it)."""

    def build(self, entry: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        """The :class:`~handoff_provider.core.load.project.Task` fields of this kind
        (``commands``, ``step``, ``state_from``, ...) from a validated ``entry``."""

    def describe(self, task: Task) -> list[str]:
        """``task`` as shell lines, unrendered (``handoff show commands``)."""

    def plan(self, task: Task, scope: RunScope) -> TaskPlan:
        """Render and resolve everything of ``task`` before the run's first process starts
        (a typo fails the run before it touched anything)."""

    def run(self, plan: TaskPlan, scope: RunScope, result: TaskResult) -> None:
        """Run a planned task, filling in ``result``; raises ``StageError`` when it failed
        (``result`` is complete then too)."""


@dataclass
class TaskPlan:
    """A task rendered and resolved: ``stages`` for the kinds running processes (with
    ``rendered``, each stage as a shell line, secrets masked), ``step`` (the rendered spec)
    for the kinds that are one call; ``label`` names it in the summary and the logs."""

    task: Task
    stages: list[StageSpec] = field(default_factory=list)
    step: Any = None
    label: str = ""
    rendered: list[str] = field(default_factory=list)


@dataclass
class RunScope:
    """What a run lends its tasks: the workspace, the template context, the process
    environment and venvs, logging, the stop handle and the AWS clients.

    ``render_for(where)`` gives a :data:`RenderFn` whose errors name
    ``<source>: <where><field>``; ``client(service, config=None, key="")`` a cached AWS
    client (``key`` tells apart clients of one service with different configs).
    """

    workspace: Workspace
    project: Project
    variables: Mapping[str, Any]
    template_functions: Mapping[str, Callable[..., Any]] | None
    base_env: Mapping[str, str]
    venvs: Mapping[str, Path]
    redact: Callable[[str], str]
    log: LogFn
    on_stderr_line: Callable[[str, int, str, str], None]
    control: PipelineControl
    kill_grace: float
    client: Callable[..., Any]

    @property
    def source(self) -> str:
        return self.project.source

    def render_for(self, where: str) -> RenderFn:
        return renderer(self.variables, self.template_functions, f"{self.source}: {where}")


def renderer(
    variables: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]] | None,
    prefix: str,
) -> RenderFn:
    """``render(text, field_path)`` with ``variables``; errors name ``<prefix><field_path>``."""
    from handoff_provider.core.load.templating import render_text

    def render(text: str, path: str) -> str:
        return render_text(text, variables, source=f"{prefix}{path}", functions=functions)

    return render
