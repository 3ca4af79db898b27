"""A private Docker engine for the container tests, and the base image the Dockerfile needs.

:class:`Engine` starts its own ``dockerd`` (no bridge, no iptables: containers use the
host network, so they reach the moto server on 127.0.0.1 and nothing else) with its data
under a cache directory outside the clone, so images survive between runs, and stops it by
its pid. :func:`ensure_base_image` provides the Dockerfile's ``FROM`` image: pulled when a
registry is reachable, else a stand-in built with ``debootstrap`` from the Debian mirror
apt uses, cached by the hash of its recipe.

The steps that fill the cache (debootstrap, docker build) hold :data:`BUILD_LOCK`, a lock
file next to the cache, so that test sessions of several clones on one machine don't build
the same thing at once. It is the cache's own lock: running the whole target under some
machine-wide lock of your own (``flock /tmp/x.lock make test-container``) doesn't deadlock.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(
    os.environ.get("HANDOFF_CONTAINER_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "handoff-test-container"
)
#: Held while the cache is being filled (see the module docstring).
BUILD_LOCK = CACHE / "build.lock"
#: The machine's CA bundle: package downloads may pass a TLS-intercepting proxy whose CA
#: only this bundle holds, so the stand-in base carries it.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_LABEL = "org.handoff.stand-in-recipe"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")


@contextmanager
def build_lock() -> Iterator[None]:
    """Hold :data:`BUILD_LOCK` (waiting for another session's build to finish)."""
    from filelock import FileLock

    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(BUILD_LOCK)):
        yield


@dataclass
class Engine:
    """A ``dockerd`` of our own: data in ``CACHE/docker``, socket in a short temp dir."""

    data_root: Path = field(default_factory=lambda: CACHE / "docker")
    process: subprocess.Popen[bytes] | None = None
    run_dir: Path | None = None

    @property
    def host(self) -> str:
        assert self.run_dir is not None
        return f"unix://{self.run_dir / 'docker.sock'}"

    def start(self, timeout: float = 60) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd not found: install docker.io (make test-container does)")
        self.data_root.mkdir(parents=True, exist_ok=True)
        # unix socket paths are limited to ~108 bytes: a short directory of its own
        self.run_dir = Path(tempfile.mkdtemp(prefix="hdocker-"))
        log = (self.run_dir / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--data-root",
                str(self.data_root),
                "--exec-root",
                str(self.run_dir / "exec"),
                "--pidfile",
                str(self.run_dir / "docker.pid"),
                "-H",
                self.host,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own process group: stopped by pid, not by name
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.process.returncode}):\n{self.log()}")
            probe = self.docker("version", "--format", "{{.Server.Version}}", check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"dockerd did not answer within {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        path = self.run_dir / "dockerd.log" if self.run_dir else None
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM dockerd by its pid (it stops its containers and containerd), then wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600, lock: bool = False
    ) -> subprocess.CompletedProcess[str]:
        with build_lock() if lock else nullcontext():
            proc = subprocess.run(
                ["docker", *args],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc


# -- the base image ---------------------------------------------------------------------


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 ``URIs:`` or a ``deb`` line)."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources")]
    for path in sources:
        match = re.search(r"^URIs:\s*(\S+)", path.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.exists():
            match = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", path.read_text(), re.MULTILINE)
            if match:
                return match.group(1)
    return "http://deb.debian.org/debian"


def os_codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.MULTILINE)
    return match.group(1) if match else "bookworm"


def stand_in_recipe() -> dict[str, str]:
    """Everything the stand-in's content depends on; its hash keys the cache."""
    return {
        "suite": os_codename(),
        "mirror": apt_mirror(),
        "packages": ",".join(PACKAGES),
        "ca_bundle": hashlib.sha256(CA_BUNDLE.read_bytes()).hexdigest(),
        "steps": "minbase; CA bundle; no EXTERNALLY-MANAGED; /usr/local/bin/python; "
        "no apt lists/archives/docs/man/locales v1",
    }


def recipe_key(recipe: dict[str, str]) -> str:
    text = "\n".join(f"{k}={v}" for k, v in sorted(recipe.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_stand_in_rootfs(recipe: dict[str, str], tarball: Path) -> None:
    """debootstrap a minimal Debian with Python, make it look like python:*-slim, tar it."""
    work = Path(tempfile.mkdtemp(prefix="standin-", dir=tarball.parent))
    root = work / "rootfs"
    try:
        with build_lock():
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={recipe['packages']}",
                    recipe["suite"],
                    str(root),
                    recipe["mirror"],
                ],
                check=True,
                capture_output=True,
                timeout=3000,
            )
        shutil.copy2(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
        for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            marker.unlink()
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        for junk in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."],
            check=True,
            capture_output=True,
            timeout=600,
        )
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_base_image(engine: Engine, image: str) -> str:
    """Make ``image`` (the Dockerfile's base) available; returns how: present/pulled/stand-in."""
    recipe = stand_in_recipe()
    key = recipe_key(recipe)
    inspect = engine.docker(
        "image",
        "inspect",
        "--format",
        f'{{{{index .Config.Labels "{BASE_LABEL}"}}}}',
        image,
        check=False,
    )
    if inspect.returncode == 0:
        label = inspect.stdout.strip()
        if label in ("", "<no value>"):
            return "present"  # the real image, pulled before
        if label == key:
            return "stand-in (cached image)"
    if engine.docker("pull", "-q", image, check=False, timeout=120).returncode == 0:
        return "pulled"
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"base-{key}.tar"
    how = "stand-in (cached rootfs)"
    if not tarball.exists():
        build_stand_in_rootfs(recipe, tarball)
        how = "stand-in (debootstrap)"
    engine.docker(
        "import",
        "--change",
        f"LABEL {BASE_LABEL}={key}",
        "--change",
        'CMD ["python3"]',
        "--change",
        "ENV LANG=C.UTF-8",
        str(tarball),
        image,
        timeout=600,
    )
    return how
