"""Limits and robustness of the pieces behind the bad-input catalogue (see
tests/aws/test_bad_input_catalogue.py for the CLI cases): YAML limits at their edges, the
linear word splitter against shlex, templates by size and type, the venv cache's own
files, and the stderr relay under a consumer that can't keep up."""

from __future__ import annotations

import os
import shlex
import threading
import time
from pathlib import Path

import pytest

from handoff_provider.core.cli import main as cli
from handoff_provider.core.errors import ConfigurationError, ProjectError, TemplateError
from handoff_provider.core.load.project_yaml import MAX_DEPTH, MAX_NODES, parse_yaml
from handoff_provider.core.load.shell_words import split_words
from handoff_provider.core.load.templating import MAX_TEMPLATE_BYTES, render_workspace_files
from handoff_provider.core.run.pipeline import RELAY_BACKLOG, StageSpec, run_pipeline
from handoff_provider.core.run.workspace import MARKER, VenvCache

# --------------------------------------------------------------------------- YAML


def test_nesting_up_to_the_limit_loads_and_one_more_level_is_refused() -> None:
    def nested(levels: int) -> str:
        return "[" * levels + "]" * levels

    assert parse_yaml(nested(MAX_DEPTH - 1), source="p.yml") is not None
    with pytest.raises(ProjectError, match=r"^p\.yml: line 1, column \d+: nested deeper than"):
        parse_yaml(nested(MAX_DEPTH + 1), source="p.yml")


def test_aliases_count_what_they_expand_to() -> None:
    ok = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    assert parse_yaml(ok, source="p.yml") == {"a": [1, 2, 3], "b": [[1, 2, 3]] * 3}
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    assert MAX_NODES < 10**6, "the bomb below expands past the limit"
    with pytest.raises(ProjectError, match="once aliases are expanded"):
        parse_yaml("\n".join(levels) + "\n", source="p.yml")


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ProjectError, match=r"alias \*d is used inside the node it names"):
        parse_yaml("d: &d {self: *d}\n", source="p.yml")
    with pytest.raises(ProjectError, match="recursive aliases"):
        parse_yaml("- &l [1, *l]\n", source="p.yml")


def test_a_deep_compiled_document_from_ssm_is_refused(make_project) -> None:  # type: ignore[no-untyped-def]
    from handoff_provider.core.load.project import project_from_document

    deep: dict[str, object] = {}
    node = deep
    for _ in range(5000):
        node["k"] = {}
        node = node["k"]  # type: ignore[assignment]
    document = {"commands": [{"command": "echo"}], "deploy": deep}
    with pytest.raises(ProjectError, match="remote config: nested deeper than"):
        project_from_document(document, source="remote config")


# --------------------------------------------------------------------------- words

WORDS = [
    "",
    "a b  c",
    "--config config/tap.json --state artifacts/state",
    "'single quoted' \"double quoted\"",
    "a\"b\"c 'd'e",
    "'' \"\"",
    r"back\ slash \"q\" \\",
    r'"in \"double\" \\ \$x \n"',
    "tab\tsep\nnewline",
    "'a \\ b' \"c ' d\"",
    "--query \"select * from t where x = 'y'\"",
    "x=1 y='2 3' z=\"4\"",
    "#not-a-comment a#b",
    "multi\\\nline",
]


@pytest.mark.parametrize("text", WORDS)
def test_split_words_agrees_with_shlex(text: str) -> None:
    assert split_words(text) == shlex.split(text)


@pytest.mark.parametrize("text", ["'open", '"open', "trailing\\", '"escaped at end\\'])
def test_split_words_errors_like_shlex(text: str) -> None:
    with pytest.raises(ValueError) as expected:
        shlex.split(text)
    with pytest.raises(ValueError, match=str(expected.value)):
        split_words(text)


def test_split_words_handles_a_3_mb_argument() -> None:
    """shlex took minutes on this (quadratic); the timing itself is a bench/ matter."""
    word = "x" * (3 << 20)
    assert split_words(f"--data '{word}' tail") == ["--data", word, "tail"]


# --------------------------------------------------------------------------- templates


