"""Where handoff keeps what it learned on this machine, and how it writes it.

The caches (a sync's digests and remote records,
:mod:`~handoff_provider.core.stores.sync_cache`; a project's parsed ``project.yml``,
:mod:`~handoff_provider.core.load.yaml_cache`) live in a ``.handoff/`` directory beside
what they describe (the project or the workspace), which holds a ``.gitignore`` of ``*``
so git never sees it. They are optimisations only: a cache that can't be read is
ignored, one that can't be written costs one log line, and every write replaces the
file atomically, owner-only (0600: a parsed ``project.yml`` may hold values people
treat as private).
"""

from __future__ import annotations

from pathlib import Path

from handoff_provider.core.atomic_files import replace_file

CACHE_DIR_NAME = ".handoff"
_GITIGNORE = "# handoff's local caches (handoff_provider/core/local_cache.py)\n*\n"


def ensure_cache_dir(directory: Path) -> None:
    """Create ``directory``; a ``.handoff/`` on its way gets its ``.gitignore`` first."""
    for top in (directory, directory.parent):
        if top.name == CACHE_DIR_NAME:
            if not (top / ".gitignore").exists():
                top.mkdir(parents=True, exist_ok=True)
                (top / ".gitignore").write_text(_GITIGNORE)
            break
    directory.mkdir(parents=True, exist_ok=True)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600
    (:func:`~handoff_provider.core.atomic_files.replace_file`), creating its
    directory first. Raises ``OSError``."""
    ensure_cache_dir(path.parent)
    replace_file(path, text.encode("utf-8"))
