"""The task kinds (the step-kind registry).

Each kind is one module of this package exporting ``KIND``, a
:class:`~handoff_provider.core.steps.base.StepKind`; :data:`KIND_MODULES` maps each kind's
key to its module, in the kinds' canonical order (the order of a task's keys in the
compiled document). A kind's module is imported when a project first uses the kind, so a
run of pipelines never imports the AWS kinds (``lambda``, ``s3_touch``) and what they
import. Adding a kind: write its module (its spec, schema fragment, checks, display, plan
and run) and add its line to :data:`KIND_MODULES`; then ``make project-validator`` (the
schema is composed from the fragments).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from handoff_provider.core.steps.base import RunScope, StepKind, TaskPlan

__all__ = [
    "KIND_MODULES",
    "RunScope",
    "StepKind",
    "TaskPlan",
    "all_kinds",
    "kind_named",
    "kinds_in",
    "one_of_hint",
]

#: A kind's key in project.yml -> its module in this package (a test checks each module's
#: ``KIND.key`` against its line).
KIND_MODULES: Mapping[str, str] = {
    "pipeline": "pipeline",
    "commands": "commands",
    "lambda": "aws_lambda",
    "s3_touch": "s3_touch",
}


@functools.cache
def kind_named(key: str) -> StepKind:
    """The kind whose key is ``key`` (a ``Task.kind``; ``KeyError`` for no kind's)."""
    # __import__, the import statement's own path: unlike importlib.import_module it shows
    # in ``python -X importtime``, which is how tests/core/test_cli_imports.py sees what a
    # verb imports.
    module = __import__(f"{__name__}.{KIND_MODULES[key]}", fromlist=["KIND"])
    kind: StepKind = module.KIND
    return kind


def kinds_in(entry: Mapping[str, Any]) -> list[StepKind]:
    """The kinds whose key a task's mapping has (a valid task has exactly one)."""
    return [kind_named(key) for key in KIND_MODULES if key in entry]


def all_kinds() -> dict[str, StepKind]:
    """Every kind by key, in canonical order (imports them all: for the schema and hints)."""
    return {key: kind_named(key) for key in KIND_MODULES}


def one_of_hint() -> str:
    """``'pipeline' (stages joined by pipes), 'commands', 'lambda' or 's3_touch'``."""
    hints = [kind.hint for kind in all_kinds().values()]
    return ", ".join(hints[:-1]) + f" or {hints[-1]}"
