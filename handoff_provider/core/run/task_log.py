"""What a process task writes to the run's log after it ran: its stage table and, for a
``commands:`` task, each command's stdout (not the state)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.summary import TaskResult

#: How much of a ``commands:`` command's stdout goes to the log (all of it to its file).
STDOUT_LOG_LIMIT = 64 * 1024


def log_stdout(task: Task, number: int, path: Path, log: Callable[[str], None]) -> None:
    """Command ``number``'s stdout (the file at ``path``) to the log, after it ran."""
    name = task.commands[number - 1].command
    try:
        with open(path, "rb") as handle:
            data = handle.read(STDOUT_LOG_LIMIT + 1)
    except OSError:
        return
    text = data[:STDOUT_LOG_LIMIT].decode("utf-8", errors="replace")
    for line in text.splitlines():
        log(f"[{task.name}:{number} {name} stdout] {line}")
    if len(data) > STDOUT_LOG_LIMIT:
        log(
            f"[{task.name}:{number} {name} stdout] ... (more in artifacts/{path.name}; "
            f"the log shows the first {STDOUT_LOG_LIMIT // 1024} KiB)"
        )


def log_task_table(result: TaskResult, log: Callable[[str], None]) -> None:
    """After a task: one line per stage (exit code, seconds, bytes out) and the state."""
    verb = "succeeded" if result.status == "success" else "failed"
    if result.state_from == "none":
        state = "state: not from this task"
    else:
        state = "state: artifacts/state " + ("written" if result.state_updated else "unchanged")
    log(f"task '{result.name}': {verb} in {result.seconds} s; {state}")
    log(f"  {'stage':>5}  {'exit':>4}  {'seconds':>8}  {'bytes out':>12}  command")
    for stage in result.stages:
        exit_code = "-" if stage.exit_code is None else str(stage.exit_code)
        if stage.signal:
            exit_code += f" ({stage.signal})"
        seconds = "-" if stage.seconds is None else f"{stage.seconds:.2f}"
        out = "-" if stage.bytes_out is None else f"{stage.bytes_out:,}"
        name = stage.command.split(" ", 1)[0]
        log(f"  {stage.index:>5}  {exit_code:>4}  {seconds:>8}  {out:>12}  {name}")
