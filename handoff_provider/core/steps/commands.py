"""Task kind ``commands:``: each command alone, in order, stopping at the first failure.

Command *n*'s stdout goes to ``artifacts/<task>.<n>.stdout.log`` (and, unless
``log_stdout: false``, to the log); the last command's may be the state. The task's
``timeout`` covers all of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoff_provider.core.steps.process import ProcessKind

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.pipeline import StageSpec


class CommandsKind(ProcessKind):
    key = "commands"
    hint = "'commands'"

    def groups(self, stages: list[StageSpec]) -> list[tuple[int, list[StageSpec]]]:
        return [(number, [spec]) for number, spec in enumerate(stages, start=1)]

    def stdout_log(self, task: Task, first: int) -> str:
        return f"{task.name}.{first}.stdout.log"

    def shell(self, lines: list[str]) -> list[str]:
        return list(lines)

    def echoes_stdout(self, task: Task) -> bool:
        return task.log_stdout


KIND = CommandsKind()
