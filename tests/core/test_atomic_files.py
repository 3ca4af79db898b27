"""``core/atomic_files.replace_file``: the exact mode whatever the umask, the old content
kept and no temporary file left when the write fails, a symlink replaced rather than
written through; and two of its callers: ``run.json`` readable by others, rendered
templates keeping their mode (the DAG factory's parse cache, owner-only, is asserted in
``tests/airflow/test_dag_factory.py``)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from handoff_provider.core.atomic_files import READABLE, replace_file
from handoff_provider.core.load.templating import render_workspace_files


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def umask() -> Iterator[None]:
    """A umask that would strip group/other bits and the owner's write bit if obeyed."""
    old = os.umask(0o277)
    yield
    os.umask(old)


def test_new_file_is_owner_only_and_mode_is_exact(tmp_path: Path, umask: None) -> None:
    secret, shared = tmp_path / "secret.json", tmp_path / "run.json"
    replace_file(secret, b"token")
    replace_file(shared, b"{}", mode=READABLE)
    assert secret.read_bytes() == b"token" and mode_of(secret) == 0o600
    assert shared.read_bytes() == b"{}" and mode_of(shared) == 0o644
    replace_file(shared, b"{}\n")  # a replacement takes the mode asked for, not the old one
    assert mode_of(shared) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "secret.json"]


def test_failed_replace_keeps_old_content_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "config.json"
    replace_file(target, b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        replace_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_missing_directory_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "nowhere" / "x.json", b"x")


def test_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("someone else's")
    inside = tmp_path / "dir"
    inside.mkdir()
    link = inside / "config.json"
    link.symlink_to(outside)
    replace_file(link, b"ours")
    assert not link.is_symlink() and link.read_bytes() == b"ours"
    assert outside.read_text() == "someone else's"


def test_rendered_template_keeps_its_mode(tmp_path: Path, umask: None) -> None:
    files = tmp_path / "files"
    files.mkdir()
    script = files / "run.sh"
    script.write_text("echo {{ greeting }}\n")
    script.chmod(0o750)
    assert render_workspace_files(files, {"greeting": "hi"}) == [script]
    assert script.read_text() == "echo hi\n" and mode_of(script) == 0o750
    assert [p.name for p in files.iterdir()] == ["run.sh"]


def test_run_record_is_readable(tmp_path: Path, umask: None) -> None:
    from handoff_provider.core.run.summary import RunSummary, write_run_summary
    from handoff_provider.core.run.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    write_run_summary(workspace, RunSummary(run_key="20240101T000000Z-abcdef"))
    record = workspace.run_summary_path
    assert json.loads(record.read_text())["run_key"] == "20240101T000000Z-abcdef"
    assert mode_of(record) == 0o644
    assert [p.name for p in record.parent.iterdir()] == ["run.json"]
