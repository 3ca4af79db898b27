"""Schema errors as one line: the key path, what is wrong and a "did you mean" hint, never
the offending value (it may be a secret)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from handoff_provider.core.load.document_limits import type_name as _type_name
from handoff_provider.core.load.project_schema import project_schema
from handoff_provider.core.model.transfers import OTF_KEY_HINTS

#: Schema errors listed in one message (each names its own key path).
_MAX_ERRORS = 3


def schema_problems(document: Any) -> str | None:
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
        words = " or ".join(_TYPE_WORDS.get(w) or str(w) for w in wanted)
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
