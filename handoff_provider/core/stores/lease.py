"""The stack lease: one run (or state operation) of a stack at a time, wherever it runs.

The lease is one S3 object, ``<stack>/lease.json`` (see ``core/layout.py``), written
only with S3 conditional writes, so no other service (no DynamoDB) is needed:

* **acquire** = ``GetObject`` then one conditional ``PutObject``: ``If-None-Match: *``
  when there is no lease object, ``If-Match: <etag>`` when the object there is released or
  expired (a *takeover*: it succeeds only if nobody renewed or took it since we read it).
  Two contenders never both win: S3 accepts one write per ETag.
* **renew** (the heartbeat thread, every ``ttl / 3``; and once just before ``last/`` is
  replaced) = ``PutObject`` with ``If-Match`` on the ETag of our last write. A 412 means
  the lease was taken over (we were paused past the TTL): the holder is told
  (:class:`LeaseLost`) and must not publish.
* **release** = ``PutObject`` of a ``released`` record with ``If-Match`` (not a delete:
  conditional deletes are not available everywhere). The next acquirer takes it over.

Expiry is judged on S3's clock only: the age of the lease is the ``Date`` of the
``GetObject`` response minus the object's ``LastModified``; the TTL is the one the holder
wrote. A holder killed with ``kill -9`` is taken over once its TTL has passed.

Round trips: 2 at the start of a run (get + put), 2 at the end (renew + release), plus
one renewal per ``ttl / 3`` in between.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from handoff_provider.core.aws.errors import aws_errors, error_code
from handoff_provider.core.errors import ConfigurationError, LeaseHeld, LeaseLost, StoreError
from handoff_provider.core.layout import s3_uri
from handoff_provider.core.model.callbacks import LogFn
from handoff_provider.core.stores.conditional import enable_conditional_put, is_condition_failure

DEFAULT_TTL = 60.0
DEFAULT_WAIT = 600.0
#: Environment overrides (the CLI options and operator parameters win over them).
ENV_WAIT = "HANDOFF_LOCK_WAIT"
ENV_TTL = "HANDOFF_LOCK_TTL"
MIN_TTL = 2.0
_POLL = 2.0


def seconds_option(value: Any, *, name: str, env: str, default: float) -> float:
    """``value`` (an option/parameter), else ``$env``, else ``default``; a clear error for
    anything that is not a number of seconds >= 0."""
    source = name
    if value is None or value == "":
        value = os.environ.get(env)
        source = env
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ConfigurationError(f"{source}: {value!r} is not a number of seconds (>= 0)")
    return seconds


def lease_options(wait: Any = None, ttl: Any = None) -> dict[str, float]:
    """``wait``/``ttl`` for :class:`StackLease` from options, the environment or defaults."""
    return {
        "wait": seconds_option(wait, name="lock_wait", env=ENV_WAIT, default=DEFAULT_WAIT),
        "ttl": seconds_option(ttl, name="lock_ttl", env=ENV_TTL, default=DEFAULT_TTL),
    }


@dataclass(frozen=True)
class LeaseRecord:
    """What ``lease.json`` says (plus its ETag and age, from S3)."""

    etag: str
    run_key: str
    host: str
    pid: int
    operation: str
    acquired_at: str
    ttl: float
    released: bool
    token: str
    age: float

    @property
    def available(self) -> bool:
        return self.released or self.age > self.ttl

    def describe(self) -> str:
        return (
            f"{self.operation} {self.run_key} on host {self.host} (pid {self.pid}) "
            f"since {self.acquired_at}"
        )


class StackLease:
    """The lease of one stack, for one run; a context manager (acquire + heartbeat on
    enter; stop + release on exit, whatever ends the block)."""

    def __init__(
        self,
        get_client: Callable[[], Any],
        bucket: str,
        key: str,
        *,
        run_key: str,
        operation: str = "run",
        ttl: float = DEFAULT_TTL,
        wait: float = DEFAULT_WAIT,
        log: LogFn | None = None,
    ) -> None:
        self._client = get_client
        self.bucket = bucket
        self.key = key
        self.run_key = run_key
        self.operation = operation
        self.ttl = max(float(ttl), MIN_TTL)
        self.wait = max(float(wait), 0.0)
        self._log = log or (lambda line: None)
        self._token = uuid.uuid4().hex
        self._etag: str | None = None
        self._acquired_at = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cancelled: str | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the lease was lost (set by the heartbeat), None while we hold it.
        self.lost: str | None = None

    @property
    def uri(self) -> str:
        return s3_uri(self.bucket, self.key)

    @property
    def held(self) -> bool:
        return self._etag is not None and self.lost is None

    # ----------------------------------------------------------------- life cycle

    def __enter__(self) -> StackLease:
        self.acquire()
        self._start_heartbeat()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def cancel(self, reason: str) -> None:
        """Stop waiting for the lease (thread-safe; e.g. from a signal handler)."""
        self._cancelled = reason or "cancelled"
        self._wake.set()

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait`` seconds for its holder to release it or
        for its TTL to pass; raises :class:`LeaseHeld` naming the holder."""
        started = time.monotonic()
        announced = False
        while True:
            current = self.read()
            if current is None or current.available:
                if self._write(if_etag=current.etag if current else None):
                    taken = (
                        " (took over an expired lease)" if current and not current.released else ""
                    )
                    self._log(f"lease: acquired {self.uri}{taken}")
                    return
                if self._wrote_it_anyway():
                    return
                continue  # somebody else won the race: read who
            waited = time.monotonic() - started
            if waited >= self.wait:
                raise LeaseHeld(
                    f"stack lease {self.uri} is held by {current.describe()} "
                    f"(expires in {max(current.ttl - current.age, 0):.0f} s unless renewed); "
                    f"waited {waited:.0f} s (--lock-wait / {ENV_WAIT})"
                )
            if not announced:
                self._log(f"lease: {self.uri} is held by {current.describe()}; waiting")
                announced = True
            self._wake.wait(min(_POLL, self.ttl / 3, max(self.wait - waited, 0.05)))
            if self._cancelled is not None:
                raise LeaseHeld(
                    f"{self.operation} {self.run_key} stopped ({self._cancelled}) while waiting "
                    f"for the stack lease {self.uri}, held by {current.describe()}"
                )

    def renew(self) -> None:
        """Extend the lease (``If-Match`` our last write); :class:`LeaseLost` if taken over."""
        with self._lock:
            if self.lost is not None:
                raise LeaseLost(self.lost)
            if self._etag is None:
                raise LeaseLost(f"stack lease {self.uri} is not held by run {self.run_key}")
            if not self._write(if_etag=self._etag) and not self._wrote_it_anyway():
                self.lost = (
                    f"stack lease {self.uri} was taken over while run {self.run_key} held it "
                    f"(not renewed within its {self.ttl:.0f} s TTL)"
                )
                raise LeaseLost(self.lost)

    def check(self) -> None:
        """Renew once, right before an irreversible step: raises if the lease is gone."""
        self.renew()

    def release(self) -> None:
        """Stop the heartbeat and mark the lease released (never raises: an unreleased
        lease expires after its TTL)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        with self._lock:
            if self._etag is None or self.lost is not None:
                return
            try:
                if self._write(if_etag=self._etag, released=True):
                    self._log(f"lease: released {self.uri}")
                else:
                    self._log(f"lease: {self.uri} was taken over before release")
            except StoreError as exc:
                self._log(
                    f"lease: could not release {self.uri} ({exc}); it expires in {self.ttl:.0f} s"
                )
            self._etag = None

    # ----------------------------------------------------------------- heartbeat

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._heartbeat, name=f"handoff-lease-{self.run_key}", daemon=True
        )
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LeaseLost as exc:
                self._log(f"lease: LOST: {exc}; this run will not publish last/")
                return
            except StoreError as exc:  # transient (network, 5xx after retries): try again
                self._log(f"lease: renewing {self.uri} failed ({exc}); retrying")

    # ----------------------------------------------------------------- S3

    def read(self) -> LeaseRecord | None:
        """The lease object as S3 has it now (None when there is none)."""
        client = self._client()
        try:
            response = client.get_object(Bucket=self.bucket, Key=self.key)
            body = response["Body"].read()
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                return None
            with aws_errors("read", self.uri, service="s3"):
                raise
        now = _server_time(response)
        modified = response.get("LastModified") or now
        try:
            data = json.loads(body)
            return LeaseRecord(
                etag=response["ETag"],
                run_key=str(data["run_key"]),
                host=str(data.get("host", "?")),
                pid=int(data.get("pid", 0)),
                operation=str(data.get("operation", "run")),
                acquired_at=str(data.get("acquired_at", "?")),
                ttl=float(data["ttl"]),
                released=bool(data.get("released", False)),
                token=str(data.get("token", "")),
                age=(now - modified).total_seconds(),
            )
        except (ValueError, KeyError, TypeError):
            # Not ours to interpret: treat it as expired once it is older than our TTL.
            return LeaseRecord(
                etag=response["ETag"], run_key="?", host="?", pid=0, operation="unknown writer",
                acquired_at=modified.isoformat(), ttl=self.ttl, released=False, token="",
                age=(now - modified).total_seconds(),
            )  # fmt: skip

    def _write(self, *, if_etag: str | None, released: bool = False) -> bool:
        """One conditional put of our record; False when the condition failed."""
        if not self._acquired_at:
            self._acquired_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        record = {
            "format": 1,
            "run_key": self.run_key,
            "operation": self.operation,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": self._acquired_at,
            "ttl": self.ttl,
            "released": released,
            "token": self._token,
        }
        condition = {"IfMatch": if_etag} if if_etag else {"IfNoneMatch": "*"}
        client = enable_conditional_put(self._client())
        try:
            response = client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=json.dumps(record, indent=1).encode("utf-8"),
                ContentType="application/json",
                **condition,
            )
        except Exception as exc:
            if is_condition_failure(exc):
                return False
            with aws_errors("write", self.uri, service="s3"):
                raise
        self._etag = None if released else response["ETag"]
        return True

    def _wrote_it_anyway(self) -> bool:
        """After a refused write: is the lease ours all the same (a retried request whose
        first attempt did succeed)? Then adopt its ETag."""
        current = self.read()
        if current is not None and current.token == self._token and not current.released:
            self._etag = current.etag
            return True
        return False


def _server_time(response: dict[str, Any]) -> datetime:
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if date:
        try:
            return parsedate_to_datetime(date)
        except (TypeError, ValueError):
            pass
    return datetime.now(timezone.utc)
