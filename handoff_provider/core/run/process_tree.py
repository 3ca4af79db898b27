"""No orphans: every process a stage or an install starts dies with it, however handoff ends.

Three mechanisms, each covering what the previous one can't:

1. **Process group** (:mod:`pipeline`): a pipeline's stages share one group, which
   timeouts, terminate and the final clean-up signal.
2. **A tag in the environment.** Every stage and install command gets
   ``HANDOFF_TAG_<token>=1`` in its environment, which every descendant inherits —
   including one that leaves the process group (``setsid``, coreutils ``timeout``) or
   double-forks into a daemon that re-parents to PID 1. :func:`signal_tagged` finds them
   by reading ``/proc/<pid>/environ`` (the way Jenkins' process tree killer finds a
   build's processes), so timeouts, terminate and the end-of-task clean-up reach them.
   Each run of handoff uses its own variable name, so a nested ``handoff run`` doesn't
   hide its stages from the outer one.
3. **A watchdog for when handoff itself is killed** (``SIGKILL``, the OOM killer,
   Airflow killing the task process): signal handlers and ``finally`` don't run then.
   Each stage is started with ``PR_SET_PDEATHSIG=SIGKILL`` (it dies when the thread
   that started it dies: pipelines are started and waited for by one thread): through
   util-linux's ``setpriv --pdeathsig KILL`` (:func:`pdeathsig_prefix`) where there is
   one, which lets Python start the stage with ``vfork`` (a ``preexec_fn`` forces a full
   ``fork`` of the handoff process: milliseconds per stage, more in a big Airflow
   worker), else by :func:`child_setup` in the forked child. And a
   small watchdog process (a POSIX ``sh`` script, :data:`WATCHDOG_SCRIPT`, in its own
   session) holds a pipe from handoff: when the pipe reaches EOF — handoff is gone,
   whatever the cause — it ``SIGKILL``\\ s every process still carrying a registered tag
   (found with ``grep -l`` over ``/proc/*/environ``), then exits. A shell, not a second
   Python: it starts in a millisecond, where an interpreter cost as much as the rest of
   a local run's start-up, and it holds no copy of handoff's memory (as a fork would
   in an Airflow worker).

What remains out of reach (documented in the README): a process that clears or
replaces its environment (``env -i``, a setuid program that scrubs it), one started
through another service (``systemd-run``, ``docker run``, ``ssh``), one owned by
another user, and everything on a system without ``/proc`` (then only the process
group and ``PDEATHSIG`` on Linux apply).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence

TAG_PREFIX = "HANDOFF_TAG_"
PR_SET_PDEATHSIG = 1


def new_tag() -> str:
    """A fresh tag name, e.g. ``HANDOFF_TAG_1f2e3d4c5b6a7988``."""
    return f"{TAG_PREFIX}{os.urandom(8).hex()}"


def tagged_pids(tags: Iterable[str]) -> list[int]:
    """PIDs of processes (other than this one) whose environment holds one of ``tags``."""
    needles = [b"\0" + tag.encode() + b"=" for tag in tags]
    if not needles:
        return []
    own = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = b"\0" + handle.read()
        except OSError:  # gone, or not ours
            continue
        if any(needle in environ for needle in needles):
            found.append(int(entry))
    return found


def signal_tagged(tags: Iterable[str], sig: int) -> int:
    """Send ``sig`` to every process carrying one of ``tags``; returns how many."""
    pids = tagged_pids(list(tags))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    return len(pids)


def stop_tagged(tags: Iterable[str], *, grace: float) -> int:
    """``SIGTERM`` the tagged processes, wait up to ``grace`` s, then ``SIGKILL`` the rest
    (repeated while new ones appear, for processes forking as they die). Returns how many
    processes were found at first."""
    tags = list(tags)
    first = signal_tagged(tags, signal.SIGTERM)
    if not first:
        return 0
    deadline = time.monotonic() + grace
    while tagged_pids(tags) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(20):
        if not signal_tagged(tags, signal.SIGKILL):
            break
        time.sleep(0.02)
    return first


# ----------------------------------------------------------------------- child set-up


@functools.cache
def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (ctypes, imported only for a ``preexec_fn``), None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


#: Where :func:`pdeathsig_prefix` looks for ``setpriv`` (not ``$PATH``: the stages' own).
SETPRIV_DIRS = "/usr/bin:/bin"


@functools.cache
def pdeathsig_prefix() -> tuple[str, ...] | None:
    """``setpriv --pdeathsig KILL --`` (util-linux 2.33+) when this system has it, else None.

    Asked once per process (``setpriv --help`` lists the option). A stage started through
    it gets the same ``PR_SET_PDEATHSIG`` as :func:`child_setup` gives, set by
    ``setpriv`` right before it executes the stage's program in the same process; in
    the instant between the start and that ``prctl``, a handoff killed leaves the stage
    to the watchdog (its tag is set from the start).
    """
    if not sys.platform.startswith("linux"):
        return None
    import shutil

    setpriv = shutil.which("setpriv", path=SETPRIV_DIRS)
    if setpriv is None:
        return None
    try:
        probe = subprocess.run(
            [setpriv, "--help"], capture_output=True, timeout=10, check=False, close_fds=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if probe.returncode != 0 or b"--pdeathsig" not in probe.stdout:
        return None
    return (setpriv, "--pdeathsig", "KILL", "--")


def direct_exec(argv: Sequence[str]) -> bool:
    """Whether ``argv[0]`` is a program the kernel executes as it is: an absolute path
    to an executable ELF file, or to an executable ``#!`` script whose interpreter is an
    executable file. Only those go through ``setpriv``, whose ``execvp`` would run
    anything else (a script without ``#!``) with ``sh`` or report a failed start as a
    stage's exit status, where starting it directly is a stage that can't start."""
    program = argv[0] if argv else ""
    if not os.path.isabs(program) or not os.access(program, os.X_OK):
        return False
    try:
        with open(program, "rb") as handle:
            head = handle.read(256)  # the kernel reads as much of a "#!" line
    except OSError:
        return False
    if head.startswith(b"\x7fELF"):
        return True
    if not head.startswith(b"#!"):
        return False
    words = head[2:].split(b"\n", 1)[0].split()
    interpreter = os.fsdecode(words[0]) if words else ""
    return os.path.isabs(interpreter) and os.access(interpreter, os.X_OK)


def child_setup(pgid: int) -> Callable[[], None]:
    """A ``preexec_fn``: join process group ``pgid`` (0: a new one) and die with the
    parent (``PR_SET_PDEATHSIG``; if the parent died before that, exit at once).

    Only async-signal-safe work happens in the child: ``setpgid``, ``prctl`` (resolved
    before the fork), ``getppid``, ``_exit``.
    """
    parent = os.getpid()
    prctl = _load_prctl()

    def setup() -> None:
        os.setpgid(0, pgid)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(127)

    return setup


# ----------------------------------------------------------------------- the watchdog


#: The watchdog: reads ``+tag`` / ``-tag`` lines until EOF, then kills (``SIGKILL``) every
#: process whose environment holds a live tag (``TAG=``), again while new ones appear
#: (they may be forking), at most 50 rounds. Tags are ``[A-Za-z0-9_]`` only.
WATCHDOG_SCRIPT = r"""
trap '' INT HUP PIPE
export LC_ALL=C
tags=' '
while IFS= read -r line; do
  tag=${line#?}
  case $line in
    +*) tags="$tags$tag " ;;
    -*) case $tags in *" $tag "*) tags="${tags%%" $tag "*} ${tags#*" $tag "}" ;; esac ;;
  esac
