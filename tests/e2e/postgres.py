"""A throw-away PostgreSQL server (Debian's packages) for the Airflow metadata DB of the e2e tests.

:class:`PostgresServer` runs ``initdb`` into a fresh temporary directory and ``pg_ctl start``
with the server listening on 127.0.0.1 only (a free port) and its unix socket in that
directory; :meth:`PostgresServer.stop` stops it (``pg_ctl stop -m fast``) and removes the
directory. PostgreSQL refuses to run as root, so when the tests run as root the server runs
as the ``postgres`` user Debian's package creates (through ``runuser``), in a directory that
user owns. Authentication is ``trust`` on loopback: nothing but this test session can reach it.

The binaries: ``$PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/<major>/bin``
(Debian keeps them off ``PATH``), else ``initdb`` on ``PATH`` (scripts/e2e-prereqs.sh installs
the package when none is found).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The role and database Airflow uses.
DATABASE = "airflow"


def bindir() -> Path:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL not found: run scripts/e2e-prereqs.sh (apt postgresql)")
    return Path(initdb).parent


@dataclass
class PostgresServer:
    """See the module docstring. ``port``: a free loopback port. Use as a context manager;
    :attr:`url` is the SQLAlchemy URL, :attr:`dsn` the libpq one."""

    port: int
    bin: Path = field(default_factory=bindir)
    user: str | None = None  # run the server as this user (default: postgres when root)

    def __post_init__(self) -> None:
        if self.user is None and os.geteuid() == 0:
            self.user = "postgres"
        self.dir = Path(tempfile.mkdtemp(prefix="handoff-e2e-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{DATABASE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """The libpq connection string (psycopg2, ``pg_dump``)."""
        return f"host=127.0.0.1 port={self.port} user={DATABASE} dbname={DATABASE}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [*(["runuser", "-u", self.user, "--"] if self.user else []), *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.dir
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} exited with {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}{log}"
            )

    def start(self, timeout: float = 120) -> PostgresServer:
        if self.user:
            owner = pwd.getpwnam(self.user)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D", str(self.data),
            "-U", DATABASE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "start", "-w", "-t", str(int(timeout)),
            "-D", str(self.data), "-l", str(self.log), "-o", options,
            timeout=timeout + 10,
        )  # fmt: skip
        self._started = True
        self._run(
            str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
            "-U", DATABASE, DATABASE,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self._started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    str(self.bin / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data)
                )
            self._started = False
        for _ in range(3):  # the server may still be removing its socket file
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(self.dir)
            if not self.dir.exists():
                break
            time.sleep(0.5)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
