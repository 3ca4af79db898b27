"""Pipeline runner vs ``sh -c 'a | b | c'``: bulk throughput and fixed overhead.

1. Throughput: ``head -c SIZE /dev/zero | cat | wc -c`` (default 1 GiB) through
   :class:`ProjectRunner` and through ``sh -c``, alternating, ``--rounds`` times.
   ``ratio`` = runner median / shell median (target <= 1.05: the data never goes
   through Python, only OS pipes).
2. Overhead: a trivial ``echo x | cat | cat`` both ways, ``--small-rounds`` times;
   ``overhead_ms`` = runner median - shell median (target <= 60 ms). The runner's time
   includes everything ``run()`` does: rendering, command lookup, the stderr threads,
   the state file rename and ``run.json``.

Usage: ``python bench/pipeline_throughput.py [--size 1G] [--rounds 5] [--small-rounds 20]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from handoff_provider.core.project import Command, Project, Task
from handoff_provider.core.runner import ProjectRunner
from handoff_provider.core.workspace import Workspace


def _size_bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def _project(stages: list[tuple[str, str]]) -> Project:
    commands = tuple(Command(command=c, args=a) for c, a in stages)
    return Project(tasks=(Task(name="bench", kind="pipeline", commands=commands),))


def _time_runner(project: Project, workspace: Workspace) -> float:
    started = time.perf_counter()
    ProjectRunner(project, workspace, {}, log=lambda _line: None).run()
    return time.perf_counter() - started


def _time_shell(line: str, workspace: Workspace) -> float:
    out = workspace.artifacts_dir / "shell.out"
    started = time.perf_counter()
    with open(out, "wb") as handle:
        subprocess.run(["sh", "-c", line], cwd=workspace.root, stdout=handle, check=True)
    return time.perf_counter() - started


def _compare(
    stages: list[tuple[str, str]], rounds: int, workspace: Workspace, *, show: bool
) -> tuple[list[float], list[float]]:
    project = _project(stages)
    line = " | ".join(f"{c} {a}".strip() for c, a in stages)
    runner_times: list[float] = []
    shell_times: list[float] = []
    for number in range(1, rounds + 1):
        # Alternate which goes first so neither always gets the warmer cache.
        if number % 2:
            runner_times.append(_time_runner(project, workspace))
            shell_times.append(_time_shell(line, workspace))
        else:
            shell_times.append(_time_shell(line, workspace))
            runner_times.append(_time_runner(project, workspace))
        if show:
            print(
                f"round {number}: runner={runner_times[-1]:.3f}s shell={shell_times[-1]:.3f}s",
                flush=True,
            )
    return runner_times, shell_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G", help="bytes pushed through (default 1G)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small-rounds", type=int, default=20)
    args = parser.parse_args(argv)
    size = _size_bytes(args.size)

    with tempfile.TemporaryDirectory(prefix="handoff-bench-") as tmp:
        workspace = Workspace(Path(tmp) / "ws").prepare()

        stages = [("head", f"-c {size} /dev/zero"), ("cat", ""), ("wc", "-c")]
        print(f"throughput: head -c {size} /dev/zero | cat | wc -c, {args.rounds} rounds")
        runner_t, shell_t = _compare(stages, args.rounds, workspace, show=True)
        if int(workspace.state_path.read_text().strip()) != size:
            print("error: the runner's state does not hold the byte count", file=sys.stderr)
            return 1
        runner_med, shell_med = statistics.median(runner_t), statistics.median(shell_t)
        print(f"runner_median_s={runner_med:.3f} shell_median_s={shell_med:.3f}")
        print(f"throughput_mib_s={size / (1 << 20) / runner_med:.0f}")
        ratio = runner_med / shell_med
        print(f"ratio={ratio:.3f}  (target <= 1.05)")

        small = [("echo", "x"), ("cat", ""), ("cat", "")]
        _compare(small, 3, workspace, show=False)  # warm-up
        runner_s, shell_s = _compare(small, args.small_rounds, workspace, show=False)
        overhead = (statistics.median(runner_s) - statistics.median(shell_s)) * 1000
        print(
            f"trivial pipeline, {args.small_rounds} rounds: runner_median_ms="
            f"{statistics.median(runner_s) * 1000:.1f} shell_median_ms="
            f"{statistics.median(shell_s) * 1000:.1f}"
        )
        print(f"overhead_ms={overhead:.1f}  (target <= 60)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
