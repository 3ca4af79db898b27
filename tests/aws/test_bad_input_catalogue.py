"""The bad-input catalogue: every case through every verb that reads it, against moto.

Each row builds a project with one defect (a YAML bomb, a FIFO, a symlink loop, a name
S3 can't carry, ...) and names the verbs that read that part of the project. For each
verb the real CLI (``cli.main``) must: exit with status 2, print exactly one line on
stderr (``handoff: error: ...``) naming the file or key path, print no traceback, and
leave nothing behind: no object under the stack in S3, no SSM parameter, nothing copied
into the workspace's ``files/`` or ``config/``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handoff_provider.core.cli import main as cli
from tests.aws.conftest import keys

OK = "commands:\n  - command: echo\n    args: hi\n"
PROJECT_VERBS = ("config print", "config push", "run", "install")
FILES_VERBS = ("files push", "run", "install")
CONFIG_VERBS = ("config print", "config push", "run", "install")


def nested(depth: int) -> str:
    return (
        OK
        + "deploy:\n"
        + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(depth))
        + ("  " * (depth + 1) + "leaf: 1\n")
    )


def alias_bomb(levels: int = 12) -> str:
    lines = [OK, "deploy:", "  l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"  l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


def write_yml(text: str) -> Callable[[Path], Path]:
    def setup(project: Path) -> Path:
        (project / "project.yml").write_text(text)
        return project / "project.yml"

    return setup


def fifo_project_yml(project: Path) -> Path:
    (project / "project.yml").unlink()
    os.mkfifo(project / "project.yml")
    return project / "project.yml"


def huge_project_yml(project: Path) -> Path:
    (project / "project.yml").write_text(OK + "# " + "x" * (1 << 20) + "\n")
    return project / "project.yml"


def in_dir(sub: str, make: Callable[[Path], None], name: str) -> Callable[[Path], Path]:
    """Create ``PROJECT/<sub>/`` (with one good file) and call ``make(path)`` on ``name``."""

    def setup(project: Path) -> Path:
        directory = project / sub
        directory.mkdir(exist_ok=True)
        (directory / "good.json").write_text("{}")
        path = directory / name
        make(path)
        return path

    return setup


def fifo(path: Path) -> None:
    os.mkfifo(path)


def unix_socket(path: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays


def link_to(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


def two_link_loop(path: Path) -> None:
    os.symlink(path.name + "-b", path)
    os.symlink(path.name, path.with_name(path.name + "-b"))


def plain_file(path: Path) -> None:
    path.write_text("{}")


def deep_long_name(project: Path) -> Path:
    directory = project / "files"
    for part in range(4):
        directory = directory / ("d" * 250 + str(part))
    directory.mkdir(parents=True)
    (directory / "data.txt").write_text("x")
    return project / "files"


def big_config(project: Path) -> Path:
    (project / "config").mkdir()
    path = project / "config" / "big.json"
    path.write_text('"' + "x" * (5 << 20) + '"')
    return path


def named_with(sub: str, raw_name: bytes) -> Callable[[Path], Path]:
    def setup(project: Path) -> Path:
        (project / sub).mkdir(exist_ok=True)
        path = Path(os.fsdecode(os.fsencode(project / sub) + b"/" + raw_name))
        path.write_text("{}")
        return path

    return setup


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], Path]  # returns the path the error line must name
    expected: str
    verbs: tuple[str, ...]


CASES = [
    Case("yaml-nested-1000", write_yml(nested(1000)), "nested deeper than 64 levels",
         PROJECT_VERBS),
    Case("yaml-flow-nested-1000", write_yml(OK + "deploy: " + "[" * 1000 + "]" * 1000 + "\n"),
         "nested deeper than 64 levels", PROJECT_VERBS),
    Case("yaml-alias-bomb", write_yml(alias_bomb()), "once aliases are expanded", PROJECT_VERBS),
    Case("yaml-recursive-alias", write_yml(OK + "deploy: &d {self: *d}\n"),
         "recursive aliases", PROJECT_VERBS),
    Case("project-yml-fifo", fifo_project_yml, "is a FIFO (named pipe), not a regular file",
         PROJECT_VERBS),
    Case("project-yml-over-1mib", huge_project_yml, "larger than the 1 MiB limit", PROJECT_VERBS),
    Case("venv-with-slash", write_yml("commands:\n  - command: a\n    venv: one/tool\n"),
         "commands[0].venv: 'one/tool' is not a valid venv name", PROJECT_VERBS),
    Case("files-fifo", in_dir("files", fifo, "pipe"), "is a FIFO (named pipe)", FILES_VERBS),
    Case("files-socket", in_dir("files", unix_socket, "sock"), "is a socket", FILES_VERBS),
    Case("files-self-link", in_dir("files", link_to("."), "self"), "symlink loop", FILES_VERBS),
    Case("files-parent-link", in_dir("files", link_to(".."), "up"), "symlink points outside",
         FILES_VERBS),
    Case("files-link-loop", in_dir("files", two_link_loop, "a"), "symlink loop", FILES_VERBS),
    Case("files-dangling-link", in_dir("files", link_to("nowhere"), "gone"), "dangling symlink",
         FILES_VERBS),
    Case("files-name-not-utf8", named_with("files", b"caf\xe9.txt"), "not valid UTF-8",
         FILES_VERBS),
    Case("files-name-newline", named_with("files", b"two\nlines.txt"), "control character",
         FILES_VERBS),
    Case("files-name-too-long", deep_long_name, "longer than 900 bytes", FILES_VERBS),
    Case("config-fifo", in_dir("config", fifo, "pipe.json"), "is a FIFO", CONFIG_VERBS),
    Case("config-self-link", in_dir("config", link_to("."), "loop"), "symlink loop",
         CONFIG_VERBS),
    Case("config-link-loop", in_dir("config", two_link_loop, "x"), "symlink loop", CONFIG_VERBS),
    Case("config-name-not-utf8", named_with("config", b"\xff.json"), "not valid UTF-8",
         CONFIG_VERBS),
    Case("config-name-newline", named_with("config", b"a\nb.json"), "control character",
         CONFIG_VERBS),
    Case("config-over-4mib", big_config, "larger than the 4 MiB limit", CONFIG_VERBS),
]  # fmt: skip


def argv_for(verb: str, project: Path, ws: Path) -> list[str]:
    return {
        "config print": ["config", "print", "-p", str(project)],
        "config push": ["config", "push", "-p", str(project)],
        "files push": ["files", "push", "-p", str(project)],
        "run": ["run", "-w", str(ws), "-p", str(project)],
        "install": ["workspace", "install", "-w", str(ws), "-p", str(project)],
    }[verb]


def shown(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace").replace("\n", "\\n")


@pytest.mark.parametrize(
    ("case", "verb"),
    [pytest.param(case, verb, id=f"{case.id}:{verb}") for case in CASES for verb in case.verbs],
)
def test_bad_input_is_refused_cleanly(
    case: Case,
    verb: str,
    handoff_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    s3: Any,
    ssm: Any,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "project.yml").write_text(OK)
    named = case.setup(project)
    ws = tmp_path / "ws"

    status = cli.main(argv_for(verb, project, ws))

    out, err = capsys.readouterr()
    assert status == 2 and out == "", err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("handoff: error: "), err
    assert case.expected in err
    assert shown(named) in err, f"the line names {named}"
    stack, bucket = handoff_env["HANDOFF_STACK"], handoff_env["HANDOFF_BUCKET"]
    assert keys(s3, bucket, f"{stack}/") == [], "nothing pushed to S3"
    mine = [{"Key": "Name", "Option": "BeginsWith", "Values": [f"/handoff/{stack}/"]}]
    assert not ssm.describe_parameters(ParameterFilters=mine)["Parameters"], "no SSM write"
    for sub in ("files", "config"):
        leftovers = list((ws / sub).iterdir()) if (ws / sub).is_dir() else []
        assert leftovers == [], f"nothing half-written in the workspace's {sub}/"


def test_catalogue_counts() -> None:
    """The catalogue's size, for the record (cases x verbs tried)."""
    tried = sum(len(case.verbs) for case in CASES)
    assert len(CASES) >= 22 and tried >= 75
