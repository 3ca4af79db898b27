"""Shared fixtures: one real moto server over HTTP for the whole session, fake credentials.

Every AWS call in the suite goes to this server through boto3's own endpoint resolution
(``AWS_ENDPOINT_URL``), exactly as a user would point handoff at LocalStack or moto.
No test reaches real AWS: the credentials are fake and the endpoint is loopback.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REGION = "us-east-1"
_FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}

# Set before anything imports boto3, so no test can pick up a real profile.
for _key, _value in _FAKE_AWS_ENV.items():
    os.environ[_key] = _value
os.environ.pop("AWS_PROFILE", None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    """With ``HANDOFF_TEST_INSTALLED`` set (the MWAA matrix), refuse to test the source tree:
    ``handoff_provider`` must be the installed wheel in this interpreter's site-packages."""
    if not os.environ.get("HANDOFF_TEST_INSTALLED"):
        return
    import sysconfig

    import handoff_provider

    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    package = Path(handoff_provider.__file__).resolve()
    if site_packages not in package.parents:
        raise pytest.UsageError(
            f"HANDOFF_TEST_INSTALLED: handoff_provider was imported from {package.parent}, "
            f"not from the installed wheel in {site_packages}"
        )


#: Suites that need more than a venv (a real Airflow deployment, Docker, a browser), each
#: run by its own make target with ``-m <name>`` and that target's extra packages.
_OWN_TARGET_SUITES = ("e2e", "container", "browser")
_TESTS = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Such a suite's folder is not collected unless its marker is selected (``-m e2e``):
    its modules import what only its target installs (psycopg2 for the e2e deployment),
    and elsewhere (the MWAA matrix, the Airflow 2 venv) it is irrelevant, not skipped."""
    if collection_path.parent != _TESTS or collection_path.name not in _OWN_TARGET_SUITES:
        return None
    expression = config.getoption("markexpr", "") or ""
    suite = collection_path.name
    selected = suite in expression.split() and f"not {suite}" not in expression
    return None if selected else True


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """``handoff run`` (cli main) installs SIGTERM/SIGINT handlers for its run; keep them
    from outliving the test that called it, in every test directory (a stale SIGINT
    handler turns a later test's Ctrl-C into something other than KeyboardInterrupt)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def _logging_of_a_handoff_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """Outside ``tests/airflow`` the code runs as in a ``handoff`` process, which never
    imports Airflow (tests/core/test_cli_imports.py). Once a test module of this session has
    imported Airflow, Airflow has configured the root logger; on Airflow 2.x and 3.0 its
    console handler writes to whatever ``sys.stdout`` is at the time, so the provider's INFO
    lines would land in the CLI output that ``capsys`` reads. Airflow's handlers are taken
    off the root logger for such a test and put back after it."""
    root = logging.getLogger()
    airflows = [
        handler
        for handler in root.handlers
        if type(handler).__module__.partition(".")[0] == "airflow"
        and request.node.get_closest_marker("airflow") is None
    ]
    for handler in airflows:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in airflows:
            root.addHandler(handler)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A ThreadedMotoServer on 127.0.0.1 (free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    if hasattr(ThreadedMotoServer, "get_host_and_port"):  # moto >= 5.0.13: the OS picks
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
    else:  # older moto can't report the port it got: pick a free one first
        host, port = "127.0.0.1", _free_port()
        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        server.start()
    endpoint = f"http://{host}:{port}"
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous
        server.stop()


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the moto server for this test (``AWS_ENDPOINT_URL``) and return it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    for key, value in _FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def bucket(aws: str) -> str:
    """A fresh, empty bucket on the moto server (unique per test)."""
    import boto3

    name = f"handoff-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name


@pytest.fixture
def stack() -> str:
    """A unique stack name per test, so SSM parameters and S3 prefixes never collide."""
    return f"stack-{uuid.uuid4().hex[:8]}"
