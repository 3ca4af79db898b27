"""Fixtures for the core tests: project directories written on the fly."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

ProjectFactory = Callable[..., Path]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """``make_project(yml, config={"name": str | bytes}, files={...}, name="p") -> dir``."""

    def make(
        yml: str,
        *,
        config: Mapping[str, str | bytes] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        name: str = "project",
    ) -> Path:
        project_dir = tmp_path / name
        project_dir.mkdir()
        (project_dir / "project.yml").write_text(yml, encoding="utf-8")
        for subdir, entries in (("config", config), ("files", files)):
            for rel, content in (entries or {}).items():
                path = project_dir / subdir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8")
        return project_dir

    return make
