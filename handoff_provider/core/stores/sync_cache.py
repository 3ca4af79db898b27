"""What a sync learned last time, so that a re-sync with nothing changed hashes nothing.

Two kinds of facts, per relative path, kept between syncs of one local directory with
one S3 prefix:

* **local digests**: the SHA-256 (and S3 ETag) of a file's content, valid while the
  file's ``(size, mtime_ns, ctime_ns, inode)`` is the same. Any write, rename over,
  ``touch`` or ``chmod`` changes one of them (``ctime`` can't be set back by hand), and
  the file is hashed again. A digest taken less than :data:`RACY_SECONDS` after the
  file's last change is not kept: a second write within the file system's timestamp
  granularity could leave the stat unchanged (git's "racy clean" problem);
* **remote records**: the SHA-256 and mode a handoff object carries in its metadata
  (which a listing doesn't return), valid only while the listing shows the object with
  the same ETag and size, and a LastModified no later than the record's (any re-upload or
  metadata change of the object moves LastModified on; the ETag alone would not show a
  copy with new metadata, or the same bytes written again by another tool without
  ours). They come from ``HeadObject`` (the record's LastModified is the object's; a HEAD
  of an object changed in the second S3 answered is not kept, as S3's timestamps have
  whole seconds, see :meth:`.s3sync.ObjectHead.record`) and from our own uploads: the
  ETag S3 answered the upload with and, as the LastModified, the answer's Date (the
  object is no newer; see :class:`.s3sync.UploadReceipts`). So the one change a record
  can't see is the same content rewritten by someone else within the second our upload
  was answered in. Anything else from the remote means "ask S3".

So a no-change re-sync is one listing, a ``stat`` per file and no hashing, no HEAD.

Where: ``<parent of the synced directory>/.handoff/sync/<key>.json`` (``PROJECT/.handoff``
for ``files push``, ``WORKSPACE/.handoff`` for ``files get``): outside the synced
directory, so never uploaded, and ignored by git (the ``.handoff/`` directory holds a
``.gitignore`` of ``*``); ``~/.cache/handoff/sync/`` when that parent is read-only.
``<key>`` hashes the local directory and the S3 URI. The cache is an optimisation only:
a missing, unreadable or corrupt file means "hash everything", one that can't be written
costs one log line, and writes are atomic (a concurrent sync loses at most its own
additions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import NamedTuple

from handoff_provider.core.local_cache import CACHE_DIR_NAME, write_private

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: A digest is kept only when the file's last change is at least this old when hashed.
RACY_SECONDS = 0.1
#: The same on file systems with whole-second timestamps (FAT has 2 s).
RACY_SECONDS_COARSE = 2.0


class LocalDigest(NamedTuple):
    """A file's content digests, valid for the stat they were taken at."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    sha256: str
    etag: str  # the ETag an upload of ours would get

    def matches(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.ino) == _stat_key(st)


class RemoteRecord(NamedTuple):
    """What an object's metadata said (``sha256``, ``mode``) when it looked like this."""

    etag: str
    size: int
    last_modified: str  # ISO 8601 UTC, whole seconds: the object was no newer
    sha256: str | None
    mode: str | None

    def describes(self, etag: str, size: int, last_modified: str) -> bool:
        """Whether a listing's ``etag``, ``size`` and ``last_modified`` (the same ISO
        form: it orders as text) show the object this record was learned of."""
        return (
            (self.etag, self.size) == (etag, size)
            and bool(last_modified)
            and last_modified <= self.last_modified
        )


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def is_racy(st: os.stat_result, hashed_at_ns: int) -> bool:
    """Whether a write right after hashing could have kept the file's stat unchanged."""
    changed_ns = max(st.st_mtime_ns, st.st_ctime_ns)
    coarse = st.st_mtime_ns % 1_000_000_000 == 0 and st.st_ctime_ns % 1_000_000_000 == 0
    window = RACY_SECONDS_COARSE if coarse else RACY_SECONDS
    return hashed_at_ns - changed_ns < window * 1e9


