"""Operators of the handoff provider.

``from handoff_provider.operators import HandoffRunOperator`` works for every operator;
the names are resolved lazily so that importing one operator never imports another's
dependencies (the ECS operator pulls in the Amazon provider's ECS code, boto3 included).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HandoffConfigPushOperator": "handoff_provider.operators.config",
    "HandoffFilesPushOperator": "handoff_provider.operators.config",
    "HandoffRunOperator": "handoff_provider.operators.run",
    "HandoffEcsRunOperator": "handoff_provider.operators.ecs",
    "HandoffRegisterTaskDefinitionOperator": "handoff_provider.operators.deploy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
