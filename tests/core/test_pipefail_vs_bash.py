"""The runner's pipelines against ``bash -o pipefail -c``: the same exit status.

Each row is a pipeline of real commands, run through :func:`run_pipeline` and through
bash. bash's status is that of the rightmost failing stage; the runner's is the exit
code of its rightmost failing stage (0 when it succeeds). They must agree, except for
the one documented difference (module docstring of ``pipeline``): a writer killed by
``SIGPIPE`` because its reader finished successfully is not a failure for the runner,
where bash says 141. Rows where that rule applies are marked ``sigpipe=True``, and for
them bash must say 141 and the runner 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from handoff_provider.core.run.pipeline import StageSpec, run_pipeline

SH = shutil.which("sh") or "/bin/sh"

# (pipeline as a shell line with ' | ' between stages, sigpipe rule applies)
PIPELINES = [
    ("true", False),
    ("false", False),
    ("echo a | cat", False),
    ("echo a | false", False),
    ("false | cat", False),
    ("sh -c 'exit 3' | cat", False),
    ("cat /dev/null | sh -c 'exit 4'", False),
    ("sh -c 'exit 3' | sh -c 'exit 4'", False),
    ("sh -c 'exit 3' | cat | true", False),
    ("true | sh -c 'exit 5' | true", False),
    ("sh -c 'exit 2' | sh -c 'exit 7' | cat", False),
    ("yes | head -n 1", True),
    ("yes | head -c 10 | wc -c", True),
    ("yes | cat | head -n 2", True),
    ("seq 1 100000 | head -n 1", True),
    ("yes | head -n 1 | false", False),
    ("yes | sh -c 'exit 9'", False),
    ("sh -c 'kill -TERM $$' | cat", False),
    ("cat | sh -c 'kill -KILL $$'", False),
    ("echo x | grep y", False),
    ("echo x | grep x", False),
    ("printf 'a\\nb\\n' | sort -r | head -n 1", False),
    ("sh -c 'echo a; exit 1' | head -n 1", False),
    ("seq 1 10 | awk '{s+=$1} END {exit s % 256}'", False),
    ("seq 1 10 | tail -n 1", False),
    ("sh -c 'exit 255' | cat", False),
    ("cat /nonexistent-file | cat", False),
    ("true | true | true | true | sh -c 'exit 6'", False),
]


def bash_status(line: str, cwd: Path) -> int:
    return subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=cwd, check=False).returncode


def runner_status(line: str, cwd: Path) -> int:
    """Each stage is ``sh -c 'exec <stage>'``: sh splits the words as bash does, then
    becomes the command, so exit statuses and signals are the command's own."""
    stages = [
        StageSpec(argv=[SH, "-c", f"exec {part}"], env=dict(os.environ), label=part)
        for part in line.split(" | ")
    ]
    result = run_pipeline(stages, task="t", cwd=cwd, kill_grace=2.0)
    failed = [stage.exit_code for stage in result.stages if not stage.ok]
    return failed[-1] or 0 if failed else 0


@pytest.mark.parametrize(("line", "sigpipe"), PIPELINES, ids=[p[0] for p in PIPELINES])
def test_exit_status_agrees_with_bash_pipefail(line: str, sigpipe: bool, tmp_path: Path) -> None:
    expected = bash_status(line, tmp_path)
    got = runner_status(line, tmp_path)
    if sigpipe:
        assert (expected, got) == (141, 0), "the documented SIGPIPE rule"
    else:
        assert got == expected
