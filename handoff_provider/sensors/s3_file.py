"""``HandoffS3FileSensor``: wait for S3 objects matching a regex (OTF's S3 file watch).

Matching rules are those of :mod:`handoff_provider.core.aws.s3_watch` (also used by
``handoff watch`` and the project's input transfers): ``prefix`` is a folder, ``file_regex``
is fully matched against the key relative to it, optional inclusive size bounds and ages
(seconds since ``LastModified``).

The sensor returns (XCom ``return_value``) the matched objects, sorted by key, as
``[{"uri", "bucket", "key", "size", "last_modified"}, ...]``, so a downstream handoff run
can receive them, e.g. ``vars={"inputs": "{{ ti.xcom_pull('watch') | tojson }}"}``.

* poke / reschedule mode: each poke lists the prefix with the client of ``self.hook`` (the
  Amazon provider's sensor shape: ``aws_hook_class = S3Hook``, built once from the
  templated ``aws_conn_id``/``region_name``/``verify``/``botocore_config``); the standard
  sensor ``timeout`` applies (``AirflowSensorTimeout``).
* ``deferrable=True``: one check in the worker, then the task defers to
  :class:`~handoff_provider.triggers.s3_file.HandoffS3FileTrigger` with an absolute deadline
  of *now + timeout*; a trigger timeout fails the task with ``AirflowSensorTimeout`` (or
  skips it with ``soft_fail``), like poke mode.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from handoff_provider._compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AwsBaseSensor,
    PokeReturnValue,
    aws_template_fields,
    default_deferrable,
)
from handoff_provider.core.aws.s3_watch import WatchCriteria, describe_count, find_with_criteria
from handoff_provider.triggers.s3_file import HandoffS3FileTrigger

__all__ = ["HandoffS3FileSensor"]

#: Extra time the task-level deferral timeout leaves the trigger to report its own timeout.
_DEFER_GRACE_SECONDS = 120


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class HandoffS3FileSensor(AwsBaseSensor[S3Hook]):
    """Wait until objects under ``s3://bucket/prefix/`` match ``file_regex`` (module doc).

    :param bucket: bucket to watch (templated).
    :param file_regex: regex fully matched against the key relative to ``prefix`` (templated).
    :param prefix: folder to watch, ``""`` for the whole bucket (templated).
    :param min_size: minimum object size in bytes (inclusive).
    :param max_size: maximum object size in bytes (inclusive).
    :param min_age: minimum seconds (or timedelta) since ``LastModified``, e.g. to let a
        writer finish.
    :param max_age: maximum seconds (or timedelta) since ``LastModified``; older objects
        are ignored.
    :param min_count: how many matching objects are needed (default 1).
    :param max_count: at most this many may match: with more, the sensor keeps waiting
        (and times out) instead of succeeding (Open Task Framework's file-count condition).
    :param aws_conn_id: Airflow AWS connection (``aws_default``); ``region_name`` (default
        the connection's), ``verify`` and ``botocore_config`` as every Amazon sensor.
    :param deferrable: defer to the triggerer between checks (default
        ``[operators] default_deferrable``).
    """

    aws_hook_class = S3Hook
    template_fields: Sequence[str] = aws_template_fields(
        "bucket", "prefix", "file_regex", "botocore_config"
    )
    ui_color = "#d8e9f5"

    def __init__(
        self,
        *,
        bucket: str,
        file_regex: str,
        prefix: str = "",
        min_size: int | None = None,
        max_size: int | None = None,
        min_age: float | timedelta | None = None,
        max_age: float | timedelta | None = None,
        min_count: int = 1,
        max_count: int | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if min_count < 1 or (max_count is not None and max_count < min_count):
            raise ValueError("min_count must be at least 1 and max_count at least min_count")
        self.bucket = bucket
        self.prefix = prefix
        self.file_regex = file_regex
        self.min_size = min_size
        self.max_size = max_size
        self.min_age = _seconds(min_age)
        self.max_age = _seconds(max_age)
        self.min_count = min_count
        self.max_count = max_count
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _criteria(self) -> WatchCriteria:
        return WatchCriteria.from_fields(self)

    def poke(self, context: Any) -> PokeReturnValue:
        criteria = self._criteria()
        matches = find_with_criteria(self.hook.conn, criteria)
        self.log.info("%s", describe_count(criteria, len(matches)))
        if criteria.count_ok(len(matches)):
            return PokeReturnValue(is_done=True, xcom_value=[m.to_dict() for m in matches])
        return PokeReturnValue(is_done=False)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=self.make_trigger(deadline=time.time() + self.timeout),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + _DEFER_GRACE_SECONDS),
        )
        return None  # not reached: defer() raises TaskDeferred

    def make_trigger(self, *, deadline: float | None) -> HandoffS3FileTrigger:
        """The trigger this sensor defers to (rendered fields, absolute ``deadline``)."""
        return HandoffS3FileTrigger(
            bucket=self.bucket,
            prefix=self.prefix,
            file_regex=self.file_regex,
            min_size=self.min_size,
            max_size=self.max_size,
            min_age=self.min_age,
            max_age=self.max_age,
            min_count=self.min_count,
            max_count=self.max_count,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
            poke_interval=float(self.poke_interval),
            deadline=deadline,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: return the matches, or fail/skip on timeout/error."""
        event = event or {}
        status = event.get("status")
        if status == "success":
            return event.get("matches", [])
        message = event.get("message") or f"file watch ended with status {status!r}"
        if status == "timeout":
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        raise AirflowException(message)