done
set --
for tag in $tags; do set -- "$@" -e "$tag="; done
[ $# -gt 0 ] || exit 0
round=0
while [ $round -lt 50 ]; do
  found=$(grep -lsF "$@" /proc/[0-9]*/environ)
  [ -n "$found" ] || exit 0
  for file in $found; do
    pid=${file#/proc/}
    kill -9 "${pid%/environ}" 2>/dev/null
  done
  round=$((round + 1))
  sleep 0.02
done
"""


class Watchdog:
    """The process that kills tagged processes when handoff dies (see the module docs).

    One per handoff process, started on first use. :meth:`register` a tag before the
    first process carrying it is started, :meth:`release` it once they are all gone.
    """

    _lock = threading.Lock()
    _instance: Watchdog | None = None

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", WATCHDOG_SCRIPT],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # not in the terminal's or Airflow's group
                close_fds=True,
            )
        except OSError:
            self._proc = None  # no watchdog: groups, tags and PDEATHSIG still apply

    @classmethod
    def get(cls) -> Watchdog:
        with cls._lock:
            if cls._instance is None or cls._instance._pid != os.getpid():
                cls._instance = Watchdog()
            return cls._instance

    def _send(self, line: str) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return
        with self._lock, contextlib.suppress(OSError, ValueError):
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()

    def register(self, tag: str) -> None:
        self._send(f"+{tag}")

    def release(self, tag: str) -> None:
        self._send(f"-{tag}")
