"""``HandoffS3FileTrigger``: the deferred half of :class:`HandoffS3FileSensor`.

It polls S3 with the same matching rules as the sensor and ``handoff watch``
(:mod:`handoff_provider.core.aws.s3_watch`). Unlike the Amazon provider's ``S3KeyTrigger`` it
does not need ``aiobotocore`` (an optional extra of the provider, absent from many
deployments): each check runs the ordinary boto3 client of an ``S3Hook`` in a worker thread
(``asgiref.sync_to_async``, as the provider does for its own connection lookups), which
keeps the triggerer's event loop free. A check lists one prefix, so the thread is busy for
one paginated ``ListObjectsV2`` at a time.

Events: ``{"status": "success", "matches": [...]}`` (``MatchedObject.to_dict()`` items),
``{"status": "timeout", "message": ...}`` once ``deadline`` (epoch seconds) has passed, or
``{"status": "error", "message": ...}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from handoff_provider._compat import BaseTrigger, TriggerEvent
from handoff_provider.core.aws.s3_watch import (
    WatchCriteria,
    describe_count,
    find_with_criteria,
    normalize_prefix,
)

__all__ = ["HandoffS3FileTrigger", "s3_client"]


def s3_client(
    aws_conn_id: str | None,
    region_name: str | None,
    verify: bool | str | None = None,
    botocore_config: dict[str, Any] | None = None,
) -> Any:
    """The S3 client of an Airflow AWS connection (the trigger's polls; the sensor's are
    its own ``hook``'s, made from the same four arguments)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(
        aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, config=botocore_config
    )
    return hook.get_conn()


class HandoffS3FileTrigger(BaseTrigger):
    """Poll ``s3://bucket/prefix/`` until ``min_count`` to ``max_count`` objects match
    (see module doc)."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str,
        file_regex: str,
        min_size: int | None = None,
        max_size: int | None = None,
        min_age: float | None = None,
        max_age: float | None = None,
        min_count: int = 1,
        max_count: int | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict[str, Any] | None = None,
        poke_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.bucket = bucket
        self.prefix = prefix
        self.file_regex = file_regex
        self.min_size = min_size
        self.max_size = max_size
        self.min_age = min_age
        self.max_age = max_age
        self.min_count = min_count
        self.max_count = max_count
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.verify = verify
        self.botocore_config = botocore_config
        self.poke_interval = poke_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "bucket": self.bucket,
                "prefix": self.prefix,
                "file_regex": self.file_regex,
                "min_size": self.min_size,
                "max_size": self.max_size,
                "min_age": self.min_age,
                "max_age": self.max_age,
                "min_count": self.min_count,
                "max_count": self.max_count,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "verify": self.verify,
                "botocore_config": self.botocore_config,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
            },
        )

    def _criteria(self) -> WatchCriteria:
        return WatchCriteria.from_fields(self)

    def _client(self) -> Any:
        return s3_client(self.aws_conn_id, self.region_name, self.verify, self.botocore_config)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        where = f"s3://{self.bucket}/{normalize_prefix(self.prefix)}"
        try:
            criteria = self._criteria()
            client = await sync_to_async(self._client)()
            check = sync_to_async(find_with_criteria, thread_sensitive=False)
            while True:
                matches = await check(client, criteria)
                if criteria.count_ok(len(matches)):
                    yield TriggerEvent(
                        {"status": "success", "matches": [match.to_dict() for match in matches]}
                    )
                    return
                remaining = None if self.deadline is None else self.deadline - time.time()
                if remaining is not None and remaining <= 0:
                    yield TriggerEvent(
                        {
                            "status": "timeout",
                            "message": "file watch: timed out: "
                            + describe_count(criteria, len(matches)),
                        }
                    )
                    return
                wait = (
                    self.poke_interval if remaining is None else min(self.poke_interval, remaining)
                )
                self.log.info(
                    "%s; next check in %.0fs", describe_count(criteria, len(matches)), wait
                )
                await asyncio.sleep(wait)
        except Exception as exc:  # reported to the task, which fails with this message
            yield TriggerEvent(
                {
                    "status": "error",
                    "message": f"file watch on {where}: {type(exc).__name__}: {exc}",
                }
            )
