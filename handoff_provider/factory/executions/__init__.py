"""Execution modes of the DAG factory: where a project's ``run`` task runs.

One module per mode, each defining an :class:`~handoff_provider.factory.config.ExecutionConfig`
subclass (its settings, its checks, the operator(s) it creates); :data:`EXECUTIONS` maps
``execution=`` names to them. Adding a mode is one new module here plus its line below.
A mode imports its operator only when it builds its task, so a DAG file pays for the
modes it uses alone.
"""

from __future__ import annotations

from handoff_provider.factory.config import ExecutionConfig
from handoff_provider.factory.errors import HandoffDagError
from handoff_provider.factory.executions.ecs import EcsExecution
from handoff_provider.factory.executions.local import LocalExecution

__all__ = ["EXECUTIONS", "EcsExecution", "LocalExecution", "execution_class"]

EXECUTIONS: dict[str, type[ExecutionConfig]] = {
    LocalExecution.name: LocalExecution,
    EcsExecution.name: EcsExecution,
}


def execution_class(name: str) -> type[ExecutionConfig]:
    """The config class of the execution mode ``name`` (``HandoffDagError`` if unknown)."""
    try:
        return EXECUTIONS[name]
    except (KeyError, TypeError):
        raise HandoffDagError(f"execution {name!r}: use one of {', '.join(EXECUTIONS)}") from None
