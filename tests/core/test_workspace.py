"""Workspace: layout, private config files, project files copy."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from handoff_provider.core.errors import ProjectError
from handoff_provider.core.model.project import ConfigFile
from handoff_provider.core.run.workspace import Workspace


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_prepare_creates_layout_with_private_config_dir(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.prepare()
    for directory in (ws.config_dir, ws.files_dir, ws.artifacts_dir):
        assert directory.is_dir()
    assert _mode(ws.config_dir) == 0o700
    assert ws.state_path == ws.root / "artifacts" / "state"
    # An existing, too open config dir is tightened.
    ws.config_dir.chmod(0o755)
    ws.prepare()
    assert _mode(ws.config_dir) == 0o700


def test_config_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    old = os.umask(0)
    try:
        written = ws.write_config_files(
            [ConfigFile("tap-config.json", '{"key": "v"}'), ConfigFile("sub/key.pem", "PEM")]
        )
    finally:
        os.umask(old)
    assert [p.relative_to(ws.config_dir).as_posix() for p in written] == [
        "tap-config.json",
        "sub/key.pem",
    ]
    assert (ws.config_dir / "tap-config.json").read_text() == '{"key": "v"}'
    for path in written:
        assert _mode(path) == 0o600
    assert _mode(ws.config_dir / "sub") == 0o700
    assert not [p for p in ws.config_dir.rglob("*") if p.name.endswith(".tmp")]


def test_rewriting_replaces_content_and_prunes_dropped_files(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.write_config_files({"a.json": "1", "old/secret.json": "s"})
    ws.write_config_files([("a.json", "2")])
    assert (ws.config_dir / "a.json").read_text() == "2"
    assert _mode(ws.config_dir / "a.json") == 0o600
    assert not (ws.config_dir / "old").exists()


def test_existing_symlink_at_target_is_replaced_not_followed(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").prepare()
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    (ws.config_dir / "a.json").symlink_to(outside)
    ws.write_config_files({"a.json": "new"})
    assert outside.read_text() == "untouched"
    assert not (ws.config_dir / "a.json").is_symlink()
    assert (ws.config_dir / "a.json").read_text() == "new"


@pytest.mark.parametrize(
    "name", ["../escape.json", "/etc/passwd", "a/../../b.json", "", "a//b", "./a", "a\\b"]
)
def test_config_names_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(ProjectError, match="config"):
        ws.write_config_files({name: "secret"})
    assert not (tmp_path / "escape.json").exists()
    assert not (tmp_path / "b.json").exists()


def test_config_subdir_symlinked_outside_is_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").prepare()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ws.config_dir / "sub").symlink_to(outside)
    with pytest.raises(ProjectError, match="outside config/"):
        ws.write_config_files({"sub/x.json": "secret"}, prune=False)
    assert list(outside.iterdir()) == []


def _project_with_files(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "files" / "nested").mkdir(parents=True)
    (project / "files" / "data.txt").write_text("data")
    (project / "files" / "nested" / "deep.txt").write_text("deep")
    script = project / "files" / "run.py"
    script.write_text("#!/usr/bin/env python\n")
    script.chmod(0o755)
    return project


def test_copy_project_files_mirrors_files_and_keeps_modes(tmp_path: Path) -> None:
    project = _project_with_files(tmp_path)
    ws = Workspace(tmp_path / "ws").prepare()
    (ws.files_dir / "stale.txt").write_text("from an older project version")
    copied = ws.copy_project_files(project)
    assert sorted(p.relative_to(ws.files_dir).as_posix() for p in copied) == [
        "data.txt",
        "nested/deep.txt",
        "run.py",
    ]
    assert (ws.files_dir / "nested" / "deep.txt").read_text() == "deep"
    assert os.access(ws.files_dir / "run.py", os.X_OK)
    assert not (ws.files_dir / "stale.txt").exists()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".files")]


def test_symlink_inside_files_is_copied(tmp_path: Path) -> None:
    project = _project_with_files(tmp_path)
    (project / "files" / "alias.txt").symlink_to("data.txt")
    ws = Workspace(tmp_path / "ws")
    ws.copy_project_files(project)
    assert (ws.files_dir / "alias.txt").read_text() == "data"


@pytest.mark.parametrize("target", ["../config/secret.json", "/etc/hostname"])
def test_symlink_escaping_files_is_refused_and_files_left_intact(
    tmp_path: Path, target: str
) -> None:
    project = _project_with_files(tmp_path)
    (project / "config").mkdir()
    (project / "config" / "secret.json").write_text("{}")
    ws = Workspace(tmp_path / "ws")
    ws.copy_project_files(project)
    (project / "files" / "leak.json").symlink_to(target)
    with pytest.raises(ProjectError, match="symlink points outside"):
        ws.copy_project_files(project)
    assert (ws.files_dir / "data.txt").read_text() == "data"  # previous copy untouched
    assert not (ws.files_dir / "leak.json").exists()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".files")]


def test_project_without_files_dir_is_fine(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    ws = Workspace(tmp_path / "ws")
    assert ws.copy_project_files(tmp_path / "project") == []
    assert ws.files_dir.is_dir()
