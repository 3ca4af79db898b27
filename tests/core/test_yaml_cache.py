"""The parse cache of ``project.yml`` (core/load/yaml_cache.py): used only for the very
text it was made from, never for a failed parse or a value JSON can't carry, and never
in the way (an unreadable or unwritable cache is a plain parse)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.load import yaml_cache
from handoff_provider.core.load.project import compile_document
from handoff_provider.core.load.yaml_cache import cache_file, parse_cached

YML = "tasks:\n  - name: t\n    pipeline:\n      - command: cat\n        args: a.txt\n"


class CountingParser:
    """Stands in for the YAML parser to count calls; returns what ``result`` says."""

    def __init__(self, result: object) -> None:
        self.result = result
        self.calls = 0

    def __call__(self, text: str) -> object:
        self.calls += 1
        return self.result


def test_compile_document_reuses_the_parse_of_unchanged_text(make_project) -> None:
    project = make_project(YML)
    first = compile_document(project)
    entry = cache_file(project / "project.yml")
    assert entry.is_file()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert (project / ".handoff" / ".gitignore").read_text().endswith("*\n")
    # A cache entry whose data differs shows whether it is what compile_document used.
    doctored = json.loads(entry.read_text())
    doctored["data"]["tasks"][0]["pipeline"][0]["args"] = "from-the-cache.txt"
    entry.write_text(json.dumps(doctored))
    second = compile_document(project)
    assert second["tasks"][0]["pipeline"][0]["args"] == "from-the-cache.txt"
    assert first["tasks"][0]["pipeline"][0]["args"] == "a.txt"


def test_an_edit_keeping_size_and_mtime_is_parsed_again(make_project) -> None:
    """No timestamp is trusted: the text itself is compared."""
    project = make_project(YML)
    project_yml = project / "project.yml"
    compile_document(project)
    before = project_yml.stat()
    project_yml.write_text(YML.replace("a.txt", "b.txt"))
    os.utime(project_yml, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert project_yml.stat().st_size == before.st_size
    assert compile_document(project)["tasks"][0]["pipeline"][0]["args"] == "b.txt"


def test_a_failed_parse_is_not_kept_and_fails_again_the_same_way(make_project) -> None:
    project = make_project("tasks: [\n")
    for _ in range(2):
        with pytest.raises(ProjectError, match=r"project\.yml: line \d+, column \d+: YAML syntax"):
            compile_document(project)
    assert not cache_file(project / "project.yml").exists()


def test_a_valid_parse_of_an_invalid_project_still_fails_validation(make_project) -> None:
    """What is cached is the parse, not a verdict: validation runs on every load."""
    project = make_project("tasks:\n  - name: t\n    pipelin: []\n")
    for _ in range(2):
        with pytest.raises(ProjectError, match="pipelin"):
            compile_document(project)
    assert cache_file(project / "project.yml").exists()


@pytest.mark.parametrize(
    "value", [b"bytes", {1, 2}, float("nan"), (1, 2), {"k": float("inf")}], ids=repr
)
def test_values_json_does_not_carry_exactly_are_not_kept(tmp_path: Path, value: object) -> None:
    project_file = tmp_path / "project.yml"
    parser = CountingParser(value)
    for _ in range(2):
        assert parse_cached(project_file, "x: 1\n", parser) is value
    assert parser.calls == 2
    assert not cache_file(project_file).exists()


def test_json_values_are_kept_with_their_types(tmp_path: Path) -> None:
    value = {"a": [1, 1.0, True, None, "2024-01-01"], "b": {"c": -0.5}}
    project_file = tmp_path / "project.yml"
    parser = CountingParser(value)
    assert parse_cached(project_file, "t\n", parser) == value
    again = parse_cached(project_file, "t\n", parser)
    assert parser.calls == 1
    assert again == value
    assert [type(v) for v in again["a"]] == [int, float, bool, type(None), str]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"format": 99, "handoff": yaml_cache.__version__, "text": "t\n", "data": 1}),
        json.dumps({"format": 1, "handoff": "0.0.0-other", "text": "t\n", "data": 1}),
        json.dumps({"format": 1, "handoff": yaml_cache.__version__, "text": "t\n"}),
        json.dumps({"format": 1, "handoff": yaml_cache.__version__, "text": "u\n", "data": 1}),
    ],
    ids=["corrupt", "not-a-mapping", "other-format", "other-version", "no-data", "other-text"],
)
def test_an_entry_that_does_not_fit_is_a_parse(tmp_path: Path, content: str) -> None:
    project_file = tmp_path / "project.yml"
    cache_file(project_file).parent.mkdir(parents=True)
    cache_file(project_file).write_text(content)
    parser = CountingParser({"parsed": True})
    assert parse_cached(project_file, "t\n", parser) == {"parsed": True}
    assert parser.calls == 1
    assert json.loads(cache_file(project_file).read_text())["data"] == {"parsed": True}


def test_an_unwritable_cache_path_is_a_parse(tmp_path: Path) -> None:
    """A project where the cache can't be written (a read-only checkout) parses every
    time. Made unwritable for root too: ``.handoff`` is a file, so nothing goes under it."""
    (tmp_path / ".handoff").write_text("not a directory")
    parser = CountingParser({"k": 1})
    for _ in range(2):
        assert parse_cached(tmp_path / "project.yml", "k: 1\n", parser) == {"k": 1}
    assert parser.calls == 2
    assert not list(tmp_path.glob(".handoff*.tmp"))


def test_a_fifo_in_place_of_the_entry_is_not_waited_on(tmp_path: Path) -> None:
    project_file = tmp_path / "project.yml"
    cache_file(project_file).parent.mkdir(parents=True)
    os.mkfifo(cache_file(project_file))
    parser = CountingParser({"k": 1})
    assert parse_cached(project_file, "k: 1\n", parser) == {"k": 1}  # returns: no hang
    assert parser.calls == 1
    assert cache_file(project_file).is_file()  # replaced by a real entry
