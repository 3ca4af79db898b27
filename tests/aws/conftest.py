"""Fixtures for the AWS integration tests (real moto server over HTTP, see tests/conftest.py).

``recorder`` wraps the default client factory so every API call the stores make is
recorded (operation name + API parameters, via botocore's ``before-parameter-build``
event; the HTTP headers sent, via ``before-send``) and can be made to fail on purpose
(``fail_on``) the way AWS would: a ``ClientError`` raised before the request is sent.
The stores under test are never mocked.

``tally`` counts what the stack concurrency tests saw (runs tried, succeeded, lease waits
and takeovers, conflicts, repairs), from each run's own output; the totals are printed in
the terminal summary.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from handoff_provider.core.aws.clients import default_client_factory
from handoff_provider.core.stores import Remote

REGION = "us-east-1"

_TALLY = pytest.StashKey["Tally"]()


@dataclass
class Tally:
    """What the runs of one stack did, counted from their output (stderr or log lines)."""

    counts: Counter[str] = field(default_factory=Counter)

    #: counted per run whose output contains the text
    SIGNS = {
        "lease waits": "; waiting",
        "lease takeovers": "took over an expired lease",
        "conflicts": "changed since this run read it",
        "repairs": "finished the interrupted publish",
    }

    def run(self, succeeded: bool, output: str) -> None:
        self.counts["runs tried"] += 1
        self.counts["succeeded" if succeeded else "failed"] += 1
        for name, sign in self.SIGNS.items():
            self.counts[name] += sign in output

    def summary(self) -> str:
        names = ["runs tried", "succeeded", "failed", *self.SIGNS]
        return ", ".join(f"{name}: {self.counts[name]}" for name in names)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TALLY] = Tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tally = terminalreporter.config.stash.get(_TALLY, None)
    if tally is not None and tally.counts["runs tried"]:
        terminalreporter.section("stack concurrency")
        terminalreporter.write_line(tally.summary())


@pytest.fixture
def tally(pytestconfig: pytest.Config) -> Tally:
    return pytestconfig.stash[_TALLY]


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    #: the request's HTTP headers as sent (names in lower case), e.g. ``if-match``: what
    #: S3 sees, also when an older botocore lacks the parameter and it travels as a header
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorder:
    """Every API call made through clients of :meth:`factory`, in order."""

    calls: list[Call] = field(default_factory=list)
    _failures: list[tuple[str, Callable[[dict[str, Any]], bool], int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: dict[int, int] = field(default_factory=dict)
    _current: threading.local = field(default_factory=threading.local)

    def factory(self) -> Callable[[str], Any]:
        base = default_client_factory()

        def make(service: str) -> Any:
            client = base(service)
            client.meta.events.register("before-parameter-build", self._before_call)
            client.meta.events.register("before-send", self._before_send)
            return client

        return make

    def _before_call(self, model: Any, params: dict[str, Any], **kwargs: Any) -> None:
        service = model.metadata.get("endpointPrefix", "")
        call = Call(service, model.name, dict(params))
        self._current.call = call  # a call is sent by the thread that made it
        with self._lock:
            self.calls.append(call)
            for index, (operation, match, after, code) in enumerate(self._failures):
                if operation == model.name and match(params):
                    self._seen[index] = self._seen.get(index, 0) + 1
                    if self._seen[index] > after:
                        raise ClientError(
                            {"Error": {"Code": code, "Message": "injected failure"}},
                            model.name,
                        )

    def _before_send(self, request: Any, **kwargs: Any) -> None:
        call = getattr(self._current, "call", None)
        if call is not None:
            call.headers = {
                name.lower(): value.decode() if isinstance(value, bytes) else str(value)
                for name, value in request.headers.items()
            }

    def fail_on(
        self,
        operation: str,
        *,
        after: int = 0,
        match: Callable[[dict[str, Any]], bool] = lambda params: True,
        code: str = "InternalError",
    ) -> None:
        """Make ``operation`` fail with AWS error ``code`` once ``after`` matching calls passed."""
        self._failures.append((operation, match, after, code))

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self._failures.clear()
            self._seen.clear()

    def ops(self, *names: str) -> list[Call]:
        return [call for call in self.calls if call.operation in names]

    def count(self, *names: str) -> int:
        return len(self.ops(*names))


#: Operations that write object data (a "PUT" of any kind).
WRITES = ("PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject", "UploadPartCopy")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def remote(aws: str, bucket: str, stack: str, recorder: Recorder) -> Remote:
    """A Remote on the moto server whose API calls are recorded."""
    return Remote(stack, bucket, client_factory=recorder.factory())


@pytest.fixture
def s3(aws: str) -> Any:
    """A plain boto3 S3 client, to arrange and inspect the bucket directly."""
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def ssm(aws: str) -> Any:
    return boto3.client("ssm", region_name=REGION)


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the session: the example's venvs are built once."""
    return tmp_path_factory.mktemp("venv-cache")


@pytest.fixture
def handoff_env(
    aws: str, bucket: str, stack: str, venv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Stack, bucket and venv cache in the environment, as a user would export them."""
    for name in ("STACK_NAME", "S3_BUCKET_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HANDOFF_STACK", stack)
    monkeypatch.setenv("HANDOFF_BUCKET", bucket)
    monkeypatch.setenv("HANDOFF_VENV_CACHE", str(venv_cache))
    yield {"HANDOFF_STACK": stack, "HANDOFF_BUCKET": bucket, "HANDOFF_VENV_CACHE": str(venv_cache)}


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (relative), paginated."""
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend(item["Key"][len(prefix) :] for item in page.get("Contents", []))
    return sorted(found)


def read(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
