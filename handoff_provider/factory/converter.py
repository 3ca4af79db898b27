"""One project's tasks from the factory's configs (shared by ``handoff_dag`` and
``HandoffTaskGroup``): the push tasks the render config asks for, then the execution's
run task(s), chained in that order in the current DAG or TaskGroup."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from handoff_provider.factory.config import FactoryConfig
from handoff_provider.factory.parse_cache import ProjectInfo

__all__ = ["build_tasks", "default_stack", "doc_md", "ordered_runs", "safe_id"]

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_id(text: str) -> str:
    """``text`` as a DAG/group id part: ``[A-Za-z0-9_.-]``, never empty."""
    return _ID_UNSAFE.sub("_", text).strip("_.-") or "project"


def default_stack(name: str) -> str:
    """A project's stack when none is given: its folder name, made safe (``-`` for ``_``)."""
    return safe_id(name).replace("_", "-")


def doc_md(project: ProjectInfo, config: FactoryConfig, *, notes: Sequence[str]) -> str:
    """The DAG's documentation: the project, how it runs, its commands as shell lines."""
    lines = [f"### handoff project `{project.name}`", ""]
    if project.description:
        lines += [project.description, ""]
    where = f"mode `{config.render.mode}` · execution `{config.execution.name}`"
    # A language on the fence: Airflow 3's markdown renders a bare fence as inline code.
    lines += [f"`{project.path}` · {where}", "", "```sh", *project.shell_lines, "```"]
    if notes:
        lines += ["", *[f"* {note}" for note in notes]]
    return "\n".join(lines)


def _push_tasks(project: ProjectInfo, config: FactoryConfig, stack: str) -> list[Any]:
    from handoff_provider.operators.config import (
        HandoffConfigPushOperator,
        HandoffFilesPushOperator,
    )

    common: dict[str, Any] = {
        "project_dir": project.path,
        "stack": stack,
        "bucket": config.project.bucket,
        **config.project.aws_arguments(),
    }
    return [
        HandoffConfigPushOperator(task_id="push_config", **common, **config.render.push_args),
        HandoffFilesPushOperator(task_id="push_files", **common),
    ]


def ordered_runs(
    config: FactoryConfig, project: ProjectInfo, *defaults: Mapping[str, Any] | None
) -> FactoryConfig:
    """``config`` whose run task ``depends_on_past`` when the project carries state, unless
    its operator arguments or the ``default_args`` in ``defaults`` choose (see
    :mod:`handoff_provider.dag_factory`: backfills in logical-date order)."""
    args = config.execution.operator_args
    chosen = "depends_on_past" in args or any("depends_on_past" in (d or {}) for d in defaults)
    if not project.stateful or chosen:
        return config
    ordered = {**args, "depends_on_past": True}
    execution = dataclasses.replace(config.execution, operator_args=ordered)
    return dataclasses.replace(config, execution=execution)


def build_tasks(project: ProjectInfo, config: FactoryConfig) -> list[Any]:
    """Create the tasks in the current DAG/TaskGroup context; returns them in order.

    Every check runs before the first task is created (``HandoffDagError``)."""
    config.execution.check(config.project, config.render)
    stack = config.project.stack or default_stack(project.name)
    tasks = _push_tasks(project, config, stack) if config.render.pushes else []
    tasks += config.execution.run_tasks(project, config.project, config.render, stack=stack)
    for upstream, downstream in itertools.pairwise(tasks):
        upstream >> downstream
    return tasks
