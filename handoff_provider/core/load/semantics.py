"""What the project schema doesn't say: the form (seed or task), one kind per task,
unique names and keys, venv names, reserved variables, config file names, transfers and
``secrets:`` entries. Errors name the source and key path, never a value."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.model.context import RunContext
from handoff_provider.core.model.project import CONFIG_DIR
from handoff_provider.core.model.secrets import SecretRef
from handoff_provider.core.model.transfers import TransfersSpec
from handoff_provider.core.steps import kinds_in, one_of_hint
from handoff_provider.core.steps.process import check_stages, check_venv_name

_T = TypeVar("_T")
#: Variable names the run context provides; a project var may not shadow them.
RESERVED_VARS = frozenset(RunContext().as_variables())


def check_semantics(document: dict[str, Any], *, source: str) -> None:
    """What the schema doesn't say: forms, uniqueness, names. Never prints values."""
    with_source(source, _check_form, document)
    with_source(source, _check_tasks, document)
    with_source(source, _check_keys, document)
    transfers_from_document(document, source)
    secret_refs(document, source)
    with_source(source, _check_files, document)


def _fail(where: str, message: str) -> ProjectError:
    return ProjectError(f"{where + ': ' if where else ''}{message}")


def _check_form(document: Mapping[str, Any]) -> None:
    has_commands, has_tasks = "commands" in document, "tasks" in document
    if has_commands == has_tasks:
        raise _fail(
            "",
            "use either 'commands' (seed form: one pipeline) or 'tasks' (task form)"
            + (", not both" if has_commands else ""),
        )
    if has_commands:
        check_stages(document["commands"], "commands")


def _check_tasks(document: Mapping[str, Any]) -> None:
    """Each task: one kind (checked by the kind), a name of its own; venv names."""
    seen_tasks: dict[str, int] = {}
    for index, task in enumerate(document.get("tasks", [])):
        where = f"tasks[{index}]"
        kinds = kinds_in(task)
        if len(kinds) != 1:
            raise _fail(where, f"needs exactly one of {one_of_hint()}")
        if task["name"] in seen_tasks:
            raise _fail(
                f"{where}.name",
                f"duplicate task name {task['name']!r} (also tasks[{seen_tasks[task['name']]}])",
            )
        seen_tasks[task["name"]] = index
        kinds[0].validate(task, where=where)
    for index, entry in enumerate(document.get("installs", [])):
        check_venv_name(entry["venv"], f"installs[{index}].venv")


def _check_keys(document: Mapping[str, Any]) -> None:
    """``envs``/``vars`` keys unique (also a schedule's); no var shadows the run context."""
    _check_unique_keys(document.get("envs", []), "envs")
    _check_unique_keys(document.get("vars", []), "vars")
    for index, var in enumerate(document.get("vars", [])):
        if var["key"] in RESERVED_VARS:
            raise _fail(
                f"vars[{index}].key",
                f"{var['key']!r} is a run context variable; choose another name",
            )
    for index, schedule in enumerate(document.get("schedules", [])):
        _check_unique_keys(schedule.get("envs", []), f"schedules[{index}].envs")
        _check_unique_keys(schedule.get("vars", []), f"schedules[{index}].vars")


def _check_files(document: Mapping[str, Any]) -> None:
    seen_files: set[str] = set()
    for index, config_file in enumerate(document.get("files", [])):
        name = config_file["name"]
        problem = _config_name_problem(name)
        if problem:
            raise _fail(f"files[{index}].name", f"{name!r} {problem}")
        if name in seen_files:
            raise _fail(f"files[{index}].name", f"duplicate file name {name!r}")
        seen_files.add(name)


def secret_refs(document: Mapping[str, Any], source: str) -> tuple[SecretRef, ...]:
    """The ``secrets:`` entries; each must name a config file of the project."""
    names = [f["name"] for f in document.get("files", [])]
    refs = []
    for index, text in enumerate(document.get("secrets", [])):
        where = f"{source}: secrets[{index}]"
        ref = SecretRef.parse(text, where=where)
        if ref.file not in names:
            known = ", ".join(repr(n) for n in names) or f"none: {CONFIG_DIR}/ is empty"
            raise ProjectError(f"{where}: no config file {ref.file!r} (config files: {known})")
        refs.append(ref)
    return tuple(refs)


def with_source(source: str, check: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``check(*args, **kwargs)``, its ``ProjectError`` prefixed with ``source``."""
    try:
        return check(*args, **kwargs)
    except ProjectError as exc:
        raise ProjectError(f"{source}: {exc}") from None


def transfers_from_document(document: Mapping[str, Any], source: str) -> TransfersSpec:
    try:
        return TransfersSpec.from_mapping(document.get("transfers"), path="transfers")
    except ProjectError as exc:
        raise ProjectError(f"{source}: {exc}") from None


def _check_unique_keys(entries: list[dict[str, Any]], where: str) -> None:
    first: dict[str, int] = {}
    for index, entry in enumerate(entries):
        key = entry["key"]
        if key in first:
            raise _fail(
                f"{where}[{index}].key", f"duplicate key {key!r} (also {where}[{first[key]}])"
            )
        first[key] = index


def _config_name_problem(name: str) -> str | None:
    """Why ``name`` can't be a config file name (relative, ``/``-separated, no escape)."""
    if "\\" in name or "\0" in name:
        return "contains '\\' or a NUL character"
    if name.startswith("/") or os.path.isabs(name):
        return "is absolute (config file names are relative to config/)"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' part (config file names must stay inside config/)"
    return None
