"""The state-file choreography of one process task (``pipeline:`` / ``commands:``).

The last stage's output becomes ``artifacts/state`` according to the task's
``state_from`` (see ``runner.py``): stdout is written to a temp file in ``artifacts/``
and renamed to ``state`` only when the task succeeded; ``stderr`` is copied from the last
stage's stderr log on success; a failed task keeps the previous state, or with
``state_on_failure: last_line`` the last complete line of its state output. What a failed
task wrote to its state stdout is kept as its stdout log, for debugging.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from handoff_provider.core.errors import StageError

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.summary import TaskResult
    from handoff_provider.core.run.workspace import Workspace


def state_temp(artifacts: Path) -> tuple[int, Path]:
    """A new temp file next to ``artifacts/state`` (fd, path); the caller closes the fd."""
    for _ in range(100):
        path = artifacts / f".state.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        return fd, path
    raise OSError(f"could not create a temporary state file in {artifacts}")


class TaskState:
    """One task's state output, from the stages' stdout to ``artifacts/state``.

    ``last_stage`` is ``(number, label)`` of the task's last stage (named in errors).
    Use :meth:`open_stdout` for each pipeline's stdout, :meth:`finish` after the stages
    and :meth:`discard` in a ``finally``.
    """

    def __init__(self, workspace: Workspace, task: Task, last_stage: tuple[int, str]) -> None:
        self.workspace = workspace
        self.task = task
        self.last_stage = last_stage
        self.last_stderr = workspace.artifacts_dir / f"{task.name}.{last_stage[0]}.stderr.log"
        self._tmp: Path | None = None
        self._stdout_log: Path | None = None  # where the state's stdout goes if the task fails

    def is_state(self, last: bool) -> bool:
        """Whether the stdout of the last (``last``) pipeline is the state."""
        return last and self.task.state_from == "stdout"

    def open_stdout(self, stdout_log: Path, *, last: bool) -> int:
        """The fd a pipeline's stdout goes to: the state temp file for the last one of a
        ``state_from: stdout`` task, else ``stdout_log`` (the caller closes it)."""
        if self.is_state(last):
            fd, self._tmp = state_temp(self.workspace.artifacts_dir)
            self._stdout_log = stdout_log
            return fd
        return os.open(stdout_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)

    def finish(
        self, result: TaskResult, error: StageError | None, log: Callable[[str], None]
    ) -> StageError | None:
        """After the stages: write the state (``error`` is ``None``) or keep what a failed
        task may keep. Returns the task's error (a state that can't be written is one)."""
        if error is None:
            error = self._commit(result)
        elif self.task.state_on_failure == "last_line":
            source = self._tmp if self.task.state_from == "stdout" else self.last_stderr
            if source is not None and self._keep_last_line(source):
                result.state_updated = result.partial_state = True
                log(f"task '{self.task.name}': failed; kept its last complete state line")
        if error is not None and self._tmp is not None and self._stdout_log is not None:
            # Keep what the failed stage wrote for debugging, never as the state.
            with contextlib.suppress(OSError):
                os.replace(self._tmp, self._stdout_log)
                self._tmp = None
        return error

    def discard(self) -> None:
        """Remove a temp file left behind (a failure or an exception)."""
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)

    def _commit(self, result: TaskResult) -> StageError | None:
        state_path = self.workspace.state_path
        try:
            if self.task.state_from == "stdout" and self._tmp is not None:
                os.replace(self._tmp, state_path)
                self._tmp = None
                result.state_updated = True
                if self._stdout_log is not None:  # a failed earlier run's output: stale now
                    self._stdout_log.unlink(missing_ok=True)
            elif self.task.state_from == "stderr":
                fd, self._tmp = state_temp(self.workspace.artifacts_dir)
                os.close(fd)
                shutil.copyfile(self.last_stderr, self._tmp)
                os.replace(self._tmp, state_path)
                self._tmp = None
                result.state_updated = True
        except OSError as exc:  # a command removed artifacts/ or made state a dir
            return StageError(
                f"task '{self.task.name}': cannot write artifacts/state "
                f"({exc.strerror or type(exc).__name__}; did a command remove "
                "artifacts/ or put a directory at artifacts/state?)",
                task=self.task.name,
                stage_index=self.last_stage[0],
                command=self.last_stage[1],
                exit_code=None,
            )
        return None

    def _keep_last_line(self, source: Path) -> bool:
        """``artifacts/state`` := the last complete non-blank line of ``source``."""
        last: bytes | None = None
        try:
            with open(source, "rb") as handle:
                for line in handle:
                    if line.endswith(b"\n") and line.strip():
                        last = line
        except OSError:
            return False
        if last is None:
            return False
        fd, tmp = state_temp(self.workspace.artifacts_dir)
        try:
            os.write(fd, last)
        finally:
            os.close(fd)
        os.replace(tmp, self.workspace.state_path)
        return True
