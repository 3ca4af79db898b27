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

        return [
            HandoffRunOperator(
                task_id="run",
                project_dir=str(info.path) if render.runs_from_folder else None,
                vars=dict(project.vars),
                envs=dict(project.envs),
                secret_envs=dict(project.secret_envs),
                stack=stack,
                bucket=project.bucket,
                aws_conn_id=project.aws_conn_id,
                **self.operator_args,
            )
        ]
