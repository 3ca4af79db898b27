"""``execution="local"``: the run task is a ``HandoffRunOperator`` on the Airflow worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from handoff_provider.factory.config import ExecutionConfig, ProjectConfig, RenderConfig

if TYPE_CHECKING:
    from handoff_provider.factory.parse_cache import ProjectInfo

__all__ = ["LocalExecution"]


@dataclass(frozen=True)
class LocalExecution(ExecutionConfig):
    """Run on the worker (``HandoffRunOperator``), from the stack's remote config or, with
    ``mode="run_local"``, from the project folder; ``operator_args`` go to the operator."""

    name: ClassVar[str] = "local"

    def run_tasks(
        self, info: ProjectInfo, project: ProjectConfig, render: RenderConfig, *, stack: str
    ) -> list[Any]:
        from handoff_provider.operators.run import HandoffRunOperator

        given: dict[str, Any] = project.run_arguments()  # only what differs from the defaults
        if render.runs_from_folder:
            given["project_dir"] = info.path
        return [
            HandoffRunOperator(
                task_id="run", stack=stack, bucket=project.bucket, **given, **self.operator_args
            )
        ]
