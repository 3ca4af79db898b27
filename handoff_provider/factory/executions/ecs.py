"""``execution="ecs"``: the run task is a ``HandoffEcsRunOperator`` (ECS, by default Fargate).

The container runs from the stack's remote config, so the project must be pushed (or have
been): ``mode="run_local"`` can't run here. ``register=True`` adds a
``HandoffRegisterTaskDefinitionOperator`` before the run, whose ARN (XCom) is the run's
task definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from handoff_provider.arguments import mapping_argument, string_list_argument
from handoff_provider.factory.config import ExecutionConfig, ProjectConfig, RenderConfig
from handoff_provider.factory.errors import HandoffDagError

if TYPE_CHECKING:
    from handoff_provider.factory.parse_cache import ProjectInfo

__all__ = ["EcsExecution"]


@dataclass(frozen=True)
class EcsExecution(ExecutionConfig):
    """Run in an ECS task.

    :param cluster: the ECS cluster (name or ARN).
    :param task_definition: the task definition of the handoff image; or
    :param register: register project.yml's ``deploy:`` first and run that revision.
    :param subnets: / ``security_groups`` / ``assign_public_ip``: the task's network.
    :param region_name: the cluster's region (also the register task's).
    :param operator_args: anything else ``HandoffEcsRunOperator`` takes (``awslogs_group``,
        ``container_name``, ``overrides``, ``retries``, ...).
    """

    name: ClassVar[str] = "ecs"

    cluster: str | None = None
    task_definition: str | None = None
    register: bool = False
    subnets: Sequence[str] | None = None
    security_groups: Sequence[str] | None = None
    assign_public_ip: bool = False
    region_name: str | None = None

    operator_args_given_as: ClassVar[str] = "ecs={...}/run_kwargs"

    @classmethod
    def from_keywords(
        cls, settings: Mapping[str, Any] | None, operator_args: Mapping[str, Any] | None
    ) -> EcsExecution:
        """``ecs={...}``: its keys that are fields here, the rest (and ``run_kwargs``) as
        operator arguments."""
        own = set(cls.setting_names())
        settings = mapping_argument("ecs", settings, string_keys=True, error=HandoffDagError)
        extra = mapping_argument(
            "run_kwargs", operator_args, string_keys=True, error=HandoffDagError
        )
        rest = {k: v for k, v in settings.items() if k not in own}
        twice = sorted(set(rest) & set(extra))
        if twice:
            raise HandoffDagError(f"{', '.join(twice)}: given in both ecs={{...}} and run_kwargs")
        return cls(
            **{k: v for k, v in settings.items() if k in own},
            operator_args={**rest, **extra},
        )

    def check(self, project: ProjectConfig, render: RenderConfig) -> None:
        super().check(project, render)
        for name in ("subnets", "security_groups"):
            string_list_argument(f"ecs['{name}']", getattr(self, name), error=HandoffDagError)
        if render.runs_from_folder:
            raise HandoffDagError(
                "execution 'ecs' runs from the remote config: use mode 'push_and_run' or "
                "'run_remote'"
            )
        if project.envs or project.secret_envs:
            raise HandoffDagError(
                "envs/secret_envs are not sent to ECS tasks (they would show in the ECS "
                "console): put them in the project (envs) or the task definition (secrets)"
            )
        if self.register and self.task_definition is not None:
            raise HandoffDagError(
                "ecs={'register': True} registers the task definition of project.yml's "
                "deploy: drop ecs['task_definition']"
            )
        if not self.cluster or not (self.task_definition or self.register):
            raise HandoffDagError(
                "execution 'ecs' needs ecs={'cluster': ..., 'task_definition': ...} "
                "(or ecs={'cluster': ..., 'register': True})"
            )

    def run_tasks(
        self, info: ProjectInfo, project: ProjectConfig, render: RenderConfig, *, stack: str
    ) -> list[Any]:
        from handoff_provider.operators.ecs import HandoffEcsRunOperator

        assert self.cluster is not None, "check() comes first"
        tasks: list[Any] = []
        task_definition: Any = self.task_definition
        if self.register:
            from handoff_provider.operators.deploy import HandoffRegisterTaskDefinitionOperator

            registering = HandoffRegisterTaskDefinitionOperator(
                task_id="register_task_definition",
                project_dir=str(info.path),
                stack=stack,
                region_name=self.region_name,
                **project.aws_arguments(),
            )
            tasks.append(registering)
            task_definition = registering.output
        tasks.append(
            HandoffEcsRunOperator(
                task_id="run",
                cluster=self.cluster,
                task_definition=task_definition,
                subnets=self.subnets,
                security_groups=self.security_groups,
                assign_public_ip=self.assign_public_ip,
                region_name=self.region_name,
                stack=stack,
                bucket=project.bucket,
                **project.run_arguments(),  # vars (check(): no envs) and the connection
                **self.operator_args,
            )
        )
        return tasks
