"""Extra link from a handoff ECS task to the ECS task in the AWS console.

Persisted (XCom key ``handoff_ecs_task``) as soon as the task is known - started or
reattached - so the button works while the task runs, beside the artifacts link.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from handoff_provider._compat import BaseAwsLink


def ecs_task_console_url(
    cluster: str, task_arn: str, *, region_name: str | None, aws_domain: str | None = None
) -> str:
    """The ECS console page of one task (cluster name or ARN, task ARN or id)."""
    cluster_name = cluster.rsplit("/", 1)[-1]
    task_id = task_arn.rsplit("/", 1)[-1]
    region = quote(region_name or "", safe="")
    host = f"{region}.console.{aws_domain}" if region else f"console.{aws_domain}"
    url = (
        f"https://{host}/ecs/v2/clusters/{quote(cluster_name, safe='')}"
        f"/tasks/{quote(task_id, safe='')}/configuration"
    )
    return f"{url}?region={region}" if region else url


class HandoffEcsTaskLink(BaseAwsLink):
    """ "ECS task" button: the try's ECS task in the ECS console."""

    name: ClassVar[str] = "ECS task"
    key: ClassVar[str] = "handoff_ecs_task"
    format_str: ClassVar[str] = (
        "https://{region_name}.console.{aws_domain}/ecs/v2/clusters/{cluster}/tasks/{task_id}"
    )

    def format_link(self, **kwargs: Any) -> str:
        cluster, task_arn = kwargs.get("cluster"), kwargs.get("task_arn")
        if not cluster or not task_arn:
            return ""
        return ecs_task_console_url(
            cluster,
            task_arn,
            region_name=kwargs.get("region_name"),
            aws_domain=kwargs.get("aws_domain") or "aws.amazon.com",
        )
