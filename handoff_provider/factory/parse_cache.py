"""What the factory reads of a project at parse time, validated once per change.

DAG files are parsed every few seconds, each time in a fresh process on Airflow's DAG
processor: validating every project each time would cost a schema check and a compile
per project per parse. :func:`project_info` keeps the result in memory and on disk
(``[handoff] parse_cache_dir``), keyed by the mtimes and sizes of ``project.yml`` and
``config/``, this package's version and its schema, so an unchanged project costs a few
``stat()`` calls. Only valid projects are remembered: a broken one fails every parse.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoff_provider._compat import provider_setting
from handoff_provider.core.atomic_files import replace_file

__all__ = ["ProjectInfo", "project_info"]


@dataclass(frozen=True)
class ProjectInfo:
    """What the factory needs of a project at parse time (no config value)."""

    path: Path
    name: str
    description: str | None
    schedules: tuple[str, ...]
    shell_lines: tuple[str, ...]
    #: A run carries state to the next (``Project.stateful``): runs are kept in order.
    stateful: bool = True


#: In-process cache: project path (absolute, as a string) -> (signature, info).
_CACHE: dict[str, tuple[tuple[Any, ...], ProjectInfo]] = {}
_CACHE_FORMAT = 2


def _signature(project_dir: str) -> tuple[Any, ...]:
    """mtime/size of project.yml and of everything under config/ (what compiling reads).

    Runs for every project at every parse: plain ``os`` calls on strings (no ``Path``)."""
    parts: list[Any] = []
    try:
        stat = os.stat(os.path.join(project_dir, "project.yml"))
        parts.append((stat.st_mtime_ns, stat.st_size))
    except OSError:
        parts.append(None)
    pending = [os.path.join(project_dir, "config")]
    while pending:
        directory = pending.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    stat = entry.stat()
                except OSError:
                    continue
                parts.append((entry.path, stat.st_mtime_ns, stat.st_size))
                if entry.is_dir():
                    pending.append(entry.path)
    parts.sort(key=repr)
    return tuple(parts)


@functools.lru_cache(maxsize=1)
def _disk_cache_dir() -> Path | None:
    """Where validated projects are remembered across processes (None: disabled).

    ``[handoff] parse_cache_dir``; default ``$AIRFLOW_HOME/.cache/handoff-parse``; ``none``
    disables it. DAG processors parse every file in a fresh process, so without it each
    parse would re-read and re-validate every project.
    """
    configured = (provider_setting("parse_cache_dir") or "").strip()
    if configured.lower() in ("none", "off", "false", "-"):
        return None
    if configured:
        return Path(os.path.expanduser(configured))
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return Path(home) / ".cache" / "handoff-parse"


def _schema_stat() -> Any:
    """mtime and size of the compiled project schema, regenerated whenever
    ``project_schema.json`` or a task kind's fragment (``core/steps/``) changes (a test
    fails when it is stale): a new schema invalidates every entry."""
    from importlib.resources import files  # the package only, not the project model

    try:
        stat = os.stat(str(files("handoff_provider.core.load") / "_project_validator.py"))
    except (OSError, ModuleNotFoundError):
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _cache_key(path: Path, signature: tuple[Any, ...]) -> str:
    """What a cached validation depends on: the project files, this package, its schema."""
    from handoff_provider import __version__

    payload = json.dumps([_CACHE_FORMAT, __version__, _schema_stat(), str(path), signature])
    return hashlib.sha256(payload.encode()).hexdigest()


def _entry_path(directory: Path, project: Path) -> Path:
    return directory / f"{hashlib.sha256(str(project).encode()).hexdigest()[:32]}.json"


def _read_disk_cache(path: Path, key: str) -> ProjectInfo | None:
    directory = _disk_cache_dir()
    if directory is None:
        return None
    try:
        data = json.loads(_entry_path(directory, path).read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        info = data["info"]
        return ProjectInfo(
            path=path,
            name=path.name,
            description=info["description"],
            schedules=tuple(info["schedules"]),
            shell_lines=tuple(info["shell_lines"]),
            stateful=bool(info["stateful"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_disk_cache(info: ProjectInfo, key: str) -> None:
    directory = _disk_cache_dir()
    if directory is None:
        return
    data = {
        "key": key,
        "project": str(info.path),
        "info": {
            "description": info.description,
            "schedules": list(info.schedules),
            "shell_lines": list(info.shell_lines),
            "stateful": info.stateful,
        },
    }
    try:
        directory.mkdir(parents=True, exist_ok=True)
        replace_file(_entry_path(directory, info.path), json.dumps(data).encode())
    except OSError:
        pass  # a cache: never fail a parse over it


def _validate(path: Path) -> ProjectInfo:
    """Load and validate the project (``ProjectError`` naming the file at fault)."""
    from handoff_provider.core.load import project as core_project

    project = core_project.load_project(path)
    return ProjectInfo(
        path=path,
        name=path.name,
        description=project.description,
        schedules=tuple(s.cron for s in project.schedules),
        shell_lines=tuple(project.shell_lines()),
        stateful=project.stateful,
    )


def project_info(project_dir: str | os.PathLike[str]) -> ProjectInfo:
    """Validate a project directory and return what a DAG needs (module doc: cached).

    Raises ``ProjectError`` naming the file at fault, which makes the DAG file fail to
    import with that message.
    """
    directory = os.path.abspath(os.path.expanduser(os.fspath(project_dir)))
    signature = _signature(directory)
    cached = _CACHE.get(directory)
    if cached is not None and cached[0] == signature:
        return cached[1]
    path = Path(directory)
    key = _cache_key(path, signature)
    info = _read_disk_cache(path, key)
    if info is None:
        info = _validate(path)
        _write_disk_cache(info, key)
    _CACHE[directory] = (signature, info)
    return info
