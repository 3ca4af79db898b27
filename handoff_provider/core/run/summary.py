"""What a run did: the summary recorded in ``artifacts/run.json`` (and returned, logged,
pushed to XCom). It holds commands as written, exit codes, durations, byte counts and
error messages; never rendered args, env values or config file contents.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.atomic_files import READABLE, replace_file
from handoff_provider.core.run.workspace import Workspace

if TYPE_CHECKING:
    from handoff_provider.core.run.pipeline import StageOutcome

#: Why a run hit by the caller's ``timeout_errors`` ended (Airflow's execution_timeout, ...).
CALLER_TIMEOUT = "stopped by the caller's time limit"


@dataclass
class StageResult:
    """One stage (or one command of a ``commands:`` task).

    ``exit_code`` uses the shell convention (128 + N when killed by signal N, ``signal``
    then names it); ``None`` when the stage never ran. ``status``: ``ok``, ``sigpipe``
    (killed by SIGPIPE because its reader finished early: not a failure), ``failed``,
    ``not_run``. ``bytes_out``: bytes written to the next stage / the output file, when
    measurable (see ``pipeline.py``).
    """

    index: int
    command: str
    exit_code: int | None = None
    signal: str | None = None
    seconds: float | None = None
    bytes_out: int | None = None
    status: str = "not_run"
    #: The stage as the shell line doing the same, templates rendered, secrets masked.
    rendered: str | None = None

    @classmethod
    def from_outcome(cls, outcome: StageOutcome) -> StageResult:
        if outcome.returncode is None:
            status = "not_run"
        elif outcome.excused_sigpipe:
            status = "sigpipe"
        else:
            status = "ok" if outcome.returncode == 0 else "failed"
        return cls(
            index=outcome.number,
            command=outcome.label,
            exit_code=outcome.exit_code,
            signal=outcome.signal_name,
            seconds=round(outcome.seconds, 3) if outcome.returncode is not None else None,
            bytes_out=outcome.bytes_out,
            status=status,
        )


@dataclass
class TaskResult:
    """One task: ``status`` is ``success``, ``failed``, ``skipped`` (inactive) or
    ``not_run`` (an earlier task failed / the run was terminated)."""

    name: str
    kind: str
    status: str = "not_run"
    state_from: str = "stdout"
    state_updated: bool = False
    #: A failed task kept its last complete state line (``state_on_failure: last_line``).
    partial_state: bool = False
    timed_out: bool = False
    seconds: float | None = None
    error: str | None = None
    stages: list[StageResult] = field(default_factory=list)


#: ``RunSummary.status`` values of a finished run that did not succeed.
FAILED_STATUSES = ("failed", "timed_out", "killed")


@dataclass
class RunSummary:
    """What a run did; :meth:`to_dict` is JSON-safe and holds no secret.

    ``status``: ``running`` (written when the run starts), then ``success``, ``failed``,
    ``timed_out`` (a task's ``timeout`` or the caller's, e.g. Airflow's
    ``execution_timeout``) or ``killed`` (terminated: SIGTERM, Airflow's ``on_kill``);
    ``error`` says why. ``run_key`` and ``data_interval`` (``{"start", "end"}``, ISO
    strings or None) identify the run, ``origin`` who started it (``RunContext.origin``).
    ``transfers`` (only for a project with ``transfers:``): ``{"inputs", "outputs",
    "flags", "post_copy"}``, lists of ``{"uri", "status", ...}``."""

    status: str = "running"
    error: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    ended_at: datetime | None = None
    tasks: list[TaskResult] = field(default_factory=list)
    transfers: dict[str, Any] | None = None
    run_key: str | None = None
    data_interval: dict[str, str | None] | None = None
    origin: dict[str, str | int] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    @property
    def keeps_partial_state(self) -> bool:
        """A failed run whose state is the last complete line of a failed task's output."""
        return not self.succeeded and any(task.partial_state for task in self.tasks)

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "error": self.error,
            "run_key": self.run_key,
            "data_interval": self.data_interval,
            "started_at": self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "seconds": self.seconds,
            "tasks": [asdict(task) for task in self.tasks],
        }
        if self.transfers is not None:
            data["transfers"] = self.transfers
        if self.origin is not None:
            data["origin"] = self.origin
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        """Read back ``artifacts/run.json`` (e.g. to know whether the last run succeeded)."""
        task_fields = {f.name for f in dataclasses.fields(TaskResult)} - {"stages"}
        stage_fields = {f.name for f in dataclasses.fields(StageResult)}
        tasks = []
        for task in data.get("tasks", []):
            stages = [
                StageResult(**{k: v for k, v in stage.items() if k in stage_fields})
                for stage in task.get("stages", [])
            ]
            fields = {k: v for k, v in task.items() if k in task_fields}
            tasks.append(TaskResult(**fields, stages=stages))
        ended = data.get("ended_at")
        return cls(
            status=data["status"],
            error=data.get("error"),
            started_at=datetime.fromisoformat(data["started_at"]),
            ended_at=datetime.fromisoformat(ended) if ended else None,
            tasks=tasks,
            transfers=data.get("transfers"),
            run_key=data.get("run_key"),
            data_interval=data.get("data_interval"),
            origin=data.get("origin"),
        )

    def finish(self, status: str, error: str | None = None) -> None:
        """Record the end of the run (``ended_at`` now unless already set)."""
        self.status = status
        if error is not None or status == "success":
            self.error = error
        if self.ended_at is None:
            self.ended_at = datetime.now(timezone.utc)


def write_run_summary(workspace: Workspace, summary: RunSummary) -> None:
    """Write ``artifacts/run.json`` atomically (``artifacts/`` re-created if a command
    removed it). Raises ``OSError`` when it can't be written."""
    path = workspace.run_summary_path
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(summary.to_dict(), indent=2) + "\n"
    replace_file(path, data.encode("utf-8"), mode=READABLE)  # its values are masked


def describe_exception(exc: BaseException, what: str = "internal error") -> str:
    """``internal error (OSError: [Errno 2] ...)``: what ended a run other than a handoff
    error (pass it through the run's redactor before showing it)."""
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{what} ({name}: {text})" if text else f"{what} ({name})"


def read_run_summary(workspace: Workspace | Path) -> RunSummary | None:
    """The summary of the last run in ``workspace`` (``None`` when there is none)."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    try:
        data = json.loads(ws.run_summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return RunSummary.from_dict(data)


@dataclass(frozen=True)
class RunReport:
    """A run as its caller reports it: the XCom summary of ``HandoffRunOperator`` (from
    ``RunOutcome``) and of ``HandoffEcsRunOperator`` (from the container's archived
    ``run.json``), the ``handoff_outcome`` of a failed try, the asset event's source.

    ``record`` is the run's own record (``RunSummary.to_dict()`` or ``run.json``; None
    when none was archived). ``status`` is the run's overall status, which can differ
    from its commands' (``commands_status``: the record's): commands that succeeded but
    whose archive failed make a ``failed`` run. ``details`` are where and how it ran
    (the workspace, the ECS task, ...). :meth:`to_dict` holds no secret: the record
    never does, and neither do the details.
    """

    status: str
    run_key: str | None
    record: Mapping[str, Any] | None = None
    artifacts: Mapping[str, Any] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record = dict(self.record or {})
        return {
            **record,
            "status": self.status,
            "commands_status": record.get("status"),
            "run_key": self.run_key,
            **self.details,
            "artifacts": dict(self.artifacts) if self.artifacts is not None else None,
        }
