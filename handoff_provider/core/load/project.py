"""Load and validate ``project.yml`` + ``config/``, compile the document, build the model.

A project directory holds ``project.yml``, ``config/`` (files embedded into the compiled
document, which is stored as an SSM SecureString) and ``files/`` (synced to S3, not
handled here). ``project.yml`` comes in two forms:

* seed form: top-level ``commands:`` is one pipeline; it becomes the task ``default``;
* task form: top-level ``tasks:``, each with one kind key: ``pipeline:`` (stages joined
  by pipes), ``commands:`` (run one after the other), ``lambda:`` (invoke an AWS Lambda
  function) or ``s3_touch:`` (write an empty flag object): the task kinds of
  :mod:`handoff_provider.core.steps`, one module each.

Both forms may also have ``description``, ``installs``, ``envs``, ``vars``, ``transfers``
(S3 inputs/outputs around the run,
:class:`~handoff_provider.core.model.transfers.TransfersSpec`), ``schedules`` and
``deploy``; every stage may have ``args``, ``venv`` and ``installs``.

Validation is in two layers. The structure (keys, types, patterns) is the JSON Schema
(``project_schema.json`` + each task kind's fragment,
:mod:`~handoff_provider.core.load.project_schema`): adding a top-level key or a stage
property is a local change there (plus, for a new key, one line in
:func:`_build_project`). Its errors are rewritten into one-line messages with the key
path and a "did you mean" hint, and never the value
(:mod:`~handoff_provider.core.load.schema_errors`). What a schema can't say well (one kind
per task, duplicate names, venv names, config file names) is checked by
:mod:`~handoff_provider.core.load.semantics`. The model itself is
:mod:`~handoff_provider.core.model.project` (its names are re-exported here).

The compiled document is the canonical, normalised form of ``project.yml`` (keys in
schema order, numbers given as strings where a string is meant, ``venv: ./venv/x``
normalised to ``x`` as the seeds' own compiled output shows) plus ``files``. It goes
through exactly the same validation when it comes back from SSM.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load.document_limits import MAX_PROJECT_BYTES, check_depth
from handoff_provider.core.load.document_limits import type_name as _type_name
from handoff_provider.core.load.project_schema import project_schema
from handoff_provider.core.load.safe_tree import read_regular_file, shown, walk_tree
from handoff_provider.core.load.schema_errors import schema_problems
from handoff_provider.core.load.semantics import (
    RESERVED_VARS,
    check_semantics,
    secret_refs,
    transfers_from_document,
    with_source,
)
from handoff_provider.core.load.yaml_cache import parse_cached
from handoff_provider.core.model.project import (
    CONFIG_DIR,
    DEFAULT_TASK_NAME,
    PROJECT_FILE,
    Command,
    ConfigFile,
    EnvVar,
    Project,
    Schedule,
    StateFormat,
    StateFrom,
    StateOnFailure,
    Task,
    TaskKind,
)
from handoff_provider.core.steps import kinds_in
from handoff_provider.core.steps.process import commands_of

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_TASK_NAME",
    "MAX_CONFIG_BYTES",
    "PROJECT_FILE",
    "RESERVED_VARS",
    "Command",
    "ConfigFile",
    "EnvVar",
    "Project",
    "Schedule",
    "StateFormat",
    "StateFrom",
    "StateOnFailure",
    "Task",
    "TaskKind",
    "compile_document",
    "load_project",
    "project_from_document",
    "read_config_files",
]

#: All files of ``config/`` together (they are embedded in one document).
MAX_CONFIG_BYTES = 4 << 20


# --------------------------------------------------------------------------- public API


def compile_document(project_dir: Path) -> dict[str, Any]:
    """Compile ``project.yml`` + ``config/`` into the document stored in SSM.

    Validates everything (``ProjectError`` naming file and key path). The result is
    JSON-safe and canonical: ``json.dumps`` of it is stable for an unchanged project.
    """
    project_dir = Path(project_dir)
    source = str(project_dir / PROJECT_FILE)
    if not project_dir.is_dir():
        raise ProjectError(f"{project_dir}: project directory not found")
    raw = _load_yaml(project_dir / PROJECT_FILE, source=source)
    if "files" in raw:
        raise ProjectError(
            f"{source}: 'files' is reserved: the files under {CONFIG_DIR}/ are embedded "
            "as 'files' when the project is compiled"
        )
    files = read_config_files(project_dir)
    # Validated together: ``secrets:`` entries must name config files.
    return _normalise({**raw, "files": files} if files else raw, source=source)


def project_from_document(document: Mapping[str, Any], *, source: str) -> Project:
    """Validate a compiled document (local or fetched from SSM) and build the model."""
    if not isinstance(document, Mapping):
        raise ProjectError(f"{source}: the document must be a mapping (got {_type_name(document)})")
    check_depth(document, source=source)
    normalised = _normalise(dict(document), source=source)
    return _build_project(normalised, source=source)


def load_project(project_dir: Path) -> Project:
    """The model of a project folder, errors naming ``<dir>/project.yml``: what
    ``project_from_document(compile_document(dir))`` gives, without validating the
    compiled document a second time (:func:`compile_document` returns it validated and
    canonical; a fetched document is what :func:`project_from_document` is for)."""
    project_dir = Path(project_dir)
    return _build_project(compile_document(project_dir), source=str(project_dir / PROJECT_FILE))


def read_config_files(project_dir: Path) -> list[dict[str, str]]:
    """Every regular file under ``config/`` as ``{"name", "value"}``, sorted by name.

    Symlinks are followed only while they stay inside the project directory; special
    files, loops and names the document can't carry are refused
    (:func:`~handoff_provider.core.load.safe_tree.walk_tree`); files must be UTF-8 text and
    together at most :data:`MAX_CONFIG_BYTES`. Errors name the file, never its content.
    """
    project_dir = Path(project_dir)
    config_dir = project_dir / CONFIG_DIR
    if not config_dir.exists() and not config_dir.is_symlink():
        return []
    if not config_dir.is_dir():
        raise ProjectError(f"{shown(config_dir)}: expected a directory of config files")
    if config_dir.is_symlink() and not config_dir.resolve().is_relative_to(project_dir.resolve()):
        raise ProjectError(f"{shown(config_dir)}: symlink points outside the project directory")
    tree = walk_tree(
        config_dir, strict=True, links_within=project_dir, links_label="the project directory"
    )
    budget = MAX_CONFIG_BYTES
    files: list[dict[str, str]] = []
    for name in sorted(tree.files):
        path = tree.files[name]
        data = read_regular_file(path, limit=budget, what="config file (all of config/ together)")
        budget -= len(data)
        try:
            files.append({"name": name, "value": data.decode("utf-8")})
        except UnicodeDecodeError:
            raise ProjectError(
                f"{shown(path)}: not UTF-8 text (config files are embedded as text; "
                "put binary files under files/)"
            ) from None
    return files


# --------------------------------------------------------------------------- YAML


def _load_yaml(path: Path, *, source: str) -> dict[str, Any]:
    try:
        raw = read_regular_file(path, limit=MAX_PROJECT_BYTES, source=source)
    except FileNotFoundError:
        raise ProjectError(f"{source}: not found") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProjectError(f"{source}: not UTF-8 text") from None
    data = parse_cached(path, text, _yaml_parser(source))
    if not isinstance(data, dict):
        raise ProjectError(
            f"{source}: the top level must be a mapping with 'commands' (seed form) or "
            f"'tasks' (task form) (got {_type_name(data)})"
        )
    return data


def _yaml_parser(source: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        # Imported here: PyYAML is needed only when project.yml changed (yaml_cache).
        from handoff_provider.core.load.project_yaml import parse_yaml

        return parse_yaml(text, source=source)

    return parse


# --------------------------------------------------------------------------- validation


def _normalise(document: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Validate ``document`` and return its canonical form (a new dict)."""
    problems = schema_problems(document)
    if problems:
        raise ProjectError(f"{source}: {problems}")
    canonical = _canonical(document, project_schema())
    check_semantics(canonical, source=source)
    return canonical


