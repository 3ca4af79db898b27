"""Files only their owner may read, replaced atomically: a reader sees the old content or
the new, never half of it, and the content is never readable by others, not even for
the instant between creating the file and a ``chmod`` (the secret config files of a
workspace, handoff's local caches)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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


def replace_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600) through a temporary file beside it; the
    directory must exist. Raises ``OSError``; no temporary file is left behind."""
    fd, tmp = create_private_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
