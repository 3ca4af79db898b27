"""Reading the user's files and trees (``project.yml``, ``config/``, ``files/``,
``artifacts/``) without hanging, looping or publishing what can't be carried.

Everything handoff reads from a project or a workspace goes through here:

* :func:`read_regular_file` opens with ``O_NONBLOCK`` and checks the type on the open
  descriptor, so a FIFO named ``project.yml`` is refused instead of blocking forever,
  and reads at most ``limit`` bytes (a larger file is refused, not read whole).
* :func:`walk_tree` lists the regular files (and directories) under a root. Symlinks
  are followed while they resolve inside the root; a link pointing outside, a link
  that dangles, a directory reached again through a link while inside itself (a loop,
  ``files/self -> .``), a FIFO, socket or device, and a name that an S3 key or the
  JSON document can't carry (not UTF-8, control characters, too long) are *problems*.
  ``strict`` walks (``config/``, ``files/``: what gets pushed) raise the first one as
  an error naming the path; lenient walks (``artifacts/``, which commands fill) skip
  the entry and return the problems so the caller can record them.
* :func:`shown` is a path or name made printable on one line (``\\n`` and undecodable
  bytes escaped), for every message that names a user's file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from handoff_provider.core.errors import HandoffError, ProjectError

#: S3 keys are at most 1024 bytes (UTF-8); the stack prefix needs some of them.
MAX_NAME_BYTES = 900
_CONTROL = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})

_SPECIAL_TYPES = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)


def shown(path: Path | str) -> str:
    """``path`` on one printable line: control characters and non-UTF-8 bytes escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return text.translate(_CONTROL)


def file_type(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO (named pipe)``, ``a socket``, ...)."""
    for test, words in _SPECIAL_TYPES:
        if test(mode):
            return words
    return "not a regular file"


def name_problem(name: str) -> str | None:
    """Why a relative file name (``sub/a.txt``) can't be an S3 key / JSON string, or None."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8 (rename it)"
    if any(ord(char) in _CONTROL for char in name):
        return "its name contains a control character such as a newline (rename it)"
    if len(encoded) > MAX_NAME_BYTES:
        return f"its name is longer than {MAX_NAME_BYTES} bytes (S3 keys are limited)"
    return None


def read_regular_file(
    path: Path,
    *,
    limit: int,
    source: str | None = None,
    error: type[HandoffError] = ProjectError,
    what: str = "file",
) -> bytes:
    """The content of the regular file ``path``, refusing special files and files over
    ``limit`` bytes. ``FileNotFoundError`` is left to the caller (it often has a better
    message); every other problem is ``error`` naming ``source`` (default: the path)."""
    where = source or shown(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{where}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{where}: is {file_type(mode)}, not a regular {what}")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise error(f"{where}: larger than the {_limit_words(limit)} limit for a {what}")
        return b"".join(chunks)
    except OSError as exc:
        raise error(f"{where}: cannot read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)


def _limit_words(limit: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


@dataclass
class Tree:
    """What :func:`walk_tree` found. ``files`` and ``dirs`` are keyed by the relative
    POSIX name (``sub/a.txt``) and hold the path as walked (through links)."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    dirs: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def walk_tree(
    root: Path,
    *,
    strict: bool,
    error: type[HandoffError] = ProjectError,
    check_names: bool = True,
    skip: Callable[[str], bool] | None = None,
    links_within: Path | None = None,
    links_label: str | None = None,
) -> Tree:
    """Every regular file and directory under ``root``; see the module docstring.

    ``strict``: the first problem raises ``error``; otherwise problems are collected in
    ``Tree.problems`` (one line each) and the entry is left out. ``skip(rel)`` leaves an
    entry out silently (the artifacts store's reserved names, build outputs...).
    ``links_within`` widens where symlinks may point (default: ``root``; ``config/``
    links may point anywhere in the project), ``links_label`` names it in messages.
    A missing or non-directory ``root``
    gives an empty tree.
    """
    root = Path(root)
    tree = Tree(root=root)
    try:
        root_stat = os.stat(root)
    except OSError:
        return tree
    if not stat.S_ISDIR(root_stat.st_mode):
        return tree
    walker = _Walker(
        tree,
        strict=strict,
        error=error,
        check_names=check_names,
        skip=skip,
        real_root=Path(links_within or root).resolve(),
        outside=links_label or f"{shown(links_within or root)} (refused)",
    )
    walker.walk(root, "", ((root_stat.st_dev, root_stat.st_ino),))
    return tree


@dataclass
class _Walker:
    """One :func:`walk_tree` (its arguments, and the tree it fills in)."""

    tree: Tree
    strict: bool
    error: type[HandoffError]
    check_names: bool
    skip: Callable[[str], bool] | None
    real_root: Path
    outside: str

    def problem(self, path: Path, reason: str) -> None:
        line = f"{shown(path)}: {reason}"
        if self.strict:
            raise self.error(line)
        self.tree.problems.append(line)

    def walk(self, directory: Path, prefix: str, ancestors: tuple[tuple[int, int], ...]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            self.problem(directory, f"cannot list ({exc.strerror or type(exc).__name__})")
            return
        for entry in entries:
            rel = prefix + entry.name
            if self.skip is not None and self.skip(rel):
                continue
            self.entry(entry, rel, ancestors)

    def entry(
        self, entry: os.DirEntry[str], rel: str, ancestors: tuple[tuple[int, int], ...]
    ) -> None:
        path = Path(entry.path)
        if self.check_names and (why := name_problem(rel)):
            self.problem(path, why)
            return
        try:
            is_link = entry.is_symlink()
            info = os.stat(path)  # follows links
        except FileNotFoundError:
            self.problem(path, "dangling symlink (its target does not exist)")
            return
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            self.problem(path, "symlink loop" if loop else (exc.strerror or "cannot stat"))
            return
        if is_link and not _inside(path, self.real_root):
            self.problem(path, f"symlink points outside {self.outside}")
            return
        if stat.S_ISDIR(info.st_mode):
            identity = (info.st_dev, info.st_ino)
            if identity in ancestors:
                self.problem(path, "symlink loop (it points at a directory that contains it)")
                return
            self.tree.dirs[rel] = path
            self.walk(path, rel + "/", (*ancestors, identity))
        elif stat.S_ISREG(info.st_mode):
            self.tree.files[rel] = path
        else:
            self.problem(path, f"is {file_type(info.st_mode)}, not a regular file (refused)")


def _inside(link: Path, real_root: Path) -> bool:
    target = link.resolve()
    return target == real_root or real_root in target.parents
