"""The workspace (where commands run) and the venv cache (where their programs live).

Workspace layout (commands run with the workspace root as their current directory)::

    <root>/config/      config files written from the document (dir 0700, files 0600)
    <root>/files/       run-time files (copied from PROJECT/files/ or synced from S3)
    <root>/artifacts/   state, per-stage logs, run.json, anything commands write there
    <root>/venvs/<name> symlinks into the venv cache, for inspection only

Venvs live outside the workspace in a cache (``$HANDOFF_VENV_CACHE``, default
``~/.cache/handoff/venvs``), one directory per *key*: the hash of the venv's install
commands, the content of workspace files and directories they name
(``-r files/requirements.txt``, ``./files/pkg``; build outputs such as ``build/`` and
``*.egg-info`` excluded), the
Python interpreter (implementation, version, base installation) and a format version.
Venvs are not relocatable, so one is built at its final path and a completion marker
is written last; a directory without the marker is a failed or interrupted build and is
wiped before rebuilding. Installers of the same key serialise on a file lock, so two
processes never build into the same directory and the second one reuses the first's
work. An unchanged spec costs a hash and a ``stat()``: no pip, no uv.

``uv`` is used when available (``uv`` on PATH or the ``uv`` Python package; disable with
``HANDOFF_USE_UV=0``): ``uv venv --seed`` creates the venv (with pip, so install
commands written for pip still work) and install commands of the plain form
``pip install ...`` / ``pip3 install ...`` / ``python -m pip install ...`` run as
``uv pip install --python <venv>/bin/python ...``. uv does not read pip's config files;
``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL`` are passed on as their ``UV_`` equivalents,
and a command uv rejects as a usage error (exit status 2, e.g. a pip-only option) is
re-run as written. Anything else (``sh`` syntax, ``make``, scripts) runs as written with
``sh -c`` in the workspace, ``VIRTUAL_ENV`` set and ``<venv>/bin`` first on ``PATH``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff_provider.core.atomic_files import replace_file
from handoff_provider.core.errors import ConfigurationError, InstallError, ProjectError
from handoff_provider.core.load.safe_tree import shown, walk_tree
from handoff_provider.core.load.shell_words import split_words
from handoff_provider.core.model.callbacks import LogFn
from handoff_provider.core.run.process_tree import Watchdog, child_setup, new_tag, stop_tagged

if TYPE_CHECKING:
    import hashlib

    from filelock import FileLock


def _default_log(line: str) -> None:
    """The log of an install given none: this module's logger (imported only then)."""
    import logging

    logging.getLogger(__name__).info(line)


def _sha256(data: bytes = b"") -> hashlib._Hash:
    import hashlib  # venv keys only: a run without installs never needs it

    return hashlib.sha256(data)


#: Bump when the layout of a cached venv changes: every key changes with it.
CACHE_FORMAT = 1
#: Written last into a venv directory; its presence means the venv is complete.
MARKER = ".handoff-venv.json"
ENV_CACHE_DIR = "HANDOFF_VENV_CACHE"
ENV_USE_UV = "HANDOFF_USE_UV"
#: Workspace inputs of install commands are hashed up to this many bytes per directory.
_MAX_HASHED_TREE = 64 * 1024 * 1024


# --------------------------------------------------------------------------- workspace


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _config_file_items(files: Any) -> list[tuple[str, str]]:
    """Accept ConfigFile objects, (name, value) pairs or a name -> value mapping."""
    if isinstance(files, Mapping):
        return [(str(k), v) for k, v in files.items()]
    items = []
    for item in files:
        if isinstance(item, tuple):
            items.append((str(item[0]), item[1]))
        else:
            items.append((str(item.name), item.value))
    return items


