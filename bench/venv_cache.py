"""Venv cache: cold install with uv vs pip, then a warm ``handoff workspace install``.

The project is the Singer example (``examples/projects/02_singer_csv``: two venvs, each
``pip install --no-index ./files/singer_demo``, no network). Every cold round uses a
fresh venv cache *and* fresh uv/pip caches, so nothing is reused between rounds.

Prints ``cold_uv_s`` and ``cold_pip_s`` (medians of ``--rounds`` cold installs
through the ``handoff`` CLI; ``HANDOFF_USE_UV=0`` forces pip), ``ratio`` = uv / pip
(ours over the pip baseline, lower is better), and ``warm_s``: the median wall time of
the CLI when the venvs are already cached (target <= 0.3 s; it includes the
interpreter start and imports). Every figure is a whole ``handoff`` process.

Usage: ``python bench/venv_cache.py [--rounds 3] [--warm-rounds 10]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO, compile_bytecode, handoff_script

from handoff_provider.core.run.workspace import find_uv

PROJECT = REPO / "examples" / "projects" / "02_singer_csv"


def _cli() -> list[str]:
    return [handoff_script()]


def _install(workspace: Path, cache: Path, env: dict[str, str]) -> float:
    argv = [*_cli(), "workspace", "install", "-w", str(workspace), "-p", str(PROJECT)]
    argv += ["--venv-cache", str(cache)]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"workspace install failed (exit {done.returncode})")
    return elapsed


def _cold(tmp: Path, tool: str, round_number: int) -> float:
    base = tmp / f"{tool}-{round_number}"
    env = dict(os.environ)
    env["UV_CACHE_DIR"] = str(base / "uv-cache")
    env["PIP_CACHE_DIR"] = str(base / "pip-cache")
    env["HANDOFF_USE_UV"] = "1" if tool == "uv" else "0"
    return _install(base / "ws", base / "venvs", env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-rounds", type=int, default=10)
    args = parser.parse_args(argv)
    if find_uv() is None:
        print("uv not found: cold_uv_s is not measurable", file=sys.stderr)
        return 1
    compile_bytecode()

    with tempfile.TemporaryDirectory(prefix="handoff-bench-venv-") as tmp_name:
        tmp = Path(tmp_name)
        uv_times: list[float] = []
        pip_times: list[float] = []
        for number in range(1, args.rounds + 1):
            order = ("uv", "pip") if number % 2 else ("pip", "uv")
            for tool in order:
                elapsed = _cold(tmp, tool, number)
                (uv_times if tool == "uv" else pip_times).append(elapsed)
            print(f"round {number}: cold uv={uv_times[-1]:.2f}s pip={pip_times[-1]:.2f}s")

        # Warm: the venvs of the last uv round are cached; run the same CLI again.
        warm_ws, warm_cache = tmp / f"uv-{args.rounds}" / "ws", tmp / f"uv-{args.rounds}" / "venvs"
        env = dict(os.environ)
        warm = [_install(warm_ws, warm_cache, env) for _ in range(args.warm_rounds)]

    cold_uv, cold_pip = statistics.median(uv_times), statistics.median(pip_times)
    warm_s = statistics.median(warm)
    print(f"cold_uv_s={cold_uv:.2f}")
    print(f"cold_pip_s={cold_pip:.2f}")
    print(f"ratio={cold_uv / cold_pip:.2f}  (cold uv / cold pip: the baseline is pip)")
    print(f"warm_s={warm_s:.3f}  (target <= 0.3; CLI wall time incl. interpreter start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
