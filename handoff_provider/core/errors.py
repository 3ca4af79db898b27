"""Exceptions raised by the core. Every message is meant for a user: it names the file, field,
stage or AWS resource at fault and never contains a config value."""

from __future__ import annotations

from typing import Any


class HandoffError(Exception):
    """Base class of every error the core raises on purpose (the CLI prints it as one line)."""


class ProjectError(HandoffError):
    """project.yml, a config file or a compiled document is invalid."""


class TemplateError(HandoffError):
    """A Jinja template failed to render (undefined variable, syntax error)."""


class InstallError(HandoffError):
    """A venv install command failed."""


class ConfigurationError(HandoffError):
    """A required setting (stack, bucket, credentials) is missing or inconsistent."""


class StoreError(HandoffError):
    """An AWS store operation failed (SSM / S3), translated into a clear message."""


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
