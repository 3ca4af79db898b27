"""VenvCache: keyed reuse, rebuild on change, failed builds, the lock, uv vs pip.

Install commands never reach the network: they are ``python -c`` snippets that append a
line to a counter file (so a test can count how many times an install really ran), or
``pip install --no-index --find-links`` of a wheel built here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from handoff_provider.core.errors import InstallError
from handoff_provider.core.run.workspace import (
    MARKER,
    VenvCache,
    Workspace,
    find_uv,
    install_venvs,
    iter_complete,
    uv_pip_args,
)

try:
    from .helpers_runtime import cmd, project, task
except ImportError:  # tests/core is not a package
    from helpers_runtime import cmd, project, task

HAS_UV = find_uv() is not None


def counting(counter: Path, tag: str = "") -> str:
    """An install command that appends the venv's prefix to ``counter``."""
    return (
        f"python -c \"import sys; open(r'{counter}', 'a').write(sys.prefix + '\\n')\" {tag}"
    ).strip()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def cache(tmp_path: Path) -> VenvCache:
    return VenvCache(tmp_path / "cache")


def test_unchanged_spec_is_reused_without_running_installs(
    cache: VenvCache, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    installs = [counting(counter)]
    log: list[str] = []
    first = cache.ensure("proc_01", installs, log.append)
    assert VenvCache.is_complete(first)
    # The install ran once, with the venv's own python (found through PATH).
    assert lines(counter) == [str(first)]
    assert (first / "bin" / "python").exists()

    started = time.monotonic()
    again = VenvCache(tmp_path / "cache").ensure("proc_01", installs, log.append)
    assert time.monotonic() - started < 0.3
    assert again == first
    assert lines(counter) == [str(first)]  # not run again


def test_changed_spec_gets_a_new_venv(cache: VenvCache, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    first = cache.ensure("v", [counting(counter)])
    second = cache.ensure("v", [counting(counter), counting(counter, "# second")])
    assert second != first
    assert lines(counter) == [str(first), str(second), str(second)]
    assert iter_complete(cache.cache_dir) == sorted([first, second])


def test_key_depends_on_spec_python_and_workspace_inputs(cache: VenvCache, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").prepare()
    req = ws.files_dir / "requirements.txt"
    req.write_text("tap-foo==1.0\n")
    installs = ["pip install -r files/requirements.txt"]
    key = cache.key_for(installs, ws.root)
    assert cache.key_for(installs, ws.root) == key
    assert cache.key_for(["pip install -r files/other.txt"], ws.root) != key
    req.write_text("tap-foo==2.0\n")
    assert cache.key_for(installs, ws.root) != key  # same command, new requirements
    # A local package: its sources count, what a build writes into it does not.
    pkg = ws.files_dir / "pkg"
    (pkg / "src").mkdir(parents=True)
    (pkg / "src" / "mod.py").write_text("A = 1\n")
    local = ["pip install --no-index ./files/pkg"]
    local_key = cache.key_for(local, ws.root)
    for output in ("build/lib/mod.py", "pkg.egg-info/PKG-INFO", "src/__pycache__/mod.pyc"):
        (pkg / output).parent.mkdir(parents=True, exist_ok=True)
        (pkg / output).write_text("generated")
    assert cache.key_for(local, ws.root) == local_key
    (pkg / "src" / "mod.py").write_text("A = 2\n")
    assert cache.key_for(local, ws.root) != local_key
    other_python = VenvCache(cache.cache_dir)
    other_python._python_identity = {**cache.python_identity(), "version": "3.99.0"}
    assert other_python.key_for(installs, ws.root) != cache.key_for(installs, ws.root)


def test_failed_install_leaves_no_complete_looking_venv(cache: VenvCache, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    failing = "python -c 'import sys; sys.exit(3)' --token=SECRET-TOKEN-123"
    log: list[str] = []
    with pytest.raises(InstallError) as caught:
        cache.ensure("proc_02", [counting(counter), failing], log.append)
    message = str(caught.value)
    assert message.startswith("venv 'proc_02': install command 2 of 2 failed with exit status 3")
    assert "SECRET-TOKEN" not in message
    venv_dir = cache.path_for([counting(counter), failing])
    assert not venv_dir.exists()
    assert iter_complete(cache.cache_dir) == []
    # The next attempt builds from scratch (the first install runs again).
    with pytest.raises(InstallError):
        cache.ensure("proc_02", [counting(counter), failing])
    assert len(lines(counter)) == 2


def test_interrupted_build_is_wiped_and_rebuilt(cache: VenvCache, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    installs = [counting(counter)]
    venv_dir = cache.path_for(installs)
    (venv_dir / "bin").mkdir(parents=True)  # as if a build had been killed midway
    (venv_dir / "half-written").write_text("junk")
    result = cache.ensure("v", installs)
    assert result == venv_dir
    assert VenvCache.is_complete(venv_dir)
    assert not (venv_dir / "half-written").exists()
    assert lines(counter) == [str(venv_dir)]


def test_stale_incomplete_venvs_of_other_keys_are_cleaned(cache: VenvCache, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    kept = cache.ensure("kept", [counting(counter, "# kept")])
    stale = cache.cache_dir / ("ab" * 16)
    (stale / "bin").mkdir(parents=True)
    cache.ensure("new", [counting(counter, "# new")])
    assert not stale.exists()
    assert VenvCache.is_complete(kept)


_CONCURRENT = """
import sys, time
from pathlib import Path
from handoff_provider.core.run.workspace import VenvCache
cache_dir, install, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
path = VenvCache(cache_dir).ensure("shared", [install], lambda line: print(line, file=sys.stderr))
print(path, flush=True)
"""


def test_two_processes_installing_the_same_key_build_it_once(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    # Slow enough that the second process arrives while the first is still building.
    install = (
        f"python -c \"import sys, time; open(r'{counter}', 'a').write(sys.prefix + '\\n'); "
        'time.sleep(1)"'
    )
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT, str(tmp_path / "cache"), install, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], results
    paths = {out.strip() for out, _err in results}
    assert len(paths) == 1
    (path,) = paths
    assert lines(counter) == [path]  # one build only
    assert VenvCache.is_complete(Path(path))
    logs = "".join(err for _out, err in results)
    assert "waiting for" in logs and "built by another process" in logs


def test_install_venvs_covers_installs_and_venvs_named_by_commands(
    cache: VenvCache, tmp_path: Path
) -> None:
    counter = tmp_path / "counter"
    ws = Workspace(tmp_path / "ws").prepare()
    proj = project(
        task("t", cmd("tap", venv="with_installs"), cmd("target", venv="bare")),
        installs={"with_installs": (counting(counter),)},
    )
    venvs = install_venvs(proj, cache, None, ws)
    assert set(venvs) == {"with_installs", "bare"}
    assert all(VenvCache.is_complete(path) for path in venvs.values())
    assert (ws.venvs_dir / "with_installs").resolve() == venvs["with_installs"].resolve()
    assert (ws.venvs_dir / "bare").resolve() == venvs["bare"].resolve()
    # Warm: same dirs, nothing installed again.
    assert install_venvs(proj, cache, None, ws) == venvs
    assert len(lines(counter)) == 1


def test_install_commands_run_in_the_workspace(cache: VenvCache, tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").prepare()
    (ws.files_dir / "setup.py").write_text("open('installed-here', 'w').write('ok')\n")
    cache.ensure("v", ["python files/setup.py"], workspace=ws.root)
    assert (ws.root / "installed-here").read_text() == "ok"


def test_unrunnable_python_is_an_install_error(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="can't be run"):
        VenvCache(tmp_path / "cache", python=str(tmp_path / "no-python")).ensure("v", [])


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pip install tap-foo", ["tap-foo"]),
        ("pip3 install 'tap-foo>=1.0' target-csv", ["tap-foo>=1.0", "target-csv"]),
        ("python -m pip install -r files/requirements.txt", ["-r", "files/requirements.txt"]),
        ("python3 -m pip install --upgrade pip", ["--upgrade", "pip"]),
        ("pip install tap-foo && echo done", None),
        ("pip install $PACKAGE", None),
        ('pip install "a$(id)"', None),
        ("pip install a*", None),
        ("pip install a > log", None),
        ("pip uninstall -y a", None),
        ("pip install", None),
        ("make install", None),
    ],
)
def test_only_plain_pip_install_commands_go_through_uv(
    command: str, expected: list[str] | None
) -> None:
    assert uv_pip_args(command) == expected


def test_handoff_use_uv_0_forces_pip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HANDOFF_USE_UV", "0")
    assert VenvCache(tmp_path).uv is None
    monkeypatch.delenv("HANDOFF_USE_UV")
    assert (VenvCache(tmp_path).uv is not None) == HAS_UV


def _build_wheel(directory: Path) -> str:
    """A minimal valid wheel of ``handoff-demo-pkg`` (VALUE = 42); returns the project name."""
    name, version = "handoff_demo_pkg", "0.1"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "VALUE = 42\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: handoff-tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(directory / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return "handoff-demo-pkg"


def _installed_value(venv_dir: Path) -> str:
    return subprocess.run(
        [str(venv_dir / "bin" / "python"), "-c", "import handoff_demo_pkg as m; print(m.VALUE)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.skipif(not HAS_UV, reason="uv is not installed")
def test_plain_pip_install_runs_through_uv(tmp_path: Path) -> None:
    package = _build_wheel(tmp_path / "wheels")
    log: list[str] = []
    cache = VenvCache(tmp_path / "cache", use_uv=True)
    venv_dir = cache.ensure(
        "v", [f"pip install --no-index --find-links {tmp_path / 'wheels'} {package}"], log.append
    )
    assert _installed_value(venv_dir) == "42"
    assert "[install v #1] running as `uv pip install`" in log
    assert json.loads((venv_dir / MARKER).read_text())["tool"] == "uv"
    # --seed: pip is there for install commands that need it.
    assert (venv_dir / "bin" / "pip").exists()


@pytest.mark.skipif(not HAS_UV, reason="uv is not installed")
def test_shell_form_install_runs_as_written_in_the_venv(tmp_path: Path) -> None:
    package = _build_wheel(tmp_path / "wheels")
    log: list[str] = []
    cache = VenvCache(tmp_path / "cache", use_uv=True)
    command = f"pip install --no-index --find-links {tmp_path / 'wheels'} {package} && echo done"
    venv_dir = cache.ensure("v", [command], log.append)
    assert _installed_value(venv_dir) == "42"
    assert "[install v #1] running with sh -c in the venv" in log
    assert "[install v #1] done" in log


def test_pip_mode_without_uv(tmp_path: Path) -> None:
    """The fallback when uv is absent: python -m venv + the command as written."""
    package = _build_wheel(tmp_path / "wheels")
    cache = VenvCache(tmp_path / "cache", use_uv=False)
    venv_dir = cache.ensure(
        "v", [f"pip install --no-index --find-links {tmp_path / 'wheels'} {package}"]
    )
    assert _installed_value(venv_dir) == "42"
    assert json.loads((venv_dir / MARKER).read_text())["tool"] == "venv"
    assert os.path.exists(venv_dir / "pyvenv.cfg")