def test_templates_only_in_text_files_under_the_size_limit(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    small = files / "small.txt"
    small.write_text("v={{ v }}")
    binary = files / "blob.bin"
    binary.write_bytes(b"\0\x01{{ v }}" + os.urandom(1 << 20) + b"{%" * 10)
    big_binary = files / "big.bin"
    with open(big_binary, "wb") as handle:
        handle.write(b"\0{{")
        handle.truncate(MAX_TEMPLATE_BYTES * 3)
    before = {p: p.read_bytes() for p in (binary, big_binary)}
    assert render_workspace_files(files, {"v": "1"}) == [small]
    assert small.read_text() == "v=1"
    assert {p: p.read_bytes() for p in before} == before, "binary files copied as they are"

    (files / "huge.txt").write_text("x" * MAX_TEMPLATE_BYTES + "{{ v }}\n")
    with pytest.raises(TemplateError, match=r"^files/huge\.txt: contains template markers"):
        render_workspace_files(files, {"v": "1"})


# --------------------------------------------------------------------------- venv cache


def test_venv_cache_that_is_a_file_is_one_line(
    make_project, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache-file"
    cache.write_text("not a directory")
    monkeypatch.setenv("HANDOFF_VENV_CACHE", str(cache))
    project = make_project("commands:\n  - command: echo\n    venv: v\n")
    assert cli.main(["workspace", "install", "-w", str(tmp_path / "ws"), "-p", str(project)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"handoff: error: venv cache {cache} ($HANDOFF_VENV_CACHE): is not a directory"
    )


def test_a_lock_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "cache")
    venv_dir = cache.path_for(())
    cache.cache_dir.mkdir()
    Path(str(venv_dir) + ".lock").mkdir()
    with pytest.raises(ConfigurationError, match=r"\.lock: the venv's lock file is not a regular"):
        cache.ensure("v", (), log=lambda _line: None)


def test_a_venv_whose_interpreter_link_dangles_is_rebuilt(tmp_path: Path) -> None:
    cache = VenvCache(tmp_path / "cache")
    lines: list[str] = []
    venv_dir = cache.ensure("v", (), log=lines.append)
    python = venv_dir / "bin" / "python"
    assert cache.interpreter_runs(venv_dir)
    target = tmp_path / "moved-away"
    for link in ("python", "python3"):
        (venv_dir / "bin" / link).unlink(missing_ok=True)
        os.symlink(target, venv_dir / "bin" / link)
    assert (venv_dir / MARKER).is_file() and not cache.interpreter_runs(venv_dir)
    lines.clear()
    assert cache.ensure("v", (), log=lines.append) == venv_dir
    assert any("no longer runs" in line for line in lines), lines
    assert cache.interpreter_runs(venv_dir) and python.resolve().exists()


# --------------------------------------------------------------------------- stderr relay


def test_a_slow_stderr_consumer_never_holds_the_stage_up(tmp_path: Path) -> None:
    """The log file gets every byte as read; the callback gets lines until it is
    RELAY_BACKLOG behind, then one line saying how much it missed."""
    size = RELAY_BACKLOG * 4
    log = tmp_path / "s.1.stderr.log"
    seen: list[str] = []
    release = threading.Event()

    def slow(number: int, line: str) -> None:
        seen.append(line)
        if len(seen) == 1:
            release.wait(30)  # stuck until the stage has written everything

    stage = StageSpec(
        argv=["sh", "-c", f"yes 0123456789 | head -c {size} >&2"],
        env=dict(os.environ),
        label="yes",
    )
    deadline = time.monotonic() + 30

    def release_once_all_is_written() -> None:
        while time.monotonic() < deadline:
            if log.exists() and log.stat().st_size >= size:
                break
            time.sleep(0.02)
        release.set()

    threading.Thread(target=release_once_all_is_written, daemon=True).start()
    result = run_pipeline([stage], task="t", cwd=tmp_path, stderr_logs=[log], on_stderr_line=slow)
    assert result.ok
    assert log.stat().st_size == size, "every byte is in the log file"
    notes = [line for line in seen if line.startswith("[handoff: ")]
    assert len(notes) >= 1 and "bytes of stderr not relayed" in notes[0]
    assert f"all of it is in {log.name}" in notes[0]
    relayed = [line for line in seen if not line.startswith("[handoff: ")]
    # Whole lines, except the two around a gap (a line cut where chunks were left out).
    cut = [line for line in relayed if line != "0123456789"]
    assert len(cut) <= 2 * len(notes) and all(set(line) <= set("0123456789") for line in cut)
    assert len(relayed) < size // 11, "lines were left out of the relay, not out of the file"


# --------------------------------------------------------------------------- one line


def test_args_with_a_newline_keep_the_failure_on_one_line(make_project, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    project = make_project('commands:\n  - command: sh\n    args: |\n      -c "exit 3"\n      x\n')
    assert cli.main(["run", "-w", str(tmp_path / "ws"), "-p", str(project)]) == 1
    err = capsys.readouterr().err
    failures = [line for line in err.splitlines() if "exited with status 3" in line]
    assert len(failures) == 2 and all(
        'stage 1 exited with status 3: sh -c "exit 3"\\nx' in line for line in failures
    ), err
