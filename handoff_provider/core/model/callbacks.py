"""The callbacks the core takes from its front ends (the CLI, the Airflow operators)."""

from __future__ import annotations

from collections.abc import Callable

#: One line of progress for the user (no trailing newline); the CLI writes it to stderr,
#: the operators to the task log.
LogFn = Callable[[str], None]

#: ``on_stderr_line(task, stage_number, command_name, line)``: one stderr line of a stage.
StderrLineFn = Callable[[str, int, str, str], None]
