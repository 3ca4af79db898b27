"""Every exception handoff raises on purpose, in one hierarchy.

Every message is meant for a user: it names the file, field, stage or AWS resource at
fault and never contains a config value. The CLI prints a :class:`HandoffError` as one
line (exit 2 for bad input, 1 for a failed run); the Airflow layer fails the task with it.

::

    HandoffError
    ├── ProjectError              project.yml, config/ or a compiled document is invalid
    ├── TemplateError             a Jinja template failed to render
    │   ├── SsmLookupError        ssm('/param') could not read the parameter
    │   └── SecretLookupError     secret('name') could not produce a value
    ├── InstallError              a venv install command failed
    ├── ConfigurationError        a setting (stack, bucket, credentials) is missing or wrong
    │   └── HandoffDagError       the DAG factory's arguments can't make a DAG (factory/errors.py)
    ├── StoreError                an AWS store operation failed
    │   ├── TransferError         an S3 input/output transfer, post-copy or flag file failed
    │   ├── PublishConflict       another run published last/ meanwhile
    │   ├── LeaseHeld             the stack lease did not free up within the wait
    │   └── LeaseLost             our stack lease was taken over
    ├── WatchTimeout              no matching S3 object appeared in time
    ├── LambdaError               a Lambda invocation failed
    │   └── LambdaFunctionError   the function ran and reported an error
    ├── StageError                a pipeline stage exited non-zero, was killed or timed out
    └── RunFailed                 a run failed after its artifacts were archived
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handoff_provider.core.aws.lambda_invoke import LambdaResult


class HandoffError(Exception):
    """Base class of every error the core raises on purpose (the CLI prints it as one line)."""


class ProjectError(HandoffError):
    """project.yml, a config file or a compiled document is invalid."""


class TemplateError(HandoffError):
    """A Jinja template failed to render (undefined variable, syntax error)."""


class SsmLookupError(TemplateError):
    """``ssm(name)`` could not read the parameter (missing, denied, or a bad name)."""

    def __init__(self, message: str, *, parameter: str, code: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.code = code


class SecretLookupError(TemplateError):
    """``secret(name, path)`` could not produce a value (missing secret, version or path)."""

    def __init__(
        self, message: str, *, secret: str, path: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.secret = secret
        self.path = path
        self.code = code


class InstallError(HandoffError):
    """A venv install command failed."""


class ConfigurationError(HandoffError):
    """A required setting (stack, bucket, credentials) is missing or inconsistent."""


class StoreError(HandoffError):
    """An AWS store operation failed (SSM / S3), translated into a clear message."""


class TransferError(StoreError):
    """An input download, output upload, post-copy action or flag file failed."""


class PublishConflict(StoreError):
    """``last/`` is no longer what this run restored: another run published meanwhile."""


class LeaseHeld(StoreError):
    """The lease is held by someone else and did not free up within the wait."""


class LeaseLost(StoreError):
    """Our lease was taken over (we did not renew it in time): do not publish."""


class WatchTimeout(HandoffError):
    """No matching object appeared before the watch's timeout."""


class LambdaError(HandoffError):
    """The invocation itself failed (unknown function, access denied, throttled, ...)."""


class LambdaFunctionError(LambdaError):
    """A ``RequestResponse`` invocation ran and the function reported an error."""

    def __init__(self, message: str, *, result: LambdaResult) -> None:
        super().__init__(message)
        self.result = result


class StageError(HandoffError):
    """A pipeline stage (or a `commands:` step) exited non-zero, was killed or timed out."""

    def __init__(
        self,
        message: str,
        *,
        task: str,
        stage_index: int,
        command: str,
        exit_code: int | None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.task = task
        self.stage_index = stage_index
        self.command = command
        self.exit_code = exit_code
        self.timed_out = timed_out


class RunFailed(HandoffError):
    """A run failed after its artifacts were archived; ``outcome`` holds what happened."""

    def __init__(self, message: str, *, outcome: Any) -> None:
        super().__init__(message)
        self.outcome = outcome
