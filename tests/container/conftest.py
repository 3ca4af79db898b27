"""Fixtures of the container tests: our own Docker engine, the built image, the operator's
container override. Run them with ``make test-container`` (``pytest -m container``); the
normal run leaves them out (``addopts`` deselects the ``container`` marker)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.engine import Engine, ensure_base_image

REPO = Path(__file__).resolve().parents[2]
IMAGE = "handoff-runtime:test"
#: The Dockerfile's base (``FROM python:${PYTHON_VERSION}-slim`` with the default ARG).
BASE_IMAGE = "python:3.12-slim"

_FIGURES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = terminalreporter.config.stash.get(_FIGURES, [])
    if figures:
        terminalreporter.section("container image")
        for line in figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Adds a figure to the terminal summary (image size, build time, start-up time)."""
    return pytestconfig.stash[_FIGURES].append


@pytest.fixture(scope="session")
def engine(report: Callable[[str], None]) -> Iterator[Engine]:
    started = time.monotonic()
    engine = Engine()
    engine.start()
    report(f"dockerd started in {time.monotonic() - started:.1f} s (data: {engine.data_root})")
    try:
        yield engine
    finally:
        engine.stop()


@dataclass(frozen=True)
class Image:
    engine: Engine
    tag: str


@pytest.fixture(scope="session")
def image(engine: Engine, report: Callable[[str], None]) -> Image:
    """The Dockerfile, built unchanged (``--network host``: pip reaches the package index)."""
    started = time.monotonic()
    how = ensure_base_image(engine, BASE_IMAGE)
    report(f"base {BASE_IMAGE}: {how} in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    engine.docker(
        "build", "--network", "host", "-q", "-t", IMAGE, str(REPO), lock=True, timeout=3000
    )
    size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    base = int(engine.docker("image", "inspect", "--format", "{{.Size}}", BASE_IMAGE).stdout)
    report(f"docker build in {time.monotonic() - started:.1f} s")
    report(f"image {IMAGE}: {size / 1e6:.0f} MB (base {base / 1e6:.0f} MB)")
    return Image(engine, IMAGE)