def _deref(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = project_schema()["$defs"][name]
    return schema


def _canonical(value: Any, schema: Mapping[str, Any]) -> Any:
    """Keys in schema order, ``x-coerce``/``x-normalize`` applied, free-form parts copied."""
    schema = _deref(schema)
    if schema.get("x-coerce") == "string" and isinstance(value, int | float):
        return str(value)
    if schema.get("x-normalize") == "venv" and isinstance(value, str):
        return _venv_name(value)
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        return {key: _canonical(value[key], properties[key]) for key in properties if key in value}
    if isinstance(value, list) and "items" in schema:
        return [_canonical(item, schema["items"]) for item in value]
    return copy.deepcopy(value)


def _venv_name(value: str) -> str:
    """``./venv/proc_01`` (the seeds' form; also ``venvs/<name>``, the workspace's link)
    -> ``proc_01``; any other value as written (``one/tool`` is then refused as a venv
    name, rather than silently merged with ``two/tool``)."""
    for prefix in ("./venv/", "venv/", "./venvs/", "venvs/"):
        if value.startswith(prefix) and "/" not in value[len(prefix) :].rstrip("/"):
            return value[len(prefix) :].rstrip("/") or value
    return value


# --------------------------------------------------------------------------- building


def _env_vars(entries: list[dict[str, Any]]) -> tuple[EnvVar, ...]:
    return tuple(EnvVar(e["key"], e["value"], bool(e.get("secret", False))) for e in entries)


def _build_project(document: dict[str, Any], *, source: str) -> Project:
    tasks, stage_lists = _tasks(document, source)
    return Project(
        tasks=tuple(tasks),
        installs=_installs(document, stage_lists),
        envs=_env_vars(document.get("envs", [])),
        vars={v["key"]: v["value"] for v in document.get("vars", [])},
        files=tuple(ConfigFile(f["name"], f["value"]) for f in document.get("files", [])),
        schedules=tuple(
            Schedule(
                cron=s["cron"],
                target_id=s.get("target_id"),
                description=s.get("description"),
                envs=_env_vars(s.get("envs", [])),
                vars={v["key"]: v["value"] for v in s.get("vars", [])},
            )
            for s in document.get("schedules", [])
        ),
        deploy=document.get("deploy", {}),
        transfers=transfers_from_document(document, source),
        document=document,
        description=document.get("description"),
        source=source,
        state_format=document.get("state_format", "text"),
        secrets=secret_refs(document, source),
    )


def _tasks(
    document: Mapping[str, Any], source: str
) -> tuple[list[Task], list[list[dict[str, Any]]]]:
    """The tasks (each built by its kind), and the stage lists of those running processes."""
    tasks: list[Task] = []
    stage_lists: list[list[dict[str, Any]]] = []
    if "commands" in document:
        stage_lists.append(document["commands"])
        tasks.append(
            Task(DEFAULT_TASK_NAME, "pipeline", commands_of(document["commands"], "commands"))
        )
    for index, entry in enumerate(document.get("tasks", [])):
        (kind,) = kinds_in(entry)
        timeout = entry.get("timeout")
        fields = with_source(source, kind.build, entry, where=f"tasks[{index}]")
        tasks.append(
            Task(
                name=entry["name"],
                kind=kind.key,
                active=entry.get("active", True),
                timeout=float(timeout) if timeout is not None else None,
                description=entry.get("description"),
                **fields,
            )
        )
        if kind.runs_processes:
            stage_lists.append(entry[kind.key])
    return tasks, stage_lists


def _installs(
    document: Mapping[str, Any], stage_lists: list[list[dict[str, Any]]]
) -> dict[str, tuple[str, ...]]:
    """Every venv in order of first use -> its install commands (top-level ``installs``
    first, then each stage's; duplicates dropped)."""
    installs: dict[str, list[str]] = {}

    def add_install(venv: str, command: str | None) -> None:
        commands = installs.setdefault(venv, [])
        if command is not None and command not in commands:
            commands.append(command)

    for entry in document.get("installs", []):
        add_install(entry["venv"], entry["command"])
    for stages in stage_lists:
        for stage in stages:
            if "venv" in stage:
                add_install(stage["venv"], None)
                for command in stage.get("installs", []):
                    add_install(stage["venv"], command)
    return {venv: tuple(commands) for venv, commands in installs.items()}
