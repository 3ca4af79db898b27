"""Where a stack's objects live in its bucket: the one place that names the keys.

::

    <stack>/files/...            run-time files (``handoff files push``)
    <stack>/config/...           config documents too large for SSM
    <stack>/runs/<run-key>/...   every run's artifacts (immutable once complete)
    <stack>/last/...             a copy of the last published run (see stores/artifacts.py)
    <stack>/lease.json           the stack lease: one run of the stack at a time

boto3-free so that the Airflow layer (links, outlets) can name the same keys.
"""

from __future__ import annotations

from handoff_provider.core.model.run_key import check_run_key


def files_prefix(stack: str) -> str:
    return f"{stack}/files/"


def config_prefix(stack: str) -> str:
    return f"{stack}/config/"


def runs_root(stack: str) -> str:
    return f"{stack}/runs/"


def runs_prefix(stack: str, run_key: str) -> str:
    return f"{runs_root(stack)}{check_run_key(run_key)}/"


def last_prefix(stack: str) -> str:
    return f"{stack}/last/"


def lease_key(stack: str) -> str:
    return f"{stack}/lease.json"
