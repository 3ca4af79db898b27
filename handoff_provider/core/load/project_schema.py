"""The project's JSON Schema: ``project_schema.json`` plus each task kind's fragment.

``project_schema.json`` holds everything but the task kinds; every kind of the registry
(:data:`handoff_provider.core.steps.KIND_MODULES`) adds its key, with its own fragment, to a
task's properties, in registry order (the canonical key order). The composed schema is
what jsonschema words errors with, what orders the compiled document, and what
``make project-validator`` compiles ahead of time (``_project_validator.py``, stamped
with :func:`schema_digest`).
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

BASE = Path(__file__).with_name("project_schema.json")


@cache
def project_schema() -> dict[str, Any]:
    """The composed schema (do not mutate it; :func:`compose` makes a new one).

    Read from the generated validator, which holds it as it was compiled (a test checks
    that it is :func:`compose`'s): composing imports every task kind, and a project
    loads only the kinds it uses."""
    from handoff_provider.core.load._project_validator import SCHEMA

    schema: dict[str, Any] = SCHEMA
    return schema


def compose() -> dict[str, Any]:
    """A new copy of the composed schema."""
    from handoff_provider.core.steps import all_kinds

    # Next to this module (package data); importlib.resources would cost more to import.
    schema = json.loads(BASE.read_text(encoding="utf-8"))
    task = schema["$defs"]["task"]["properties"]
    for key, kind in all_kinds().items():
        task[key] = copy.deepcopy(dict(kind.schema))
    return schema


def schema_digest() -> str:
    """What the generated validator was made from (a test compares it)."""
    import hashlib  # here: loading a project never needs it

    text = json.dumps(compose(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
