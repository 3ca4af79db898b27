"""Which ECS failures are worth a new task: capacity shortages and transient start failures.

An ECS task can fail for reasons that have nothing to do with the project: ``RunTask``
answers with a capacity failure, or the task stops before the container ran because its
network interface, its ephemeral storage, its image pull or its secrets timed out (see
https://docs.aws.amazon.com/AmazonECS/latest/developerguide/stopped-task-error-codes.html).
Starting the same task again usually works, so the operator retries those - and only those:
a container that ran and exited non-zero is the project's failure, never retried here.

No Airflow here: plain functions over the ECS API's own dictionaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

#: ``RunTask`` failures (``failures[].reason``) that mean "no capacity now, try again".
_CAPACITY = re.compile(
    r"capacity is unavailable|insufficient capacity|RESOURCE:(CPU|MEMORY|ENI|GPU)"
    r"|AGENT|no container instances",
    re.IGNORECASE,
)
#: Stop reasons of a task that never ran its container because of a transient AWS problem.
_TRANSIENT_STOP = re.compile(
    r"timeout waiting for (network interface|eni|ephemeral ?storage)[\w ]* provisioning"
    r"|CannotPullContainerError:.*(i/o timeout|\bEOF\b|context deadline exceeded)"
    r"|ResourceInitializationError:.*(secrets?|ssm|secretsmanager).*"
    r"(timeout|timed out|context deadline exceeded)",
    re.IGNORECASE | re.DOTALL,
)


def capacity_failure(failures: Iterable[Mapping[str, Any]]) -> str | None:
    """The first ``RunTask`` failure that is a capacity shortage, as ``arn: reason``."""
    for failure in failures:
        reason = str(failure.get("reason", ""))
        if _CAPACITY.search(reason) or _CAPACITY.search(str(failure.get("detail", ""))):
            detail = failure.get("detail")
            return f"{reason} ({detail})" if detail else reason
    return None


def transient_stop(task: Mapping[str, Any]) -> str | None:
    """Why a stopped task failed transiently (its stop reason or a container's), else None.

    Only a task whose containers never ran qualifies: a container with an exit code ran
    the project, and its failure is the project's.
    """
    if task.get("lastStatus") != "STOPPED":
        return None
    containers = task.get("containers", [])
    if any(c.get("exitCode") is not None for c in containers):
        return None
    reasons = [str(task.get("stoppedReason", ""))]
    reasons += [str(c.get("reason", "")) for c in containers]
    for reason in reasons:
        if reason and _TRANSIENT_STOP.search(reason):
            return reason
    return None
