"""What the two kinds running processes share: ``pipeline:`` and ``commands:``.

A process task is a list of stages (``command``, ``args``, ``venv``, ``installs``). Its
plan resolves every command and renders every ``args`` before the run's first process
starts; its run spawns them with :func:`~handoff_provider.core.run.pipeline.run_pipeline` (as
one pipeline, or one command after the other: :meth:`ProcessKind.groups`) and leaves the
last stage's output as ``artifacts/state``
(:class:`~handoff_provider.core.run.task_state.TaskState`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.errors import ProjectError, StageError
from handoff_provider.core.load.safe_tree import shown
from handoff_provider.core.run.task_log import log_stdout, log_task_table
from handoff_provider.core.steps.base import RunScope, TaskPlan

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Command, Task
    from handoff_provider.core.run.pipeline import PipelineResult, StageSpec
    from handoff_provider.core.run.summary import TaskResult

#: The schema fragment of a process task's value (its stages).
STAGES_SCHEMA = {"$ref": "#/$defs/stages"}
_VENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# --------------------------------------------------------------------------- loading


def check_venv_name(name: str, where: str) -> None:
    """``ProjectError`` unless ``name`` is a venv name (a plain name, no path)."""
    if not _VENV_NAME.fullmatch(name):
        raise ProjectError(
            f"{where}: {name!r} is not a valid venv name (letters, digits, '.', '_' and '-'; "
            "./venv/<name> is read as <name>; no other paths)"
        )


def check_stages(stages: list[Mapping[str, Any]], where: str) -> None:
    """A list of stages (a task's, or the seed form's ``commands:``): ``installs`` need a
    ``venv``, ``args`` without templates must split into words, venv names are names."""
    for index, stage in enumerate(stages):
        at = f"{where}[{index}]"
        if stage.get("installs") and "venv" not in stage:
            raise ProjectError(f"{at}.installs: needs a 'venv' to install into")
        problem = _args_problem(stage.get("args", ""))
        if problem:
            raise ProjectError(f"{at}.args: {problem}")
        if "venv" in stage:
            check_venv_name(stage["venv"], f"{at}.venv")


def _args_problem(args: str) -> str | None:
    """Why ``args`` without templates can't be split into words (checked at load time, so
    ``config push`` refuses it rather than the run failing later). Args with templates
    are split after rendering (:func:`handoff_provider.core.load.templating.split_args`)."""
    from handoff_provider.core.load.shell_words import split_words
    from handoff_provider.core.load.templating import has_markers

    if not args or has_markers(args):
        return None
    try:
        split_words(args)
    except ValueError as exc:
        # shlex's messages ("No closing quotation", "No escaped character") hold no value.
        return f"cannot split args into words: {exc}"
    return None


def commands_of(stages: list[Mapping[str, Any]], where: str) -> tuple[Command, ...]:
    """The model's commands of a (validated) list of stages."""
    from handoff_provider.core.model.project import Command

    return tuple(
        Command(s["command"], s.get("args", ""), s.get("venv"), location=f"{where}[{i}]")
        for i, s in enumerate(stages)
    )


def shell_word(command: Command) -> str:
    """A stage as the shell words doing the same (venv programs shown by their path)."""
    program = command.command
    if command.venv:
        if "/" in program:
            program = f"PATH=venvs/{command.venv}/bin:$PATH {program}"
        else:
            program = f"venvs/{command.venv}/bin/{program}"
    return f"{program} {command.args}" if command.args else program


def command_label(command: Command) -> str:
    """The command as written: name + unrendered args template (safe to show), on one
    line (a newline in ``args`` is shown as ``\\n``)."""
    label = f"{command.command} {command.args}".rstrip() if command.args else command.command
    return shown(label)


# --------------------------------------------------------------------------- the kind


