"""Files replaced atomically: a reader sees the old content or the new, never half of it.

The temporary file is created beside the target with ``O_EXCL`` and mode 0600, so its
content is never readable by others, not even for the instant between creating it and a
``chmod``; it gets its final mode just before it takes the target's place. The one way
handoff replaces a whole file it writes in one go: the workspace's secret config files,
the local caches, rendered ``files/`` templates, ``artifacts/run.json``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

#: The mode of a file that holds no secret and that others may read (``run.json``).
READABLE = 0o644


def create_private_temp(directory: Path, stem: str) -> tuple[int, str]:
    """A new file in ``directory`` opened O_EXCL with mode 0600 from its creation."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = str(directory / f".{stem}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise OSError(f"could not create a temporary file in {directory}")


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (a file of ``mode``, default owner-only) through a
    temporary file beside it; the directory must exist. A symlink at ``path`` is replaced,
    never written through. Raises ``OSError``; no temporary file is left behind."""
    fd, tmp = create_private_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), mode)  # exactly ``mode``, whatever the umask
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
