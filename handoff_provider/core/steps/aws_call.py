"""What the kinds that are one AWS call share (``lambda:``, ``s3_touch:``).

Such a task has a spec (``Task.step``: a frozen dataclass with ``from_mapping(data, *,
path)`` and ``render(render, *, path)``), no ``state`` (``state_from``/``state_on_failure``
are refused) and is recorded as one stage. The call runs in a thread so that the task's
``timeout`` and the run's terminate() stop waiting for it (a boto3 call can't be
interrupted: the thread is then left to finish on its own and its result ignored).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from handoff_provider.core.errors import HandoffError, ProjectError, StageError
from handoff_provider.core.steps.base import RunScope, TaskPlan

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.summary import StageResult, TaskResult

#: How often a wait checks for terminate() and the task timeout.
POLL_SECONDS = 0.05


def schema_keys(schema: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """``allowed``/``required`` of
    :func:`~handoff_provider.core.aws.s3_transfers.check_mapping_keys` from an object schema:
    the spec checks the keys its schema declares, nothing else."""
    return {"allowed": tuple(schema["properties"]), "required": tuple(schema.get("required", ()))}


class AwsCallKind:
    """A kind whose task is one AWS call; subclasses set ``key``, ``hint``, ``spec`` (the
    spec class, whose ``SCHEMA`` is the kind's schema fragment) and implement
    :meth:`label`, :meth:`cli_line` and :meth:`call`."""

    key = ""
    hint = ""
    spec: Any = None
    runs_processes = False
    needs_aws = True

    @property
    def schema(self) -> Mapping[str, Any]:
        return self.spec.SCHEMA

    def label(self, step: Any) -> str:
        """The step as written (unrendered): safe to show and record."""
        raise NotImplementedError

    def cli_line(self, task: Task) -> str:
        """The AWS CLI command doing the same as the (unrendered) step."""
        raise NotImplementedError

    def call(self, plan: TaskPlan, scope: RunScope, stage: StageResult) -> None:
        """Make the call (through :func:`wait_for`), log what it did; raises a
        ``HandoffError`` when it failed."""
        raise NotImplementedError

    def failed(self, exc: HandoffError, plan: TaskPlan, scope: RunScope) -> None:
        """Hook: the call raised ``exc`` (e.g. keep the function's error response)."""

    # -- loading and display

    def validate(self, entry: Mapping[str, Any], *, where: str) -> None:
        for key in ("state_from", "state_on_failure"):
            if key in entry:
                raise ProjectError(f"{where}.{key}: only applies to pipeline/commands tasks")
        self.spec.from_mapping(entry[self.key], path=f"{where}.{self.key}")

    def build(self, entry: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        step = self.spec.from_mapping(entry[self.key], path=f"{where}.{self.key}")
        return {"commands": (), "state_from": "none", "step": step}

    def describe(self, task: Task) -> list[str]:
        return [self.cli_line(task)]

    # -- a run

    def plan(self, task: Task, scope: RunScope) -> TaskPlan:
        index = scope.project.tasks.index(task)
        step = task.step.render(scope.render_for(f"tasks[{index}]."), path=task.kind)
        return TaskPlan(task=task, step=step, label=self.label(task.step))

    def run(self, plan: TaskPlan, scope: RunScope, result: TaskResult) -> None:
        from handoff_provider.core.run.summary import StageResult

        task, label = plan.task, plan.label
        scope.log(f"task '{task.name}': starting ({label})")
        stage = StageResult(index=1, command=label)
        result.stages = [stage]
        started = time.monotonic()
        error: StageError | None = None
        try:
            self.call(plan, scope, stage)
            stage.exit_code, stage.status = 0, "ok"
        except StageError as exc:
            error = exc
        except HandoffError as exc:
            self.failed(exc, plan, scope)
            error = StageError(
                f"task '{task.name}': {exc}",
                task=task.name,
                stage_index=1,
                command=label,
                exit_code=1,
            )
        finally:
            stage.seconds = round(time.monotonic() - started, 3)
            result.seconds = stage.seconds
        if error is not None:
            stage.status = "failed"
            stage.exit_code = error.exit_code
            result.status, result.error, result.timed_out = "failed", str(error), error.timed_out
            raise error
        result.status = "success"
        scope.log(f"task '{task.name}': succeeded in {result.seconds} s")


def wait_for(plan: TaskPlan, scope: RunScope, call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread; give up on the task's timeout or on terminate()
    (``StageError``, ``timed_out`` set for the timeout). Returns what ``call`` returned
    or raises what it raised."""
    task, label, control = plan.task, plan.label, scope.control
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # re-raised in the runner's thread
            box["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=target, name=f"handoff-{task.name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + task.timeout if task.timeout is not None else None
    while not done.wait(POLL_SECONDS):
        why, timed_out = None, False
        if control.terminated:
            why = f"terminated ({control.reason})"
        elif deadline is not None and time.monotonic() >= deadline:
            why, timed_out = f"timed out after {task.timeout:g} s", True
        if why is not None:
            raise StageError(
                f"task '{task.name}' ('{label}'): {why}",
                task=task.name,
                stage_index=1,
                command=label,
                exit_code=None,
                timed_out=timed_out,
            )
    if "error" in box:
        raise box["error"]
    return box["value"]