class ProcessKind:
    """The shared behaviour of ``pipeline`` and ``commands`` (see the module docstring);
    a subclass says how the stages are grouped into pipelines and where stdout goes."""

    key = ""
    hint = ""
    schema: Mapping[str, Any] = STAGES_SCHEMA
    runs_processes = True
    needs_aws = False

    def groups(self, stages: list[StageSpec]) -> list[tuple[int, list[StageSpec]]]:
        """The pipelines to run in order, each as ``(number of its first stage, stages)``."""
        raise NotImplementedError

    def stdout_log(self, task: Task, first: int) -> str:
        """The ``artifacts/`` file taking the stdout of the pipeline starting at ``first``."""
        raise NotImplementedError

    def shell(self, lines: list[str]) -> list[str]:
        """Stage lines as the shell lines running them."""
        raise NotImplementedError

    def echoes_stdout(self, task: Task) -> bool:
        """Whether a pipeline's stdout (when not the state) is also logged."""
        return False

    # -- loading and display

    def validate(self, entry: Mapping[str, Any], *, where: str) -> None:
        if entry.get("state_on_failure") == "last_line" and entry.get("state_from") == "none":
            raise ProjectError(
                f"{where}.state_on_failure: last_line needs a state (state_from stdout|stderr)"
            )
        check_stages(entry[self.key], f"{where}.{self.key}")

    def build(self, entry: Mapping[str, Any], *, where: str) -> dict[str, Any]:
        return {
            "commands": commands_of(entry[self.key], f"{where}.{self.key}"),
            "state_from": entry.get("state_from", "stdout"),
            "state_on_failure": entry.get("state_on_failure", "discard"),
            "log_stdout": entry.get("log_stdout", True),
        }

    def describe(self, task: Task) -> list[str]:
        return self.shell([shell_word(command) for command in task.commands])

    # -- a run

    def plan(self, task: Task, scope: RunScope) -> TaskPlan:
        from handoff_provider.core.load.templating import render_text, split_args
        from handoff_provider.core.run.pipeline import StageSpec

        plan = TaskPlan(task=task)
        for number, command in enumerate(task.commands, start=1):
            label = command_label(command)
            where = f"{scope.source}: {command.location or f'{task.name}[{number}]'}.args"
            args = render_text(
                command.args, scope.variables, source=where, functions=scope.template_functions
            )
            words = split_args(args, source=where)
            fail = _stage_failure(task, number, label)
            venv_dir = _venv_dir(command, scope.venvs, fail)
            env = _stage_env(scope.base_env, venv_dir)
            program = _resolve(command, venv_dir, env, scope, fail)
            plan.stages.append(StageSpec(argv=[program, *words], env=env, label=label))
            plan.rendered.append(scope.redact(shlex.join([command.command, *words])))
        return plan

    def run(self, plan: TaskPlan, scope: RunScope, result: TaskResult) -> None:
        from handoff_provider.core.run.summary import StageResult
        from handoff_provider.core.run.task_state import TaskState

        task, artifacts = plan.task, scope.workspace.artifacts_dir
        count = len(plan.stages)
        scope.log(f"task '{task.name}': starting ({task.kind}, {count} stage{'s' * (count != 1)})")
        for line in self.shell(plan.rendered):
            scope.log(f"  $ {line}")
        started = time.monotonic()
        result.stages = [
            StageResult(index=n, command=spec.label, rendered=line)
            for n, (spec, line) in enumerate(zip(plan.stages, plan.rendered, strict=True), start=1)
        ]
        with contextlib.suppress(OSError):  # an earlier task may have removed it
            artifacts.mkdir(exist_ok=True)
        state = TaskState(scope.workspace, task, (count, plan.stages[-1].label))
        deadline = started + task.timeout if task.timeout is not None else None
        error: StageError | None = None
        try:
            for first, specs in self.groups(plan.stages):
                error = self._run_group(plan, scope, result, state, first, specs, deadline)
                if error is not None:
                    break
            error = state.finish(result, error, scope.log)
        finally:
            state.discard()
            result.seconds = round(time.monotonic() - started, 3)
        result.status = "failed" if error is not None else "success"
        result.error = str(error) if error is not None else None
        log_task_table(result, scope.log)
        if error is not None:
            raise error

    def _run_group(
        self,
        plan: TaskPlan,
        scope: RunScope,
        result: TaskResult,
        state: Any,
        first: int,
        specs: list[StageSpec],
        deadline: float | None,
    ) -> StageError | None:
        """One pipeline of the task (stages ``first``...); its error, if it failed."""
        from handoff_provider.core.run.pipeline import run_pipeline

        task, artifacts = plan.task, scope.workspace.artifacts_dir
        last = first + len(specs) - 1 == len(plan.stages)
        stdout_log = artifacts / self.stdout_log(task, first)
        fd = state.open_stdout(stdout_log, last=last)
        try:
            outcome = run_pipeline(
                specs,
                task=task.name,
                cwd=scope.workspace.root,
                stdout=fd,
                stderr_logs=[
                    artifacts / f"{task.name}.{n}.stderr.log"
                    for n in range(first, first + len(specs))
                ],
                on_stderr_line=_stderr_callback(task, scope),
                timeout=task.timeout,
                deadline=deadline,
                kill_grace=scope.kill_grace,
                control=scope.control,
                first_number=first,
            )
        finally:
            os.close(fd)
        _record(result, outcome)
        if self.echoes_stdout(task) and not state.is_state(last):
            log_stdout(task, first, stdout_log, scope.log)
        if outcome.error is not None:
            result.timed_out = outcome.timed_out
        return outcome.error


