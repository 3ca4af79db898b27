"""The ahead-of-time compiled schema check (``_project_validator.py``) agrees with jsonschema.

Projects are checked by fastjsonschema's compiled code (cheap to import) and only a
rejected document goes through jsonschema for the messages; so the two must accept and
reject the same documents. These tests mutate a document that uses every key of the
schema, at every place, in every way a user's YAML can go wrong, and compare.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastjsonschema import JsonSchemaValueException
from jsonschema import Draft202012Validator

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load import _project_validator
from handoff_provider.core.load.project import project_from_document
from handoff_provider.core.load.project_schema import compose, project_schema, schema_digest

SCHEMA = project_schema()

# Schema-valid (not necessarily a sensible project): every property of the schema is used.
FULL = {
    "description": "all keys",
    "installs": [{"venv": "./venv/tools", "command": "pip install x"}],
    "envs": [{"key": "A_1", "value": "v", "secret": True}, {"key": "B", "value": 3}],
    "vars": [{"key": "v1", "value": "x"}, {"key": "v2", "value": 2.5}],
    "state_format": "json",
    "secrets": ["a.json", "b.json:$.auth"],
    "commands": [{"command": "cat", "args": "-n", "venv": "tools", "installs": ["pip x"]}],
    "tasks": [
        {
            "name": "t.1-a",
            "description": "d",
            "active": False,
            "timeout": 1.5,
            "state_from": "stderr",
            "state_on_failure": "last_line",
            "log_stdout": False,
            "pipeline": [{"command": "cat", "args": 1}],
            "commands": [{"command": "echo"}],
            "lambda": {
                "function": "f",
                "invocation_type": "Event",
                "payload": {"any": ["thing", 1]},
                "qualifier": "live",
            },
            "s3_touch": {"bucket": "b", "key": "k", "disable_bucket_owner_acl": True},
        }
    ],
    "transfers": {
        "inputs": [
            {
                "bucket": "b",
                "directory": "in",
                "file_regex": ".*",
                "dest": "d",
                "min_size": 0,
                "max_size": 10,
                "min_age": 0,
                "max_age": 1.5,
                "min_count": 1,
                "max_count": 3,
                "required": True,
                "post_copy": {
                    "action": "rename",
                    "archive_directory": "a",
                    "archive_bucket": "c",
                    "pattern": "x",
                    "replacement": "y",
                },
                "disable_bucket_owner_acl": False,
            }
        ],
        "outputs": [
            {
                "source": "artifacts/*",
                "file_regex": "x",
                "bucket": "b",
                "directory": "out",
                "flag": "f.flg",
                "required": False,
                "disable_bucket_owner_acl": True,
            }
        ],
    },
    "schedules": [
        {
            "target_id": 7,
            "cron": "0 1 * * ? *",
            "description": "s",
            "envs": [{"key": "K", "value": "v"}],
            "vars": [{"key": "k", "value": "v"}],
        }
    ],
    "deploy": {"anything": 1},
    "files": [{"name": "c.json", "value": "{}"}],
}

REPLACEMENTS = [None, True, False, 0, -1, 1.0, 1.5, "", " ", "x", "a b", [], ["x"], {}, {"z": 1}]


def _places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _places(value, (*path, index))


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    document = copy.deepcopy(document)
    if not path:
        return value
    node = document
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return document


def _mutants() -> Iterator[Any]:
    for path in _places(FULL):
        for value in REPLACEMENTS:
            yield _set(FULL, path, value)
        if path:
            parent = FULL
            for step in path[:-1]:
                parent = parent[step]
            if isinstance(parent, dict):
                document = copy.deepcopy(FULL)
                node = document
                for step in path[:-1]:
                    node = node[step]
                del node[path[-1]]
                yield document
        target = FULL
        for step in path:
            target = target[step]
        if isinstance(target, dict):
            yield _set(FULL, path, {**target, "unknown_key": 1})


def _fast_accepts(document: Any) -> bool:
    try:
        _project_validator.validate(document)
    except JsonSchemaValueException:
        return False
    return True


def test_generated_code_is_from_the_current_schema() -> None:
    assert schema_digest() == _project_validator.SCHEMA_SHA256, (
        "the project schema (project_schema.json or a kind's fragment) changed: "
        "run `make project-validator`"
    )
    # What loading reads is what was compiled, key order included (the canonical order
    # of a compiled document's keys; == on dicts would ignore it).
    assert json.dumps(project_schema()) == json.dumps(compose())


def test_the_full_document_uses_every_property_of_the_schema() -> None:
    used: set[str] = set()
    for path in _places(FULL):
        used.update(str(step) for step in path if isinstance(step, str))
    declared: set[str] = set()

    def collect(schema: Any) -> None:  # every property, also of inline (kind) fragments
        if isinstance(schema, dict):
            declared.update(schema.get("properties", {}))
            for value in schema.values():
                collect(value)

    collect(SCHEMA)
    assert declared - used == set()


def test_both_validators_accept_the_full_document() -> None:
    assert _fast_accepts(FULL)
    assert list(Draft202012Validator(SCHEMA).iter_errors(FULL)) == []


def test_both_validators_agree_on_every_mutation() -> None:
    jsonschema = Draft202012Validator(SCHEMA)
    disagreements = []
    count = 0
    for document in _mutants():
        count += 1
        slow = not any(True for _ in jsonschema.iter_errors(document))
        if _fast_accepts(document) != slow:
            disagreements.append((slow, json.dumps(document)[:300]))
    assert count > 1000
    assert disagreements == []


def test_the_check_does_not_change_the_document() -> None:
    document = copy.deepcopy(FULL)
    _project_validator.validate(document)
    assert document == FULL


@pytest.mark.parametrize("name", ["task\n", "ok\n"])
def test_a_trailing_newline_is_refused_where_only_the_compiled_check_sees_it(name: str) -> None:
    """jsonschema's ``$`` matches before a final newline, the compiled check's doesn't:
    the error is still one line naming the field."""
    document = {"tasks": [{"name": name, "commands": [{"command": "true"}]}]}
    assert list(Draft202012Validator(SCHEMA).iter_errors(document)) == []
    with pytest.raises(ProjectError) as caught:
        project_from_document(document, source="p/project.yml")
    message = str(caught.value)
    assert message.startswith("p/project.yml: tasks[0].name: ")
    assert "\n" not in message.replace("\\n", "")


def test_the_kind_registry_names_each_module_by_its_kind() -> None:
    """``KIND_MODULES`` (imported lazily) says which module holds each key's kind: each
    module's ``KIND.key`` is its key, and every kind module of the package is listed."""
    import importlib
    import pkgutil

    from handoff_provider.core import steps

    for key, module in steps.KIND_MODULES.items():
        kind = importlib.import_module(f"{steps.__name__}.{module}").KIND
        assert kind.key == key and steps.kind_named(key) is kind
    with_kind = {
        info.name
        for info in pkgutil.iter_modules(steps.__path__)
        if hasattr(importlib.import_module(f"{steps.__name__}.{info.name}"), "KIND")
    }
    assert with_kind == set(steps.KIND_MODULES.values())
