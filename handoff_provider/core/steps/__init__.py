"""The task kinds (the step-kind registry).

Each kind is one module of this package exporting ``KIND``, a
:class:`~handoff_provider.core.steps.base.StepKind`; :data:`KINDS` lists them in their
canonical order (the order of a task's keys in the compiled document). Adding a kind:
write its module (its spec, schema fragment, checks, display, plan and run) and add it
here; then ``make project-validator`` (the schema is composed from the fragments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handoff_provider.core.steps import aws_lambda, commands, pipeline, s3_touch
from handoff_provider.core.steps.base import RunScope, StepKind, TaskPlan

__all__ = ["KINDS", "RunScope", "StepKind", "TaskPlan", "kind_named", "kinds_in"]

KINDS: dict[str, StepKind] = {
    module.KIND.key: module.KIND for module in (pipeline, commands, aws_lambda, s3_touch)
}


def kind_named(key: str) -> StepKind:
    """The kind whose key is ``key`` (a ``Task.kind``)."""
    return KINDS[key]


def kinds_in(entry: Mapping[str, Any]) -> list[StepKind]:
    """The kinds whose key a task's mapping has (a valid task has exactly one)."""
    return [kind for key, kind in KINDS.items() if key in entry]


def one_of_hint() -> str:
    """``'pipeline' (stages joined by pipes), 'commands', 'lambda' or 's3_touch'``."""
    hints = [kind.hint for kind in KINDS.values()]
    return ", ".join(hints[:-1]) + f" or {hints[-1]}"