class SyncCache:
    """The cache of one (local directory, S3 prefix) pair; see the module docstring.

    ``load`` it, ask it (:meth:`digest`, :meth:`record`), tell it what was learned
    (:meth:`remember_digest`, :meth:`remember_remote`), then :meth:`save`: only the
    entries touched by this sync are written back, so files gone locally drop out.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._old_local: dict[str, LocalDigest] = {}
        self._old_remote: dict[str, RemoteRecord] = {}
        self._local: dict[str, LocalDigest] = {}
        self._remote: dict[str, RemoteRecord] = {}
        #: The file on disk is corrupt or of another format: :meth:`save` replaces it even
        #: when this sync learned nothing it could keep (every file racy, say).
        self._unusable_file = False

    @classmethod
    def for_sync(cls, local_dir: Path, remote_uri: str) -> SyncCache:
        """The cache of ``local_dir`` <-> ``remote_uri``, loaded (empty if none yet)."""
        cache = cls(cache_path(local_dir, remote_uri))
        cache._load()
        return cache

    # -- reading

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FORMAT_VERSION:
                self._unusable_file = True
                return
            self._old_local = {k: LocalDigest(*v) for k, v in data["local"].items()}
            self._old_remote = {k: RemoteRecord(*v) for k, v in data["remote"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.info("sync cache %s unreadable (%s): hashing every file", self.path, exc)
            self._old_local, self._old_remote = {}, {}
            self._unusable_file = True

    def digest(self, relative: str, st: os.stat_result) -> LocalDigest | None:
        """The remembered digest of ``relative`` if its stat is unchanged, else None."""
        entry = self._old_local.get(relative)
        if entry is None or not entry.matches(st):
            return None
        self._local[relative] = entry
        return entry

    def record(
        self, relative: str, etag: str, size: int, last_modified: str
    ) -> RemoteRecord | None:
        """The remote record of ``relative`` if the listing still shows the object as
        recorded, else None (ask S3)."""
        entry = self._old_remote.get(relative)
        if entry is None or not entry.describes(etag, size, last_modified):
            return None
        self._remote[relative] = entry
        return entry

    # -- learning

    def remember_digest(
        self, relative: str, st: os.stat_result, sha256: str, etag: str, hashed_at_ns: int
    ) -> None:
        """Keep a digest taken of a file whose stat (before hashing) was ``st``."""
        if is_racy(st, hashed_at_ns):
            return
        size, mtime_ns, ctime_ns, ino = _stat_key(st)
        self._local[relative] = LocalDigest(size, mtime_ns, ctime_ns, ino, sha256, etag)

    def remember_remote(self, relative: str, record: RemoteRecord | None) -> None:
        """Keep ``record`` (None: nothing to keep, e.g. a HEAD of a racy object)."""
        if record is not None:
            self._remote[relative] = record

    # -- writing

    def save(self) -> None:
        """Write what this sync used and learned (atomically); never raises for I/O."""
        unchanged = self._local == self._old_local and self._remote == self._old_remote
        if self.path is None or (unchanged and not self._unusable_file):
            return
        document = {  # the entries as JSON arrays (named tuples), sorted by path
            "version": FORMAT_VERSION,
            "local": dict(sorted(self._local.items())),
            "remote": dict(sorted(self._remote.items())),
        }
        try:
            write_private(self.path, json.dumps(document, separators=(",", ":")))
        except OSError as exc:
            log.info("sync cache %s not written (%s): the next sync hashes again", self.path, exc)


def cache_path(local_dir: Path, remote_uri: str) -> Path:
    """``<parent>/.handoff/sync/<key>.json``; ``~/.cache/handoff/sync/<key>.json`` when
    the parent of ``local_dir`` can't be written (a read-only project checkout)."""
    local = Path(os.path.abspath(local_dir))
    name = hashlib.sha256(f"{local}\0{remote_uri}".encode()).hexdigest()[:24] + ".json"
    beside = local.parent / CACHE_DIR_NAME / "sync"
    existing = local.parent  # a get may create the workspace: check what it is made in
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if beside.is_dir() or os.access(existing, os.W_OK):
        return beside / name
    return Path.home() / ".cache" / "handoff" / "sync" / name
