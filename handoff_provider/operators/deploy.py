"""Register the project's ECS task definition (``deploy:`` in project.yml) before a run.

:class:`HandoffRegisterTaskDefinitionOperator` renders ``deploy:`` into a
``RegisterTaskDefinition`` request (:mod:`handoff_provider.core.aws.task_definition`) and
registers it unless the family's latest ACTIVE revision is the same; it returns the ARN,
which the DAG factory hands to ``HandoffEcsRunOperator`` (``ecs={"register": True}``). The
project is read when the task runs, never at DAG parse.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.ecs import EcsHook

from handoff_provider._compat import AirflowException, AwsBaseOperator, aws_template_fields


class HandoffRegisterTaskDefinitionOperator(AwsBaseOperator[EcsHook]):
    """Register the ECS task definition of a project's ``deploy:``; returns its ARN.

    :param project_dir: the project directory (its ``project.yml`` has ``deploy:``).
    :param stack: names the default family ``handoff-<stack>``
        (default ``$HANDOFF_STACK``/``$STACK_NAME`` on the worker).
    :param image: container image (overrides ``deploy.image``).
    :param aws_conn_id: the Airflow AWS connection; ``region_name`` the region of the ECS
        cluster (default: the connection's); ``verify``, ``botocore_config`` as every
        Amazon operator (all four templated).
    """

    aws_hook_class = EcsHook
    template_fields: Sequence[str] = aws_template_fields("project_dir", "stack", "image")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        project_dir: str | os.PathLike[str],
        stack: str | None = None,
        image: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = os.fspath(project_dir)
        self.stack = stack
        self.image = image

    def execute(self, context: Any) -> str:
        from handoff_provider.core.aws.task_definition import (
            register_task_definition,
            render_task_definition,
        )
        from handoff_provider.core.errors import HandoffError
        from handoff_provider.core.layout import stack_name
        from handoff_provider.core.load.project import load_project

        stack = stack_name(self.stack)
        if not stack:
            raise AirflowException(
                "register task definition: no stack (set stack= or HANDOFF_STACK)"
            )
        try:
            project = load_project(Path(self.project_dir).expanduser())
            definition = render_task_definition(
                project.deploy, stack=stack, region=self.hook.conn_region_name, image=self.image
            )
        except HandoffError as exc:
            raise AirflowException(f"register task definition: {exc}") from None
        arn, registered = register_task_definition(self.hook.conn, definition)
        self.log.info(
            "Task definition %s: %s", "registered" if registered else "unchanged (latest)", arn
        )
        return arn