# --------------------------------------------------------------------------- planning


def _stage_failure(task: Task, number: int, label: str) -> Callable[[str], StageError]:
    def fail(why: str) -> StageError:
        return StageError(
            f"task '{task.name}' stage {number} ('{label}'): {why}",
            task=task.name,
            stage_index=number,
            command=label,
            exit_code=None,
        )

    return fail


def _venv_dir(
    command: Command, venvs: Mapping[str, Path], fail: Callable[[str], StageError]
) -> Path | None:
    if not command.venv:
        return None
    venv_dir = venvs.get(command.venv)
    if venv_dir is None or not (venv_dir / "bin").is_dir():
        raise fail(f"venv '{command.venv}' is not installed (run `handoff workspace install`)")
    return venv_dir


def _stage_env(base: Mapping[str, str], venv_dir: Path | None) -> dict[str, str]:
    env = dict(base)
    if venv_dir is not None:
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = str(venv_dir / "bin") + os.pathsep + env.get("PATH", os.defpath)
    return env


def _resolve(
    command: Command,
    venv_dir: Path | None,
    env: Mapping[str, str],
    scope: RunScope,
    fail: Callable[[str], StageError],
) -> str:
    """The executable a stage runs: a workspace path, the venv's, or found on ``PATH``."""
    name = command.command
    if "/" in name:
        path = Path(name) if os.path.isabs(name) else scope.workspace.root / name
        if not path.is_file():
            raise fail(f"command '{name}' not found (no such file in the workspace)")
        if not os.access(path, os.X_OK):
            _make_script_executable(path, scope, fail)
        return str(path)
    if venv_dir is not None:
        candidate = venv_dir / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        if candidate.is_symlink():  # dangling: never fall back to the system's python3
            raise fail(
                f"venv '{command.venv}': bin/{name} is a broken link (the interpreter "
                "the venv was built from moved?); run `handoff workspace install` again"
            )
    found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        where = f"in venv '{command.venv}' or on PATH" if command.venv else "on PATH"
        raise fail(f"command '{name}' not found {where}")
    return found


def _make_script_executable(path: Path, scope: RunScope, fail: Callable[[str], StageError]) -> None:
    """A workspace script that lost its executable bit (files synced from S3 do) but
    starts with ``#!`` is made executable; anything else is refused."""
    root = scope.workspace.root.resolve()
    try:
        path.resolve().relative_to(root)
        with open(path, "rb") as handle:
            is_script = handle.read(2) == b"#!"
    except (ValueError, OSError):
        is_script = False
    if not is_script:
        raise fail(f"command '{path}' is not executable")
    mode = path.stat().st_mode
    os.chmod(path, mode | stat.S_IXUSR | (stat.S_IXGRP if mode & stat.S_IRGRP else 0))
    scope.log(f"made {path.relative_to(scope.workspace.root)} executable (it starts with #!)")


# --------------------------------------------------------------------------- running


def _stderr_callback(task: Task, scope: RunScope) -> Callable[[int, str], None]:
    names = [c.command for c in task.commands]
    on_line = scope.on_stderr_line

    def callback(number: int, line: str) -> None:
        on_line(task.name, number, names[number - 1], line)

    return callback


def _record(result: TaskResult, outcome: PipelineResult) -> None:
    from handoff_provider.core.run.summary import StageResult

    for stage in outcome.stages:
        recorded = StageResult.from_outcome(stage)
        recorded.rendered = result.stages[stage.number - 1].rendered
        result.stages[stage.number - 1] = recorded
