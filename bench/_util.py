"""What the bench scripts share: the real console script and a venv with its bytecode."""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def handoff_script() -> str:
    """The ``handoff`` console script of the running venv, as a user runs it."""
    script = Path(sys.executable).with_name("handoff")
    if not script.exists():
        raise SystemExit(f"no console script {script}: install the package (make venv)")
    return str(script)


def compile_bytecode(python: str | None = None) -> None:
    """Compile the venv's packages and ours, as ``pip install`` does: a venv without
    ``.pyc`` files (installed with PYTHONDONTWRITEBYTECODE=1, say) recompiles every module
    at every start, which measures the compiler, not the start-up. ``python``: another
    venv's interpreter to do it for (default: the running one)."""
    if python is not None and Path(python).absolute() != Path(sys.executable).absolute():
        script = f"import sys; sys.path.insert(0, {str(REPO / 'bench')!r}); "
        script += "import _util; _util.compile_bytecode()"
        subprocess.run([python, "-c", script], check=True)
        return
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    for path in [*sorted(paths), str(REPO / "handoff_provider")]:
        compileall.compile_dir(path, quiet=2, workers=0)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without ``HANDOFF_*`` settings of the caller, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HANDOFF_")}
    env.update(extra)
    return env
