"""What any project document must keep to, however it arrives (``project.yml`` parsed
by :mod:`~handoff_provider.core.load.project_yaml`, or a compiled document from SSM), and
how a value is named in messages that must not show it. No PyYAML here: a run whose
``project.yml`` parse is cached (:mod:`~handoff_provider.core.load.yaml_cache`) or whose
document comes from SSM never imports it."""

from __future__ import annotations

from typing import Any

from handoff_provider.core.errors import ProjectError

MAX_PROJECT_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 200_000


def type_name(value: Any) -> str:
    """What ``value`` is, in words, for messages that must not show the value."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def check_depth(value: Any, *, source: str, limit: int = MAX_DEPTH) -> None:
    """Refuse a (JSON) document nested deeper than ``limit`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise ProjectError(f"{source}: nested deeper than {limit} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
