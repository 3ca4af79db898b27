"""Where a stack's objects live in its bucket, and the environment that names the stack.

The one place that spells the keys and the environment variables; everything else
(stores, CLI, container contract, operators, links, lineage) asks this module::

    <stack>/files/...                  run-time files (``handoff files push``)
    <stack>/config/...                 config documents too large for SSM
    <stack>/runs/<run-key>/...         every run's artifacts (immutable once complete)
    <stack>/runs/<run-key>/run.json    the run record (tasks, stages, exit codes)
    <stack>/last/...                   a copy of the last published run (stores/artifacts.py)
    <stack>/last/state                 the published state the next run restores
    <stack>/lease.json                 the stack lease: one run of the stack at a time

Its compiled config is the SSM parameter ``/handoff/<stack>/config`` (the default name).
The stack is named by ``HANDOFF_STACK`` (else ``STACK_NAME``, the original handoff's
name), its bucket by ``HANDOFF_BUCKET`` (else ``S3_BUCKET_NAME``).

boto3-free so that the Airflow layer (links, outlets) can name the same keys at parse time.
"""

from __future__ import annotations

import os

from handoff_provider.core.model.run_key import check_run_key

#: The stack's name; the first set wins.
ENV_STACK = "HANDOFF_STACK"
STACK_ENV_NAMES = (ENV_STACK, "STACK_NAME")
#: The stack's S3 bucket; the first set wins.
ENV_BUCKET = "HANDOFF_BUCKET"
BUCKET_ENV_NAMES = (ENV_BUCKET, "S3_BUCKET_NAME")

#: Names inside a run's prefix (and ``last/``): the completion manifest (never an
#: artifact's name), the run record (written by the runner) and the state.
MANIFEST_NAME = "_HANDOFF_COMPLETE"
RUN_RECORD_NAME = "run.json"
STATE_NAME = "state"


def _first_env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def stack_name(stack: str | None = None) -> str | None:
    """``stack``, else ``HANDOFF_STACK``, else ``STACK_NAME`` (None when none is set)."""
    return stack or _first_env(STACK_ENV_NAMES)


def bucket_name(bucket: str | None = None) -> str | None:
    """``bucket``, else ``HANDOFF_BUCKET``, else ``S3_BUCKET_NAME`` (None when none is set)."""
    return bucket or _first_env(BUCKET_ENV_NAMES)


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def config_parameter(stack: str) -> str:
    """The default SSM parameter of the stack's compiled config."""
    return f"/handoff/{stack}/config"


def files_prefix(stack: str) -> str:
    return f"{stack}/files/"


def config_prefix(stack: str) -> str:
    return f"{stack}/config/"


def runs_root(stack: str) -> str:
    return f"{stack}/runs/"


def runs_prefix(stack: str, run_key: str) -> str:
    """``<stack>/runs/<run-key>/`` (the run key is checked: one safe path segment)."""
    return f"{runs_root(stack)}{check_run_key(run_key)}/"


def run_record_key(stack: str, run_key: str) -> str:
    return runs_prefix(stack, run_key) + RUN_RECORD_NAME


def last_prefix(stack: str) -> str:
    return f"{stack}/last/"


def last_state_key(stack: str) -> str:
    return last_prefix(stack) + STATE_NAME


def lease_key(stack: str) -> str:
    return f"{stack}/lease.json"


def artifacts_uris(bucket: str, stack: str, run_key: str) -> dict[str, str]:
    """Where a run's artifacts land: ``runs/<run key>/`` always, ``last/`` after a success."""
    return {
        "runs_uri": s3_uri(bucket, runs_prefix(stack, run_key)),
        "last_uri": s3_uri(bucket, last_prefix(stack)),
    }