class Workspace:
    """A workspace directory: ``config/``, ``files/``, ``artifacts/`` (see module docs)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def venvs_dir(self) -> Path:
        return self.root / "venvs"

    @property
    def state_path(self) -> Path:
        return self.artifacts_dir / "state"

    @property
    def run_summary_path(self) -> Path:
        return self.artifacts_dir / "run.json"

    def prepare(self) -> Workspace:
        """Create the directories (idempotent); ``config/`` is 0700 even if it existed.

        A path that can't be a workspace (a file in the way, no permission, a read-only
        file system) is a :class:`ConfigurationError` naming the path, not a traceback.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.config_dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.config_dir, 0o700)
            self.files_dir.mkdir(exist_ok=True)
            self.artifacts_dir.mkdir(exist_ok=True)
        except OSError as exc:
            where = Path(exc.filename) if exc.filename else self.root
            problem = (
                "is not a directory (a file is in the way)"
                if isinstance(exc, FileExistsError | NotADirectoryError)
                else f"cannot be created or written ({exc.strerror or type(exc).__name__})"
            )
            shown = f"{self.root}" if where == self.root else f"{self.root}: {where}"
            raise ConfigurationError(f"workspace {shown} {problem}") from None
        return self

    def _config_target(self, name: str) -> Path:
        parts = name.split("/")
        if (
            not name
            or "\\" in name
            or "\x00" in name
            or name.startswith("/")
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise ProjectError(
                f"config file name {name!r} is not a plain relative path inside config/"
            )
        return self.config_dir.joinpath(*parts)

    def write_config_files(self, files: Any, *, prune: bool = True) -> list[Path]:
        """Write the document's config files into ``config/``; returns their paths.

        Each file is created with mode 0600 (``os.open(..., 0o600)`` on a fresh temp
        name, then renamed over the old one: never world-readable, not even briefly).
        Names must stay inside ``config/`` (no absolute path, no ``..``, no symlinked
        parent). With ``prune`` (default) files of ``config/`` that are not in ``files``
        are removed, so a secret dropped from the project does not linger.
        """
        self.prepare()
        config_root = self.config_dir.resolve()
        written: list[Path] = []
        for name, value in _config_file_items(files):
            target = self._config_target(name)
            for parent in reversed(target.parents):
                if _inside(parent, self.config_dir) and parent != self.config_dir:
                    parent.mkdir(mode=0o700, exist_ok=True)
            if not _inside(target.parent.resolve(), config_root):
                raise ProjectError(f"config file {name!r} would be written outside config/")
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            replace_file(target, data)
            written.append(target)
        if prune:
            keep = {p.resolve() for p in written}
            for path in sorted(self.config_dir.rglob("*"), reverse=True):
                if path.is_symlink() or path.is_file():
                    if path.resolve() not in keep and path.absolute() not in keep:
                        path.unlink()
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        return written

    def copy_project_files(self, project_dir: Path | str) -> list[Path]:
        """Make ``files/`` an exact copy of ``PROJECT/files/`` (modes kept, so scripts stay
        executable); returns the copied files.

        Symlinks are followed only when they point inside ``PROJECT/files/`` (a link to
        ``../config/secret.json`` would leak config into files that get pushed to S3);
        any other symlink, a loop, a special file or a name S3 can't carry is a
        :class:`ProjectError` before anything is copied (see
        :func:`~handoff_provider.core.load.safe_tree.walk_tree`). The copy is built next to
        ``files/`` and swapped in, so a failure leaves the previous ``files/`` untouched. Without a
        ``PROJECT/files/`` directory, ``files/`` is left as it is.
        """
        source = Path(project_dir) / "files"
        if not source.is_dir():
            self.prepare()
            return []
        tree = walk_tree(
            source,
            strict=True,
            links_label=f"{shown(source)} (refused: files/ must not expose other files)",
        )
        self.prepare()
        import tempfile

        staging = Path(tempfile.mkdtemp(prefix=".files-", dir=self.root))
        copied: list[Path] = []
        try:
            for rel in sorted(tree.dirs):
                (staging / rel).mkdir()
            for rel, path in sorted(tree.files.items()):
                shutil.copy2(path, staging / rel)
                copied.append(self.files_dir / rel)
            old = None
            if self.files_dir.exists():
                old = self.root / f".files-old-{os.getpid()}-{time.monotonic_ns()}"
                os.rename(self.files_dir, old)
            os.rename(staging, self.files_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return copied


# --------------------------------------------------------------------------- venv cache


def default_cache_dir() -> Path:
    configured = os.environ.get(ENV_CACHE_DIR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "handoff" / "venvs"


def find_uv() -> str | None:
    """The uv binary: on PATH, else the one the ``uv`` Python package ships."""
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None


def _use_uv_default() -> bool:
    return os.environ.get(ENV_USE_UV, "").strip().lower() not in ("0", "false", "no", "off")


_UNQUOTED_SPECIAL = set(";&|<>()$`*?[]{}~\\#\n")
_DOUBLE_QUOTED_SPECIAL = set("$`\\")


def _plain_words(command: str) -> list[str] | None:
    """Split ``command`` like sh would, or None if sh would do more than split words.

    Quotes are fine (``pip install 'tap-foo>=1.0'``); anything sh would interpret —
    variables, substitutions, globs, redirections, ``;``/``&&``/``|``, comments,
    backslashes — means the command needs a shell.
    """
    quote = ""
    for char in command:
        if quote == "'":
            if char == "'":
                quote = ""
        elif quote == '"':
            if char == '"':
                quote = ""
            elif char in _DOUBLE_QUOTED_SPECIAL:
                return None
        elif char in "'\"":
            quote = char
        elif char in _UNQUOTED_SPECIAL:
            return None
    if quote:
        return None
    return split_words(command)


def uv_pip_args(command: str) -> list[str] | None:
    """The arguments after ``pip install`` when ``command`` is that simple form, else None.

    Simple means: ``pip``/``pip3``/``python[3] -m pip`` then ``install``, and no shell
    syntax beyond quoting (see :func:`_plain_words`), so running it without a shell
    through uv can't change its meaning.
    """
    words = _plain_words(command)
    if not words:
        return None
    if words[0] in ("pip", "pip3"):
        rest = words[1:]
    elif len(words) >= 3 and words[0] in ("python", "python3") and words[1:3] == ["-m", "pip"]:
        rest = words[3:]
    else:
        return None
    if rest[:1] != ["install"] or len(rest) < 2:
        return None
    return rest[1:]


def _file_inputs(command: str, workspace: Path | None) -> list[tuple[str, str]]:
    """Hash workspace files/dirs an install command names (``-r files/req.txt``...)."""
    if workspace is None:
        return []
    try:
        words = split_words(command)
    except ValueError:
        words = command.split()
    root = workspace.resolve()
    found: list[tuple[str, str]] = []
    for word in words:
        candidates = {word, word.split("=", 1)[-1]}
        if word.startswith(("-r", "-c", "-e")) and len(word) > 2:
            candidates.add(word[2:])
        for candidate in candidates:
            if not candidate or candidate.startswith("-") or "://" in candidate:
                continue
            path = (root / candidate).resolve()
            if not _inside(path, root) or path == root:
                continue
            if path.is_file():
                found.append((candidate, _hash_file(path)))
            elif path.is_dir():
                found.append((candidate, _hash_tree(path)))
    return sorted(found)


def _hash_file(path: Path) -> str:
    digest = _sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Directories an install writes into a local package (``pip install ./files/pkg`` builds
#: in place): not part of the spec, or the key would change after the first install.
_BUILD_OUTPUTS = {"__pycache__", "build", "dist", ".git", ".tox", ".venv", ".eggs"}


def _is_build_output(rel: Path) -> bool:
    return rel.suffix == ".pyc" or any(
        part in _BUILD_OUTPUTS or part.endswith(".egg-info") for part in rel.parts
    )


def _hash_tree(path: Path) -> str:
    digest = _sha256()
    budget = _MAX_HASHED_TREE
    files = (p for p in path.rglob("*") if p.is_file())
    for file in sorted(f for f in files if not _is_build_output(f.relative_to(path))):
        rel = file.relative_to(path).as_posix()
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if size <= budget:
            budget -= size
            digest.update(_hash_file(file).encode())
    return digest.hexdigest()


class VenvCache:
    """Venvs keyed by their install spec; see the module docstring.

    ``python`` is the interpreter venvs are created from (default: the one running
    handoff). ``use_uv`` overrides ``HANDOFF_USE_UV`` / autodetection.
    """

    def __init__(
        self,
        cache_dir: Path | str | None = None,
        python: str | None = None,
        *,
        use_uv: bool | None = None,
    ) -> None:
        self.cache_dir: Path = (
            Path(cache_dir).expanduser().absolute() if cache_dir else default_cache_dir().absolute()
        )
        self.python = python or sys.executable
        self._python_identity: dict[str, str] | None = None
        self._want_uv = _use_uv_default() if use_uv is None else use_uv

    @functools.cached_property
    def uv(self) -> str | None:
        """The uv binary, when wanted and found: looked up the first time a venv is built
        (a run without venvs doesn't scan ``PATH`` for it)."""
        return find_uv() if self._want_uv else None

    # -- keys

    def python_identity(self) -> dict[str, str]:
        """Implementation, version and base installation of ``self.python`` (cached)."""
        if self._python_identity is None:
            import platform  # only for projects with venvs (start-up cost otherwise)

            if self.python == sys.executable:
                self._python_identity = {
                    "implementation": sys.implementation.name,
                    "version": platform.python_version(),
                    "base_prefix": os.path.realpath(sys.base_prefix),
                    "machine": platform.machine(),
                }
            else:
                script = (
                    "import json,os,platform,sys;print(json.dumps({'implementation':"
                    "sys.implementation.name,'version':platform.python_version(),"
                    "'base_prefix':os.path.realpath(sys.base_prefix),"
                    "'machine':platform.machine()}))"
                )
                try:
                    out = subprocess.run(
                        [self.python, "-c", script], capture_output=True, check=True, text=True
                    ).stdout
                except (OSError, subprocess.CalledProcessError) as exc:
                    raise InstallError(f"python {self.python!r} can't be run: {exc}") from None
                self._python_identity = json.loads(out)
        return self._python_identity

    def key_for(self, installs: Sequence[str], workspace: Path | None = None) -> str:
        spec = {
            "format": CACHE_FORMAT,
            "python": self.python_identity(),
            "installs": list(installs),
            "inputs": [_file_inputs(cmd, workspace) for cmd in installs],
        }
        blob = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
        return _sha256(blob).hexdigest()[:32]

    def path_for(self, installs: Sequence[str], workspace: Path | None = None) -> Path:
        return self.cache_dir / self.key_for(installs, workspace)

    @staticmethod
    def is_complete(venv_dir: Path) -> bool:
        return (venv_dir / MARKER).is_file()

    @staticmethod
    def interpreter_runs(venv_dir: Path) -> bool:
        """Whether the venv's ``bin/python`` still leads to an executable (a venv links
        to the interpreter it was built from; moving or removing that one breaks it)."""
        python = venv_dir / "bin" / "python"
        return python.is_file() and os.access(python, os.X_OK)

    # -- ensure

    def ensure(
        self,
        venv_name: str,
        installs: Sequence[str],
        log: LogFn | None = None,
        *,
        workspace: Path | str | None = None,
    ) -> Path:
        """Return the directory of a complete venv for ``installs``, building it if needed.

        Install output goes to ``log`` line by line. A failing command raises
        :class:`InstallError` naming the venv and the command's 1-based index (never the
        command text: it may carry an index token) and leaves no complete-looking venv.
        """
        log = log or _default_log
        ws = Path(workspace).absolute() if workspace is not None else None
        installs = tuple(installs)
        venv_dir = self.path_for(installs, ws)
        if self.is_complete(venv_dir) and self.interpreter_runs(venv_dir):
            return venv_dir
        from filelock import Timeout  # only when a venv is built (start-up cost)

        lock = self._lock(venv_dir)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log(f"venv {venv_name}: another process is building it, waiting for {lock.lock_file}")
            lock.acquire()
        try:
            if self.is_complete(venv_dir) and self.interpreter_runs(venv_dir):
                log(f"venv {venv_name}: built by another process, reusing {venv_dir}")
                return venv_dir
            if self.is_complete(venv_dir):
                log(f"venv {venv_name}: its bin/python no longer runs (base interpreter moved?)")
                (venv_dir / MARKER).unlink()
            self._clean_stale(keep=venv_dir, log=log)
            if venv_dir.exists():
                log(f"venv {venv_name}: removing incomplete build {venv_dir}")
                shutil.rmtree(venv_dir)
            try:
                self._build(venv_name, installs, venv_dir, ws, log)
            except BaseException:
                shutil.rmtree(venv_dir, ignore_errors=True)
                raise
        finally:
            lock.release()
        return venv_dir

    def _lock(self, venv_dir: Path) -> FileLock:
        """The build lock of ``venv_dir``, with the cache directory checked and created
        (a file in the way, or a ``.lock`` that is a directory, is a clear error)."""
        from filelock import FileLock

        shown_cache = f"venv cache {self.cache_dir} (${ENV_CACHE_DIR})"
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigurationError(f"{shown_cache}: is not a directory") from None
        except OSError as exc:
            raise ConfigurationError(
                f"{shown_cache}: cannot be created ({exc.strerror or type(exc).__name__})"
            ) from None
        lock_path = Path(str(venv_dir) + ".lock")
        if lock_path.exists() and not lock_path.is_file():
            raise ConfigurationError(
                f"{lock_path}: the venv's lock file is not a regular file; remove it"
            )
        if not os.access(self.cache_dir, os.W_OK | os.X_OK):
            raise ConfigurationError(f"{shown_cache}: not writable")
        return FileLock(str(lock_path))

    def _clean_stale(self, *, keep: Path, log: LogFn) -> None:
        """Remove other incomplete venv dirs nobody is building (failed/killed builds)."""
        from filelock import FileLock, Timeout

        for entry in self.cache_dir.iterdir():
            if entry == keep or not entry.is_dir() or entry.is_symlink():
                continue
            if self.is_complete(entry) or not re.fullmatch(r"[0-9a-f]{32}", entry.name):
                continue
            other = FileLock(str(entry) + ".lock")
            try:
                other.acquire(timeout=0)
            except (Timeout, OSError):
                continue  # being built right now (or its lock is unusable: leave it)
            try:
                if not self.is_complete(entry):
                    log(f"venv cache: removing stale incomplete venv {entry}")
                    shutil.rmtree(entry, ignore_errors=True)
            finally:
                other.release()

    def _build(
        self,
        venv_name: str,
        installs: tuple[str, ...],
        venv_dir: Path,
        workspace: Path | None,
        log: LogFn,
    ) -> None:
        started = time.monotonic()
        tool = "uv" if self.uv else "venv"
        log(f"venv {venv_name}: creating {venv_dir} ({tool})")
        if self.uv:
            create = [self.uv, "venv", "--seed", "--quiet", "--python", self.python, str(venv_dir)]
        else:
            create = [self.python, "-m", "venv", str(venv_dir)]
        env = self._env(venv_dir)
        rc: int | None = _stream(
            create, env=env, cwd=self.cache_dir, log=log, prefix=f"[venv {venv_name}] "
        )
        if rc != 0:
            raise InstallError(
                f"venv '{venv_name}': creating the venv ({tool}) failed with exit status {rc}"
            )
        cwd = workspace if workspace is not None and workspace.is_dir() else venv_dir
        python = str(venv_dir / "bin" / "python")
        for number, command in enumerate(installs, start=1):
            prefix = f"[install {venv_name} #{number}] "
            rc = self._install(command, python, env=env, cwd=cwd, log=log, prefix=prefix)
            if rc != 0:
                raise InstallError(
                    f"venv '{venv_name}': install command {number} of {len(installs)} failed "
                    f"with exit status {rc} (its output is in the install log)"
                )
        marker = {
            "format": CACHE_FORMAT,
            "name": venv_name,
            "installs": list(installs),
            "python": self.python_identity(),
            "tool": tool,
            "seconds": round(time.monotonic() - started, 3),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = venv_dir / (MARKER + ".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(marker, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, venv_dir / MARKER)  # last step: now the venv is complete
        log(f"venv {venv_name}: ready in {marker['seconds']} s")

    def _install(
        self, command: str, python: str, *, env: dict[str, str], cwd: Path, log: LogFn, prefix: str
    ) -> int:
        """Run one install command in the venv: as ``uv pip install`` when uv can take its
        arguments, else (or when uv rejects them) with ``sh -c``. Its exit status."""
        pip_args = uv_pip_args(command) if self.uv else None
        if pip_args is not None:
            assert self.uv is not None
            argv = [self.uv, "pip", "install", "--python", python, *pip_args]
            log(f"{prefix}running as `uv pip install`")
            rc = _stream(argv, env=env, cwd=cwd, log=log, prefix=prefix)
            if rc != 2:
                return rc
            log(f"{prefix}uv rejected the arguments, running the command with pip")
        log(f"{prefix}running with sh -c in the venv")
        return _stream(["sh", "-c", command], env=env, cwd=cwd, log=log, prefix=prefix)

    def _env(self, venv_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = str(venv_dir)
        env["PATH"] = str(venv_dir / "bin") + os.pathsep + env.get("PATH", os.defpath)
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        env.setdefault("PIP_NO_INPUT", "1")
        for pip_name, uv_name in (
            ("PIP_INDEX_URL", "UV_INDEX_URL"),
            ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL"),
        ):
            if pip_name in env and uv_name not in env:
                env[uv_name] = env[pip_name]
        return env


def _stream(argv: list[str], *, env: Mapping[str, str], cwd: Path, log: LogFn, prefix: str) -> int:
    """Run ``argv`` with stdout+stderr merged into ``log``; returns the exit status.

    Like a pipeline stage, the command and everything it starts carry a tag, die with
    handoff (``PDEATHSIG`` + the watchdog, :mod:`process_tree`) and are stopped when it
    ends, so a killed install never leaves pip or uv writing into the cache.
    """
    tag = new_tag()
    watchdog = Watchdog.get()
    watchdog.register(tag)
    try:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env={**env, tag: "1"},
                preexec_fn=child_setup(0),
            )
        except OSError as exc:
            log(f"{prefix}{argv[0]}: {exc.strerror or exc}")
            return 127
        assert proc.stdout is not None
        try:
            with proc.stdout:
                for raw in proc.stdout:
                    log(prefix + raw.decode("utf-8", "replace").rstrip("\r\n"))
            return proc.wait()
        finally:
            if proc.poll() is None:  # interrupted (KeyboardInterrupt, a failing log)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            stop_tagged([tag], grace=2.0)
    finally:
        watchdog.release(tag)


# --------------------------------------------------------------------------- installs


def project_venvs(project: Any) -> dict[str, tuple[str, ...]]:
    """Every venv a project needs: its ``installs`` plus venvs commands name without any."""
    venvs: dict[str, tuple[str, ...]] = {
        name: tuple(cmds) for name, cmds in project.installs.items()
    }
    for task in project.tasks:
        for command in task.commands:
            if command.venv and command.venv not in venvs:
                venvs[command.venv] = ()
    return venvs


def install_venvs(
    project: Any,
    cache: VenvCache,
    log: LogFn | None = None,
    workspace: Workspace | Path | str | None = None,
) -> dict[str, Path]:
    """Ensure every venv of ``project``; returns {venv name: venv dir}.

    With a workspace, install commands run there (``pip install -r files/req.txt``),
    the files they name are part of the key, and ``<workspace>/venvs/<name>`` becomes a
    symlink to the cached venv (for people looking around; nothing reads it).
    """
    ws = Workspace(workspace) if isinstance(workspace, (str, Path)) else workspace
    result: dict[str, Path] = {}
    for name, installs in project_venvs(project).items():
        venv_dir = cache.ensure(name, installs, log, workspace=ws.root if ws else None)
        result[name] = venv_dir
        if ws is not None:
            _link(ws.venvs_dir, name, venv_dir)
    return result


def _link(directory: Path, name: str, target: Path) -> None:
    if "/" in name or name in ("", ".", ".."):
        return  # not a plain name: no convenience link
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / name
    with contextlib.suppress(OSError):
        if link.is_symlink() and os.readlink(link) == str(target):
            return
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)


def iter_complete(cache_dir: Path) -> Iterable[Path]:
    """Complete venvs of a cache directory (for tooling and tests)."""
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if VenvCache.is_complete(p))
