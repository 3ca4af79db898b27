"""The project model: load and validate ``project.yml`` + ``config/``, compile the document.

A project directory holds ``project.yml``, ``config/`` (files embedded into the compiled
document, which is stored as an SSM SecureString) and ``files/`` (synced to S3, not
handled here). ``project.yml`` comes in two forms:

* seed form: top-level ``commands:`` is one pipeline; it becomes the task ``default``;
* task form: top-level ``tasks:``, each with a ``pipeline:`` (stages joined by pipes),
  ``commands:`` (run one after the other), ``lambda:`` (invoke an AWS Lambda function,
  :class:`~handoff_provider.core.aws.lambda_invoke.LambdaStep`) or ``s3_touch:`` (write an
  empty flag object, :class:`~handoff_provider.core.aws.s3_transfers.TouchStep`).

Both forms may also have ``description``, ``installs``, ``envs``, ``vars``, ``transfers``
(S3 inputs/outputs around the run, :class:`~handoff_provider.core.aws.s3_transfers.TransfersSpec`),
``schedules`` and ``deploy``; every stage may have ``args``, ``venv`` and ``installs``.

Validation is in two layers. The structure (keys, types, patterns) is the JSON Schema in
``project_schema.json``: adding a top-level key or a stage property is a local change
there (plus, for a new key, one line in :func:`_build_project`). Its errors are rewritten
into one-line messages with the key path and a "did you mean" hint, and never the value.
What a schema can't say well (one of ``pipeline``/``commands``, duplicate names, venv
names, config file names) is checked in :func:`_check_semantics`.

The compiled document is the canonical, normalised form of ``project.yml`` (keys in
schema order, numbers given as strings where a string is meant, ``venv: ./venv/x``
normalised to ``x`` as the seeds' own compiled output shows) plus ``files``. It goes
through exactly the same validation when it comes back from SSM.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from handoff_provider.core.aws.s3_transfers import (
    OTF_KEY_HINTS,
    InputSpec,
    OutputSpec,
    TransfersSpec,
)
from handoff_provider.core.aws.s3_watch import normalize_prefix
from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load.project_schema import project_schema
from handoff_provider.core.load.project_yaml import MAX_PROJECT_BYTES, check_depth, parse_yaml
from handoff_provider.core.load.project_yaml import type_name as _type_name
from handoff_provider.core.load.safe_tree import read_regular_file, shown, walk_tree
from handoff_provider.core.model.context import RunContext
from handoff_provider.core.model.secrets import (
    SENSITIVE_KEY_WORDS,
    SecretRef,
    config_file_secrets,
    maskable,
)
from handoff_provider.core.steps import kind_named, kinds_in, one_of_hint
from handoff_provider.core.steps.process import check_stages, check_venv_name, commands_of

#: A task's kind: the key of its kind in project.yml (:data:`handoff_provider.core.steps.KINDS`).
TaskKind = str
StateFrom = Literal["stdout", "stderr", "none"]
StateOnFailure = Literal["discard", "last_line"]
StateFormat = Literal["text", "json"]

_T = TypeVar("_T")

#: The task name a seed-form project (top-level ``commands:``) gets.
DEFAULT_TASK_NAME = "default"
PROJECT_FILE = "project.yml"
CONFIG_DIR = "config"
#: All files of ``config/`` together (they are embedded in one document).
MAX_CONFIG_BYTES = 4 << 20

#: Schema errors listed in one message (each names its own key path).
_MAX_ERRORS = 3
#: Variable names the run context provides; a project var may not shadow them.
RESERVED_VARS = frozenset(RunContext().as_variables())


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Command:
    """One stage of a pipeline (or one step of a ``commands:`` task).

    ``args`` is the unrendered template string; the runner renders it, then splits it
    with :func:`handoff_provider.core.load.templating.split_args`. ``location`` is the
    document path (``tasks[0].pipeline[1]``) for error messages, e.g.
    ``f"{project.source}: {command.location}.args"``.
    """

    command: str
    args: str = ""
    venv: str | None = None
    location: str = field(default="", compare=False)


@dataclass(frozen=True)
class Task:
    """A named pipeline (stages joined by OS pipes), a list of commands run in order, or
    one AWS step (``kind`` ``lambda`` / ``s3_touch``: ``step`` holds its unrendered spec
    and ``commands`` is empty)."""

    name: str
    kind: TaskKind
    commands: tuple[Command, ...]
    active: bool = True
    timeout: float | None = None
    state_from: StateFrom = "stdout"
    #: What a failed run leaves as the state: ``discard`` (nothing: the previous state
    #: stays) or ``last_line`` (the last complete line the task's state output wrote).
    state_on_failure: StateOnFailure = "discard"
    description: str | None = None
    #: The spec of a kind that is one call (``LambdaStep``, ``TouchStep``; see core/steps/).
    step: Any = None
    #: A ``commands:`` task's stdout (all but the state) also goes to the log.
    log_stdout: bool = True


@dataclass(frozen=True)
class EnvVar:
    """An environment variable exported to every command (value hidden from repr)."""

    key: str
    value: str = field(repr=False)
    secret: bool = False


@dataclass(frozen=True)
class ConfigFile:
    """A file of ``config/`` embedded in the document (``name`` relative, ``/``-separated)."""

    name: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class Schedule:
    """A schedule entry (cron: 5-field standard or 6-field AWS EventBridge, kept as is)."""

    cron: str
    target_id: str | None = None
    description: str | None = None
    envs: tuple[EnvVar, ...] = ()
    vars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """A validated project (from a directory or from a compiled document).

    ``installs`` maps every venv the project uses (in order of first use) to its install
    commands: top-level ``installs`` first, then each stage's, duplicates dropped. A venv
    with no install commands is still listed (and created). ``source`` names where the
    project came from (``<dir>/project.yml`` or ``remote config``) for error messages.
    """

    tasks: tuple[Task, ...]
    installs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    envs: tuple[EnvVar, ...] = ()
    vars: Mapping[str, str] = field(default_factory=dict)
    files: tuple[ConfigFile, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    deploy: Mapping[str, Any] = field(default_factory=dict)
    transfers: TransfersSpec = field(default_factory=TransfersSpec)
    document: Mapping[str, Any] = field(default_factory=dict, repr=False)
    description: str | None = None
    source: str = field(default=PROJECT_FILE, compare=False)
    #: ``state_format: json`` makes ``handoff state set`` refuse a state that isn't JSON.
    state_format: StateFormat = "text"

    @property
    def stateful(self) -> bool:
        """Whether a run carries state to the next (an active task writes ``state``)."""
        return any(task.active and task.state_from != "none" for task in self.tasks)

    #: ``secrets:`` entries (config files / JSONPaths whose values are secrets).
    secrets: tuple[SecretRef, ...] = ()

    def active_tasks(self) -> tuple[Task, ...]:
        """The tasks a run executes, in project order."""
        return tuple(task for task in self.tasks if task.active)

    def task(self, name: str) -> Task:
        """The task called ``name`` (``ProjectError`` naming the known tasks otherwise)."""
        for task in self.tasks:
            if task.name == name:
                return task
        known = ", ".join(repr(t.name) for t in self.tasks)
        raise ProjectError(f"{self.source}: no task {name!r} (tasks: {known})")

    def uses_aws(self) -> bool:
        """Whether a run needs AWS clients of its own (transfers, lambda, s3_touch)."""
        return bool(self.transfers.inputs or self.transfers.outputs) or any(
            task.active and task.step is not None for task in self.tasks
        )

    def shell_lines(self) -> list[str]:
        """The tasks as shell lines, for ``handoff show commands``.

        A pipeline is one line (``cat files/a.txt | wc -l``); a ``commands:`` task one
        line per command. With several tasks (or an inactive/limited one) each gets a
        ``# task: name`` header. A stage in a venv is shown as ``venvs/<name>/bin/<cmd>``,
        or, when the command is a path, with the venv's ``bin`` put first on ``PATH``
        (which is what the runner does). ``args`` are shown unrendered. A ``lambda`` /
        ``s3_touch`` task is shown as the equivalent AWS CLI command; ``transfers`` as
        ``#`` comment lines, inputs before the tasks and outputs after them.
        """
        lines: list[str] = [
            f"# transfers.inputs[{index}]: {_input_line(spec)}"
            for index, spec in enumerate(self.transfers.inputs)
        ]
        with_headers = len(self.tasks) > 1 or any(
            not t.active or t.timeout is not None for t in self.tasks
        )
        for task in self.tasks:
            if with_headers:
                notes = [task.kind]
                if not task.active:
                    notes.append("inactive")
                if task.timeout is not None:
                    notes.append(f"timeout {task.timeout:g}s")
                lines.append(f"# task: {task.name} ({', '.join(notes)})")
            lines.extend(kind_named(task.kind).describe(task))
        lines.extend(
            f"# transfers.outputs[{index}]: {_output_line(spec)}"
            for index, spec in enumerate(self.transfers.outputs)
        )
        return lines

    def secret_values(self, sensitive_words: Iterable[str] = SENSITIVE_KEY_WORDS) -> list[str]:
        """The values to mask (:mod:`handoff_provider.core.model.secrets` says which): config
        values under sensitive-looking keys or declared in ``secrets:``, and ``secret:
        true`` env values. ``sensitive_words``: the key words (the Airflow layer passes
        Airflow's own list). Too short values are dropped; order kept, deduped."""
        values: list[str] = []
        for config_file in self.files:
            values.extend(
                config_file_secrets(
                    config_file.name, config_file.value, self.secrets, words=sensitive_words
                )
            )
        env_sets = [self.envs, *(schedule.envs for schedule in self.schedules)]
        values.extend(env.value for envs in env_sets for env in envs if env.secret)
        return maskable(values)


def _s3_folder(bucket: str, directory: str) -> str:
    return f"s3://{bucket}/{normalize_prefix(directory)}"


def _input_line(spec: InputSpec) -> str:
    dest = f"files/{spec.dest.strip('/')}/" if spec.dest else "files/"
    text = f"{_s3_folder(spec.bucket, spec.directory)} =~ {spec.file_regex} -> {dest}"
    if spec.min_count is not None or spec.max_count is not None:
        text += f" (needs {spec.criteria().wanted()} object(s))"
    post = spec.post_copy
    if post is not None and post.action in ("move", "rename"):
        where = post.archive_directory or ""
        if post.archive_bucket:
            where = f"s3://{post.archive_bucket}/{where}"
        if post.action == "move":
            text += f" (after success: move to {where})"
        else:
            text += f" (after success: rename {post.pattern} -> {post.replacement}"
            text += f" into {where})" if where else ")"
    elif post is not None:
        text += " (after success: delete)"
    return text


def _output_line(spec: OutputSpec) -> str:
    text = spec.source + (f" =~ {spec.file_regex}" if spec.file_regex else "")
    text += f" -> {_s3_folder(spec.bucket, spec.directory)}"
    if spec.flag:
        text += f" (then flag s3://{spec.bucket}/{spec.flag})"
    return text


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
    """``project_from_document(compile_document(dir))``, errors naming ``<dir>/project.yml``."""
    project_dir = Path(project_dir)
    return project_from_document(
        compile_document(project_dir), source=str(project_dir / PROJECT_FILE)
    )


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
    data = parse_yaml(text, source=source)
    if not isinstance(data, dict):
        raise ProjectError(
            f"{source}: the top level must be a mapping with 'commands' (seed form) or "
            f"'tasks' (task form) (got {_type_name(data)})"
        )
    return data


# --------------------------------------------------------------------------- validation


def _normalise(document: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Validate ``document`` and return its canonical form (a new dict)."""
    problems = _schema_problems(document)
    if problems:
        raise ProjectError(f"{source}: {problems}")
    canonical = _canonical(document, project_schema())
    _check_semantics(canonical, source=source)
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


def _schema_problems(document: Any) -> str | None:
    """``None`` when ``document`` follows the schema, else one line describing the errors.

    The check is the schema compiled ahead of time by fastjsonschema
    (``_project_validator.py``, see scripts/generate_project_validator.py): it costs a few
    milliseconds, where importing jsonschema costs a third of a second. It stops at the
    first error, so a rejected document is validated again by jsonschema, which reports
    every error (the first few are shown, in document order). The compiled check is the
    stricter one in a corner (its ``$`` doesn't match before a trailing newline): when
    jsonschema finds nothing, its own first error is described.
    """
    from fastjsonschema import JsonSchemaValueException

    from handoff_provider.core.load._project_validator import validate

    try:
        validate(document)
        return None
    except JsonSchemaValueException as exc:
        first = exc
    from jsonschema import Draft202012Validator

    errors = sorted(
        Draft202012Validator(project_schema()).iter_errors(document),
        key=lambda e: _error_order(document, e.absolute_path),
    )
    if not errors:
        path = [int(p) if p.isdigit() else p for p in first.path[1:]]  # [0] is "data"
        return _describe(path, first.rule, first.definition, first.value)
    shown = "; ".join(
        _describe(e.absolute_path, e.validator, e.schema, e.instance) for e in errors[:_MAX_ERRORS]
    )
    more = f" (and {len(errors) - _MAX_ERRORS} more)" if len(errors) > _MAX_ERRORS else ""
    return f"{shown}{more}"


def _error_order(document: Any, error_path: Iterable[Any]) -> list[int]:
    """Position of an error in document order (keys in the order they were written)."""
    order: list[int] = []
    node = document
    for step in error_path:
        if isinstance(node, dict):
            order.append(list(node).index(step))
        elif isinstance(node, list):
            order.append(step)
        node = node[step]
    return order


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "empty",
}


def _describe(path: Iterable[Any], kind: Any, schema: Any, instance: Any) -> str:
    """One line for a schema error: key path + what is wrong, never the offending value.

    ``kind`` is the failing keyword (``type``, ``required``, ...), ``schema`` the
    (sub)schema holding it and ``instance`` the part of the document it rejects.
    """
    where = _path(path)
    prefix = f"{where}: " if where else ""
    schema = schema if isinstance(schema, Mapping) else {}
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        unknown = [key for key in instance if key not in allowed]
        return prefix + "; ".join(_unknown_key(key, allowed) for key in unknown)
    if kind == "required":
        missing = [key for key in schema.get("required", []) if key not in instance]
        return prefix + ", ".join(f"missing key '{key}'" for key in missing)
    if kind == "type":
        wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        words = " or ".join(_TYPE_WORDS.get(w, w) for w in wanted)
        hint = ""
        if isinstance(instance, bool) and "string" in wanted:
            hint = "; quote it if you meant the text"
        return f"{prefix}must be {words} (got {_type_name(instance)}{hint})"
    if kind in ("minItems", "minLength"):
        return f"{prefix}must not be empty"
    if kind == "maxLength":
        # e.g. a task name: it names files (artifacts/<task>.<n>.stderr.log) and Airflow tasks
        return f"{prefix}must be at most {schema['maxLength']} characters"
    if kind == "pattern":
        hint = schema.get("x-hint", f"matching {schema['pattern']}")
        return f"{prefix}{instance!r} is not {hint}"
    if kind == "enum":
        return f"{prefix}must be one of " + ", ".join(repr(v) for v in schema["enum"])
    if kind == "minimum":
        return f"{prefix}must be at least {schema['minimum']:g}"
    if kind == "exclusiveMinimum":
        return f"{prefix}must be greater than {schema['exclusiveMinimum']:g}"
    return f"{prefix}invalid value ({kind})"


def _unknown_key(key: Any, allowed: list[str]) -> str:
    import difflib  # error path only

    # Users coming from Open Task Framework write its camelCase names (fileRegex, ...).
    otf = OTF_KEY_HINTS.get(str(key))
    close = [otf] if otf in allowed else []
    close = close or difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key '{key}' (did you mean '{close[0]}'?)"
    return f"unknown key '{key}' (allowed: {', '.join(allowed)})"


def _check_semantics(document: dict[str, Any], *, source: str) -> None:
    """What the schema doesn't say: forms, uniqueness, names. Never prints values."""

    def fail(where: str, message: str) -> None:
        raise ProjectError(f"{source}: {where + ': ' if where else ''}{message}")

    has_commands, has_tasks = "commands" in document, "tasks" in document
    if has_commands == has_tasks:
        fail(
            "",
            "use either 'commands' (seed form: one pipeline) or 'tasks' (task form)"
            + (", not both" if has_commands else ""),
        )
    if has_commands:
        _with_source(source, check_stages, document["commands"], "commands")
    seen_tasks: dict[str, int] = {}
    for index, task in enumerate(document.get("tasks", [])):
        where = f"tasks[{index}]"
        kinds = kinds_in(task)
        if len(kinds) != 1:
            fail(where, f"needs exactly one of {one_of_hint()}")
        if task["name"] in seen_tasks:
            fail(
                f"{where}.name",
                f"duplicate task name {task['name']!r} (also tasks[{seen_tasks[task['name']]}])",
            )
        seen_tasks[task["name"]] = index
        _with_source(source, kinds[0].validate, task, where=where)
    for index, entry in enumerate(document.get("installs", [])):
        _with_source(source, check_venv_name, entry["venv"], f"installs[{index}].venv")

    _check_unique_keys(document.get("envs", []), "envs", fail)
    _check_unique_keys(document.get("vars", []), "vars", fail)
    for index, var in enumerate(document.get("vars", [])):
        if var["key"] in RESERVED_VARS:
            fail(
                f"vars[{index}].key",
                f"{var['key']!r} is a run context variable; choose another name",
            )
    for index, schedule in enumerate(document.get("schedules", [])):
        _check_unique_keys(schedule.get("envs", []), f"schedules[{index}].envs", fail)
        _check_unique_keys(schedule.get("vars", []), f"schedules[{index}].vars", fail)

    _transfers_from_document(document, source)

    _secret_refs(document, source)

    seen_files: set[str] = set()
    for index, config_file in enumerate(document.get("files", [])):
        name = config_file["name"]
        problem = _config_name_problem(name)
        if problem:
            fail(f"files[{index}].name", f"{name!r} {problem}")
        if name in seen_files:
            fail(f"files[{index}].name", f"duplicate file name {name!r}")
        seen_files.add(name)


def _secret_refs(document: Mapping[str, Any], source: str) -> tuple[SecretRef, ...]:
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


def _with_source(source: str, check: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``check(*args, **kwargs)``, its ``ProjectError`` prefixed with ``source``."""
    try:
        return check(*args, **kwargs)
    except ProjectError as exc:
        raise ProjectError(f"{source}: {exc}") from None


def _transfers_from_document(document: Mapping[str, Any], source: str) -> TransfersSpec:
    try:
        return TransfersSpec.from_mapping(document.get("transfers"), path="transfers")
    except ProjectError as exc:
        raise ProjectError(f"{source}: {exc}") from None


def _check_unique_keys(entries: list[dict[str, Any]], where: str, fail: Any) -> None:
    first: dict[str, int] = {}
    for index, entry in enumerate(entries):
        key = entry["key"]
        if key in first:
            fail(f"{where}[{index}].key", f"duplicate key {key!r} (also {where}[{first[key]}])")
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


# --------------------------------------------------------------------------- building


def _env_vars(entries: list[dict[str, Any]]) -> tuple[EnvVar, ...]:
    return tuple(EnvVar(e["key"], e["value"], bool(e.get("secret", False))) for e in entries)


def _build_project(document: dict[str, Any], *, source: str) -> Project:
    installs: dict[str, list[str]] = {}

    def add_install(venv: str, command: str | None) -> None:
        commands = installs.setdefault(venv, [])
        if command is not None and command not in commands:
            commands.append(command)

    for entry in document.get("installs", []):
        add_install(entry["venv"], entry["command"])

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
        fields = _with_source(source, kind.build, entry, where=f"tasks[{index}]")
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
    for stages in stage_lists:
        for stage in stages:
            if "venv" in stage:
                add_install(stage["venv"], None)
                for command in stage.get("installs", []):
                    add_install(stage["venv"], command)

    return Project(
        tasks=tuple(tasks),
        installs={venv: tuple(commands) for venv, commands in installs.items()},
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
        transfers=_transfers_from_document(document, source),
        document=document,
        description=document.get("description"),
        source=source,
        state_format=document.get("state_format", "text"),
        secrets=_secret_refs(document, source),
    )
