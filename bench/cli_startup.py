"""Start-up of the ``handoff`` CLI: whole processes against ``python -c pass``.

What a user (or a Fargate task, once per run) waits for before any work starts: the
interpreter, the imports a verb needs and the verb itself. Every figure is the wall time
of a whole process (the real console script, as installed), the runs of each command
interleaved round by round with the baseline's so that machine noise hits both alike, and
the median kept:

* ``python -c pass`` in the same venv: the baseline (interpreter + site start-up);
* ``handoff --help``;
* ``handoff config print -p examples/projects/02_singer_csv`` (the Singer example);
* ``handoff run -w WS -p P`` of ``true | true | true`` (a purely local project), and
  ``sh -c 'true | true | true'`` for scale.

Prints ``ratio_<verb>=`` (median / baseline median; targets: run <= 5, config print
<= 4, help <= 2.5). The venv's bytecode is compiled first (``compileall``), as pip does
at install time (see ``_util.compile_bytecode``).

Usage: ``python bench/cli_startup.py [--rounds 15]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import REPO, clean_env, compile_bytecode, handoff_script

SINGER = REPO / "examples" / "projects" / "02_singer_csv"
TRIVIAL = """\
tasks:
  - name: trivial
    pipeline:
      - command: "true"
      - command: "true"
      - command: "true"
"""
TARGETS = {"run": 5.0, "config_print": 4.0, "help": 2.5}


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout.decode(errors="replace") + done.stderr.decode("replace"))
        raise SystemExit(f"{' '.join(argv)} failed (exit {done.returncode})")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    compile_bytecode()
    handoff = handoff_script()

    with tempfile.TemporaryDirectory(prefix="handoff-bench-startup-") as tmp_name:
        tmp = Path(tmp_name)
        project = tmp / "trivial"
        project.mkdir()
        (project / "project.yml").write_text(TRIVIAL)
        env = clean_env(HANDOFF_VENV_CACHE=str(tmp / "venvs"))
        commands = {
            "baseline": [sys.executable, "-c", "pass"],
            "help": [handoff, "--help"],
            "config_print": [handoff, "config", "print", "-p", str(SINGER)],
            "run": [handoff, "run", "-w", str(tmp / "ws"), "-p", str(project)],
            "sh": ["sh", "-c", "true | true | true"],
        }
        for argv_ in commands.values():  # warm-up: file cache, first workspace
            timed(argv_, env, tmp)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for number in range(args.rounds):
            # Alternate the order so that neither side always runs right after the other.
            order = list(commands) if number % 2 == 0 else list(reversed(commands))
            for name in order:
                samples[name].append(timed(commands[name], env, tmp))

    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"rounds={args.rounds} python={sys.version.split()[0]}")
    for name, argv_ in commands.items():
        shown = " ".join(Path(a).name if a.startswith(("/", str(tmp))) else a for a in argv_)
        print(f"{name:13s} median_ms={med[name] * 1000:7.1f}  ({shown})")
    for name, target in TARGETS.items():
        ratio = med[name] / med["baseline"]
        verdict = "ok" if ratio <= target else "MISSED"
        print(f"ratio_{name}={ratio:.2f}  (vs python -c pass; target <= {target}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
