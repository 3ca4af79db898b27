"""Helpers for the runtime tests (pipeline, runner, workspace, venv cache)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from handoff_provider.core.model.project import Command, EnvVar, Project, Task
from handoff_provider.core.run.pipeline import StageSpec


def stage(*argv: str, env: dict[str, str] | None = None) -> StageSpec:
    """A pipeline stage running ``argv`` (``argv[0]`` looked up on PATH)."""
    program = shutil.which(argv[0]) or argv[0]
    return StageSpec(argv=[program, *argv[1:]], env=env or dict(os.environ), label=" ".join(argv))


def sh(script: str) -> StageSpec:
    """A ``sh -c script`` stage whose label is the script itself."""
    return StageSpec(
        argv=[shutil.which("sh") or "/bin/sh", "-c", script], env=dict(os.environ), label=script
    )


def cmd(command: str, args: str = "", venv: str | None = None) -> Command:
    return Command(command=command, args=args, venv=venv)


def task(
    name: str,
    *commands: Command,
    kind: str = "pipeline",
    active: bool = True,
    timeout: float | None = None,
    state_from: str = "stdout",
) -> Task:
    return Task(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        commands=tuple(commands),
        active=active,
        timeout=timeout,
        state_from=state_from,  # type: ignore[arg-type]
    )


def project(
    *tasks: Task,
    envs: Iterable[EnvVar] = (),
    vars: dict[str, str] | None = None,
    installs: dict[str, tuple[str, ...]] | None = None,
) -> Project:
    return Project(
        tasks=tuple(tasks), envs=tuple(envs), vars=dict(vars or {}), installs=dict(installs or {})
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, timeout: float = 3.0) -> bool:
    """True once ``pid`` is gone (or a zombie); False if it still runs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def read_pid(path: Path, timeout: float = 5.0) -> int:
    """Wait for a pid file a stage writes, return the pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")
