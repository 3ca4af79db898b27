"""Find and wait for S3 objects: the file watch of Open Task Framework's S3 handler.

Matching rules (shared by the CLI ``handoff watch``, the input transfers and the Airflow
sensor/trigger, so all of them agree on what "a match" is):

* ``prefix`` is a **folder**: a leading ``/`` is dropped and a trailing ``/`` is added when
  missing (``"src"`` and ``"src/"`` both list ``src/...``; ``""`` is the whole bucket).
* ``file_regex`` is matched with :func:`re.fullmatch` against the key **relative to the
  prefix** (``src/2024/a.csv`` under ``src`` is matched as ``2024/a.csv``). ``.*\\.csv``
  therefore also matches objects in sub-folders; use ``[^/]*\\.csv`` for the folder only.
* "Folder marker" keys (ending in ``/``) never match.
* ``min_size``/``max_size`` are inclusive byte bounds. ``min_age``/``max_age`` are seconds
  (or :class:`~datetime.timedelta`) since the object's ``LastModified``: ``min_age`` lets a
  writer finish, ``max_age`` ignores stale drops. ``now`` may be injected (tests, replays).
* ``min_count``/``max_count`` (Open Task Framework's file-count condition) are inclusive
  bounds on **how many** objects match: a watch succeeds only while the count is within
  them (``min_count`` defaults to 1; more than ``max_count`` keeps it waiting, e.g. until
  a cleanup, and times out otherwise). :meth:`WatchCriteria.count_ok` is the one check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from handoff_provider.core.aws.errors import aws_error_types, failure_code
from handoff_provider.core.errors import ConfigurationError, StoreError, WatchTimeout
from handoff_provider.core.model.callbacks import LogFn

__all__ = [
    "MatchedObject",
    "WatchCriteria",
    "describe_count",
    "find_matching",
    "normalize_prefix",
    "wait_for_files",
]

Seconds = float | int | timedelta


@dataclass(frozen=True)
class MatchedObject:
    """One S3 object that satisfied a watch."""

    bucket: str
    key: str
    size: int
    last_modified: datetime

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (XCom, trigger events, ``handoff watch`` output)."""
        return {
            "uri": self.uri,
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "last_modified": self.last_modified.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatchedObject:
        return cls(
            bucket=data["bucket"],
            key=data["key"],
            size=int(data["size"]),
            last_modified=datetime.fromisoformat(data["last_modified"]),
        )


def _seconds(value: Seconds | None, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigurationError(f"file watch: {name} must not be negative")
    return seconds


@dataclass(frozen=True)
class WatchCriteria:
    """What makes an object a match (validated once, reused on every poke)."""

    bucket: str
    prefix: str
    file_regex: str
    min_size: int | None = None
    max_size: int | None = None
    min_age: float | None = None
    max_age: float | None = None
    min_count: int = 1
    max_count: int | None = None

    @classmethod
    def build(
        cls,
        bucket: str,
        prefix: str,
        file_regex: str,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
        min_age: Seconds | None = None,
        max_age: Seconds | None = None,
        min_count: int | None = None,
        max_count: int | None = None,
    ) -> WatchCriteria:
        """Validated criteria (:class:`ConfigurationError` naming the bad field)."""
        if not bucket:
            raise ConfigurationError("file watch: bucket is required")
        try:
            re.compile(file_regex)
        except (re.error, TypeError) as exc:
            raise ConfigurationError(
                f"file watch: file_regex is not a valid regex ({exc})"
            ) from None
        for name, size in (("min_size", min_size), ("max_size", max_size)):
            if size is not None and int(size) < 0:
                raise ConfigurationError(f"file watch: {name} must not be negative")
        if min_size is not None and max_size is not None and int(min_size) > int(max_size):
            raise ConfigurationError("file watch: min_size is greater than max_size")
        low, high = _seconds(min_age, "min_age"), _seconds(max_age, "max_age")
        if low is not None and high is not None and low > high:
            raise ConfigurationError("file watch: min_age is greater than max_age")
        fewest = 1 if min_count is None else _count(min_count, "min_count")
        most = None if max_count is None else _count(max_count, "max_count")
        if most is not None and fewest > most:
            raise ConfigurationError("file watch: min_count is greater than max_count")
        return cls(
            bucket=bucket,
            prefix=normalize_prefix(prefix),
            file_regex=file_regex,
            min_size=None if min_size is None else int(min_size),
            max_size=None if max_size is None else int(max_size),
            min_age=low,
            max_age=high,
            min_count=fewest,
            max_count=most,
        )

    @classmethod
    def from_fields(cls, source: Any, **overrides: Any) -> WatchCriteria:
        """:meth:`build` from the same-named attributes of ``source`` (a sensor, a trigger,
        an input spec), ``overrides`` (e.g. ``prefix=``) taking precedence."""
        values = {
            name: overrides[name] if name in overrides else getattr(source, name)
            for name in (field.name for field in fields(cls))
        }
        return cls.build(
            values.pop("bucket"), values.pop("prefix"), values.pop("file_regex"), **values
        )

    def count_ok(self, count: int) -> bool:
        """Whether ``count`` matching objects satisfy ``min_count``/``max_count``."""
        return count >= self.min_count and (self.max_count is None or count <= self.max_count)

    def wanted(self) -> str:
        """The count condition in words (``"at least 2"``, ``"2 to 5"``) for messages."""
        if self.max_count is None:
            return f"at least {self.min_count}"
        if self.max_count == self.min_count:
            return f"exactly {self.min_count}"
        return f"{self.min_count} to {self.max_count}"

    def accepts(self, key: str, size: int, last_modified: datetime, now: datetime) -> bool:
        if not key.startswith(self.prefix):
            return False
        relative = key[len(self.prefix) :]
        if not relative or relative.endswith("/"):
            return False
        if re.fullmatch(self.file_regex, relative) is None:
            return False
        if self.min_size is not None and size < self.min_size:
            return False
        if self.max_size is not None and size > self.max_size:
            return False
        age = (now - last_modified).total_seconds()
        if self.min_age is not None and age < self.min_age:
            return False
        return not (self.max_age is not None and age > self.max_age)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"file watch: {name} must be a whole number of at least 1")
    return value


def normalize_prefix(prefix: str | None) -> str:
    """``"/src"``/``"src"``/``"src/"`` -> ``"src/"``; ``""``/``None``/``"/"`` -> ``""``."""
    cleaned = (prefix or "").lstrip("/")
    if cleaned and not cleaned.endswith("/"):
        cleaned += "/"
    return cleaned


def _list_objects(s3_client: Any, bucket: str, prefix: str) -> Iterable[dict[str, Any]]:
    try:
        paginator = s3_client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", ())
    except aws_error_types() as exc:
        raise StoreError(
            f"file watch: cannot list s3://{bucket}/{prefix} ({failure_code(exc)})"
        ) from None


def find_matching(
    s3_client: Any,
    bucket: str,
    prefix: str,
    file_regex: str,
    *,
    min_size: int | None = None,
    max_size: int | None = None,
    min_age: Seconds | None = None,
    max_age: Seconds | None = None,
    now: datetime | None = None,
) -> list[MatchedObject]:
    """Every object under ``prefix`` satisfying the criteria (module doc), sorted by key.

    Lists all pages of ``ListObjectsV2``; ``now`` defaults to the current UTC time.
    """
    criteria = WatchCriteria.build(
        bucket,
        prefix,
        file_regex,
        min_size=min_size,
        max_size=max_size,
        min_age=min_age,
        max_age=max_age,
    )
    return find_with_criteria(s3_client, criteria, now=now)


def find_with_criteria(
    s3_client: Any, criteria: WatchCriteria, *, now: datetime | None = None
) -> list[MatchedObject]:
    """:func:`find_matching` with pre-validated criteria (used by the pollers)."""
    moment = now or datetime.now(timezone.utc)
    matches = [
        MatchedObject(
            bucket=criteria.bucket,
            key=item["Key"],
            size=int(item.get("Size", 0)),
            last_modified=item["LastModified"],
        )
        for item in _list_objects(s3_client, criteria.bucket, criteria.prefix)
        if criteria.accepts(item["Key"], int(item.get("Size", 0)), item["LastModified"], moment)
    ]
    return sorted(matches, key=lambda match: match.key)


def wait_for_files(
    s3_client: Any,
    bucket: str,
    prefix: str,
    file_regex: str,
    *,
    timeout: Seconds,
    poke_interval: Seconds = 30.0,
    min_count: int = 1,
    max_count: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    min_age: Seconds | None = None,
    max_age: Seconds | None = None,
    log: LogFn | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[MatchedObject]:
    """Poll :func:`find_matching` until ``min_count`` to ``max_count`` objects match.

    Returns the matches; raises :class:`WatchTimeout` (naming bucket, prefix and regex) when
    ``timeout`` seconds pass first. The last poll happens at the deadline, so a timeout of 0
    means "check once". ``clock``/``sleep`` are injectable for tests.
    """
    criteria = WatchCriteria.build(
        bucket,
        prefix,
        file_regex,
        min_size=min_size,
        max_size=max_size,
        min_age=min_age,
        max_age=max_age,
        min_count=min_count,
        max_count=max_count,
    )
    limit = _seconds(timeout, "timeout") or 0.0
    interval = _seconds(poke_interval, "poke_interval") or 0.0
    deadline = clock() + limit
    polls = 0
    while True:
        polls += 1
        matches = find_with_criteria(s3_client, criteria)
        if criteria.count_ok(len(matches)):
            return matches
        remaining = deadline - clock()
        if remaining <= 0:
            raise WatchTimeout(
                f"file watch: timed out after {limit:g}s ({polls} check(s)): "
                f"{describe_count(criteria, len(matches))}"
            )
        if log is not None:
            log(
                f"file watch: {describe_count(criteria, len(matches))}; next check in "
                f"{min(interval, remaining):g}s"
            )
        sleep(min(interval, remaining))


def describe_count(criteria: WatchCriteria, count: int) -> str:
    """``"1 object(s) matching '.*' under s3://b/p/ (wanted at least 2)"``: the status line
    of the watch loops (CLI, sensor, trigger)."""
    return (
        f"{count} object(s) matching {criteria.file_regex!r} under "
        f"s3://{criteria.bucket}/{criteria.prefix} (wanted {criteria.wanted()})"
    )
