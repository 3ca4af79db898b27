"""Run one pipeline: every stage a real process, joined by OS pipes.

What this module guarantees (the runner in :mod:`runner` builds on it):

* **Data path.** Stage *i*'s stdout is an ``os.pipe()`` (of 1 MiB where Linux allows:
  :func:`_widen_pipe`) whose read end is stage *i+1*'s stdin; the parent closes its
  copies of both ends right after spawning, so no byte of the data stream goes through
  Python, EOF propagates, and a reader that exits early makes its writer get
  ``SIGPIPE`` (children start with ``SIGPIPE`` at its default action:
  ``subprocess.Popen(restore_signals=True)``, the default, undoes Python's
  ``SIG_IGN``). The first stage reads ``/dev/null``; the last stage writes to the file
  descriptor the caller passes (the state temp file, a log file) or ``/dev/null``.
* **Process group, tag, no orphans.** All stages of a pipeline share one new process
  group (the first stage is its leader; the group is not a new session, so it keeps the
  caller's controlling terminal without receiving its Ctrl-C). Every stage also carries
  the pipeline's tag in its environment, inherited by all it starts, and dies with the
  thread that started it (``PR_SET_PDEATHSIG``); a watchdog process kills what is left
  if handoff itself is killed (see :mod:`process_tree`). Timeouts,
  :meth:`PipelineControl.terminate` and the final clean-up signal the group *and* the
  tagged processes, so grandchildren (``sh -c 'sleep 1000 & ...'``) and those that left
  the group (``setsid``, coreutils ``timeout``, daemons) die with it. When the pipeline
  ends — success included — processes still left get ``SIGTERM`` and, if they hold the
  stderr pipes open past the grace period, ``SIGKILL``: a task never leaves orphans.
  Stages are observed with ``waitid(WNOWAIT)`` and reaped only at the very end, so the
  group id (the leader's pid) can't be recycled while we may still signal it.
* **Failure semantics** (``bash -o pipefail``, with one deliberate difference): the
  pipeline fails if any stage exits non-zero or dies from a signal, **except** a stage
  killed by ``SIGPIPE`` whose downstream neighbour (the reader that closed the pipe)
  succeeded — e.g. ``tap | head -n 10``: ``head`` exiting early is not a failure of the
  tap. bash would report 141 there. A writer that handles the broken pipe itself
  (Python programs get ``BrokenPipeError``, usually exit 1 or 120) is still a failure:
  we can't tell that apart from a real error. The error names the first stage that
  failed on its own (not a ``SIGPIPE`` victim), e.g. ``task 'default' stage 2 exited
  with status 3: wc -l``; other failing stages are appended. Stage numbers in messages,
  callbacks and log file names are **1-based**.
* **Timeout / terminate.** ``SIGTERM`` to the group, ``kill_grace`` seconds, then
  ``SIGKILL``. The result's error says ``timed out after N s`` (``timed_out=True``) or
  ``was terminated (<reason>)``.
* **stderr.** Each stage's stderr is a pipe drained by its own thread in 1 MiB reads
  and written to that stage's log file as read (close to pipe speed: 1 GB within 3x
  the time bash takes to write it to a file, ``bench/stderr_relay.py``). Lines (longer than
  64 KiB cut into pieces) go to ``on_stderr_line(stage_number, line)`` from a second
  thread; when the callback can't keep up (8 MiB behind), chunks are left out of the
  callback — never out of the log file — and one line says how many bytes. Reading
  stderr never blocks the data path and lots of stderr can't deadlock anything.
* **bytes_out** of a stage whose stdout is a pipe is read from ``/proc/<pid>/io``
  (``wchar``, just before reaping) minus the stderr bytes we received: it counts what the
  stage and its reaped children wrote through ``write()``: exact for a plain program,
  an over-count when the stage writes files itself or is a shell running an inner
  pipeline (``sh -c 'a | b'`` counts both). ``None`` where ``/proc`` is unavailable.
  For the last stage it is the size of its stdout file (when it writes to one).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from handoff_provider.core.errors import StageError
from handoff_provider.core.run.process_tree import (
    Watchdog,
    child_setup,
    direct_exec,
    new_tag,
    pdeathsig_prefix,
    signal_tagged,
    stop_tagged,
)

#: Seconds between SIGTERM and SIGKILL when a pipeline is stopped.
DEFAULT_KILL_GRACE = 10.0

#: Longest stderr line handed to the callback in one piece.
MAX_LINE = 64 * 1024
#: Bytes of stderr that may wait for the line callback before chunks are left out of it.
RELAY_BACKLOG = 8 * 1024 * 1024
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
#: Capacity asked for every pipe of a pipeline (Linux's default ``pipe-max-size``).
_PIPE_SIZE = 1024 * 1024


def _widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe instead of Linux's 64 KiB: the stages then hand over data in
    fewer, larger writes and context switches. 4 GiB through ``head | cat | wc -c`` took
    1.83-1.92 s with 1 MiB pipes against 1.88-2.93 s for ``sh -c`` (64 KiB) and 2.0-4.4 s
    for the same 64 KiB pipes opened from Python, on this 2-core machine. Best effort: the
    default stays where the system refuses (not Linux, ``pipe-max-size`` lowered, the
    user's ``pipe-user-pages-soft`` reached)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)


StderrCallback = Callable[[int, str], None]


@dataclass(frozen=True)
class StageSpec:
    """One stage, ready to spawn.

    ``argv[0]`` is the resolved executable path. ``label`` is the command *as written*
    (command name + unrendered args template): it appears in messages and summaries,
    never the rendered arguments, which may hold secrets.
    """

    argv: Sequence[str]
    env: Mapping[str, str]
    label: str


@dataclass
class StageOutcome:
    """How one stage ended. ``returncode`` follows ``Popen`` (negative = killed by signal)."""

    number: int
    label: str
    returncode: int | None = None
    seconds: float = 0.0
    bytes_out: int | None = None
    stderr_bytes: int = 0
    excused_sigpipe: bool = False

    @property
    def exit_code(self) -> int | None:
        """Shell convention: the exit status, or 128 + signal number when killed."""
        if self.returncode is None:
            return None
        return self.returncode if self.returncode >= 0 else 128 - self.returncode

    @property
    def signal_name(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        return _signal_name(-self.returncode)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 or self.excused_sigpipe

    def describe(self) -> str:
        if self.returncode is None:
            return "did not finish"
        if self.returncode >= 0:
            return f"exited with status {self.returncode}"
        return f"was killed by signal {self.signal_name}"


@dataclass
class PipelineResult:
    """Outcome of :func:`run_pipeline`; ``error`` is ``None`` exactly when it succeeded."""

    stages: list[StageOutcome]
    seconds: float
    timed_out: bool = False
    terminated: str | None = None
    error: StageError | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class PipelineControl:
    """A handle to stop the pipeline(s) running under it, from any thread.

    :meth:`terminate` is idempotent and safe to call from a signal handler running in
    the very thread that waits for the pipeline: the condition is re-entrant and the
    method only signals process groups and notifies waiters. Once terminated, the
    control stays terminated: pipelines started under it afterwards are not spawned.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._groups: dict[int, str] = {}  # pgid -> the tag its processes carry
        self.reason: str | None = None

    @property
    def terminated(self) -> bool:
        return self.reason is not None

    def terminate(self, reason: str = "terminated") -> None:
        with self._cond:
            if self.reason is None:
                self.reason = reason or "terminated"
            for pgid, tag in list(self._groups.items()):
                _signal_all(pgid, tag, signal.SIGTERM)
            self._cond.notify_all()

    # Used by run_pipeline.
    def _register(self, pgid: int, tag: str) -> None:
        with self._cond:
            self._groups[pgid] = tag
            if self.reason is not None:
                _signal_all(pgid, tag, signal.SIGTERM)

    def _unregister(self, pgid: int) -> None:
        with self._cond:
            self._groups.pop(pgid, None)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_all(pgid: int, tag: str, sig: int) -> None:
    """Signal the pipeline's group and every process carrying its tag (those that left
    the group: ``setsid``, ``timeout``, daemons; see :mod:`process_tree`)."""
    if pgid:
        _killpg(pgid, sig)
    signal_tagged([tag], sig)


def _wchar(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/io", "rb") as handle:
            for line in handle:
                if line.startswith(b"wchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class _StderrPump(threading.Thread):
    """Drain one stage's stderr at pipe speed; see "stderr" in the module docstring.

    This thread only reads (1 MiB at a time) and writes each chunk to the log file as it
    is read. Lines go to ``on_line`` from a second thread, the relay, through a queue of
    at most :data:`RELAY_BACKLOG` bytes: when the consumer (a logger, a terminal) can't
    keep up, chunks are left out of the relay — never out of the log file — and one line
    says how many bytes were not relayed. ``eof`` is set when the stream closed (every
    writer is gone); the thread ends once the relay has caught up.
    """

    def __init__(
        self,
        stream: IO[bytes],
        number: int,
        log_path: Path | None,
        on_line: StderrCallback | None,
    ) -> None:
        super().__init__(name=f"handoff-stderr-{number}", daemon=True)
        self.stream = stream
        self.number = number
        self.log_path = log_path
        self.on_line = on_line
        self.bytes = 0
        self.callback_error: BaseException | None = None
        self.eof = threading.Event()
        self._cond = threading.Condition()
        self._queue: collections.deque[bytes | int | None] = collections.deque()
        self._queued = 0
        self._skipped = 0

    def run(self) -> None:
        relay = None
        if self.on_line is not None:
            relay = threading.Thread(
                target=self._relay, name=f"handoff-relay-{self.number}", daemon=True
            )
            relay.start()
        sink = None
        if self.log_path is not None:
            # Without a log file we still drain: a stage must never block on its stderr.
            with contextlib.suppress(OSError):
                sink = open(self.log_path, "wb", buffering=0)  # noqa: SIM115
        fd = self.stream.fileno()
        _widen_pipe(fd)  # fewer, larger reads
        try:
            while True:
                try:
                    chunk = os.read(fd, 1 << 20)
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    continue
                if not chunk:
                    break
                self.bytes += len(chunk)
                if sink is not None:
                    try:
                        sink.write(chunk)
                    except OSError:  # disk full, artifacts/ removed: keep draining
                        sink.close()
                        sink = None
                if relay is not None:
                    self._offer(chunk)
        finally:
            self.eof.set()
            if sink is not None:
                sink.close()
            self.stream.close()
            if relay is not None:
                self._offer(None)
                relay.join()

    def _offer(self, chunk: bytes | None) -> None:
        """Queue ``chunk`` for the relay (``None``: end of stream), or count it skipped."""
        with self._cond:
            if chunk is not None and self._queued + len(chunk) > RELAY_BACKLOG:
                self._skipped += len(chunk)
                return
            if self._skipped:
                self._queue.append(self._skipped)  # the gap, where it happened
                self._skipped = 0
            self._queue.append(chunk)
            self._queued += len(chunk or b"")
            self._cond.notify()

    def _relay(self) -> None:
        pending = b""
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                if isinstance(item, bytes):
                    self._queued -= len(item)
            if item is None:
                if pending:
                    self._emit(pending)
                return
            if isinstance(item, int):
                if pending:
                    self._emit(pending)
                    pending = b""
                where = f" (all of it is in {self.log_path.name})" if self.log_path else ""
                self._call(
                    f"[handoff: {item} bytes of stderr not relayed: written faster than "
                    f"the log takes them{where}]"
                )
                continue
            lines = (pending + item).split(b"\n")
            pending = lines.pop()
            for line in lines:
                self._emit(line)
            while len(pending) >= MAX_LINE:
                self._emit(pending[:MAX_LINE])
                pending = pending[MAX_LINE:]

    def _emit(self, raw: bytes) -> None:
        for start in range(0, max(len(raw), 1), MAX_LINE):
            self._call(raw[start : start + MAX_LINE].decode("utf-8", "replace").rstrip("\r"))

    def _call(self, line: str) -> None:
        if self.callback_error is not None or self.on_line is None:
            return
        try:
            self.on_line(self.number, line)
        except BaseException as exc:  # keep draining, report later
            self.callback_error = exc


class _Reaper(threading.Thread):
    """Wait (without reaping) for one stage to exit, then notify the pipeline."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        outcome: StageOutcome,
        started: float,
        measure_io: bool,
        cond: threading.Condition,
    ) -> None:
        super().__init__(name=f"handoff-wait-{outcome.number}", daemon=True)
        self.proc = proc
        self.outcome = outcome
        self.started = started
        self.measure_io = measure_io
        self.cond = cond
        self.done = False
        self.wchar: int | None = None

    def run(self) -> None:
        returncode: int | None
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored?): best effort
            info = None
        if info is not None:
            exited = info.si_code == os.CLD_EXITED
            returncode = info.si_status if exited else -info.si_status
            if self.measure_io:
                self.wchar = _wchar(self.proc.pid)
        else:
            returncode = self.proc.wait()
        with self.cond:
            self.outcome.returncode = returncode
            self.outcome.seconds = time.monotonic() - self.started
            self.done = True
            self.cond.notify_all()


def _close(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def run_pipeline(
    stages: Sequence[StageSpec],
    *,
    task: str,
    cwd: Path,
    stdout: int | None = None,
    stderr_logs: Sequence[Path | None] | None = None,
    on_stderr_line: StderrCallback | None = None,
    timeout: float | None = None,
    kill_grace: float = DEFAULT_KILL_GRACE,
    control: PipelineControl | None = None,
    first_number: int = 1,
    deadline: float | None = None,
) -> PipelineResult:
    """Run ``stages`` as ``s1 | s2 | ...`` in ``cwd``; see the module docstring.

    ``stdout`` is a file descriptor for the last stage's stdout (``None``: /dev/null);
    the caller keeps ownership of it. ``stderr_logs[i]`` receives stage *i*'s stderr.
    ``first_number`` is the number of the first stage in messages (a ``commands:`` task
    runs each command as a one-stage pipeline numbered after its position).
    ``deadline`` (a ``time.monotonic()`` value) replaces ``started + timeout`` when a
    task's timeout spans several pipelines; ``timeout`` is still what messages show.
    Never raises for a failing stage: the result's ``error`` holds the
    :class:`StageError` (the caller decides when to raise it). Raises ``StageError`` only
    when a stage can't be spawned (after stopping the ones already started).

    (Longer than 60 lines on purpose: half of it is this signature and docstring; the
    rest is one spawn, wait, stop sequence whose cleanup, on any exception, must see
    every process started so far. The steps are :func:`_spawn`, :func:`_wait`,
    :func:`_stop_leftovers` and :func:`_measure`.)
    """
    if not stages:
        raise ValueError("a pipeline needs at least one stage")
    control = control or PipelineControl()
    cond = control._cond
    logs: list[Path | None] = list(stderr_logs) if stderr_logs is not None else [None] * len(stages)
    outcomes = [
        StageOutcome(number=first_number + i, label=stage.label) for i, stage in enumerate(stages)
    ]
    started = time.monotonic()
    if control.terminated:
        return _finish(
            task, outcomes, started, timed_out=False, terminated=control.reason, timeout=timeout
        )

    group = _Group(tag=new_tag())
    watchdog = Watchdog.get()
    watchdog.register(group.tag)
    try:
        _spawn(
            stages,
            group,
            outcomes,
            cwd=cwd,
            stdout=stdout,
            logs=logs,
            started=started,
            on_stderr_line=on_stderr_line,
            control=control,
            task=task,
        )
        if deadline is None and timeout is not None:
            deadline = started + timeout
        timed_out, kill_at = _wait(
            group.reapers, group.pgid, group.tag, cond, control, deadline, kill_grace
        )
    except BaseException:  # a spawn failure, KeyboardInterrupt: leave nothing behind
        _signal_all(group.pgid, group.tag, signal.SIGKILL)
        _reap_all(group.procs, group.pumps, group.pgid, group.tag, control, grace=1.0)
        watchdog.release(group.tag)
        raise
    # terminate() signals the group itself: the stages may all be gone before the wait
    # loop saw the reason, so the reason (not kill_at) tells whether we were stopped.
    stopped = kill_at is not None or control.reason is not None

    _stop_leftovers(group, stopped=stopped, control=control, kill_grace=kill_grace)
    watchdog.release(group.tag)
    _measure(outcomes, group, stdout)
    callback_errors = [p.callback_error for p in group.pumps if p.callback_error is not None]
    result = _finish(
        task,
        outcomes,
        started,
        timed_out=timed_out,
        terminated=control.reason if (stopped and not timed_out) else None,
        timeout=timeout,
    )
    if callback_errors:
        raise callback_errors[0]
    return result


def _stop_leftovers(
    group: _Group, *, stopped: bool, control: PipelineControl, kill_grace: float
) -> None:
    """After the stages exited: everything a stage left behind goes too, in the group or
    not (see the module docstring); SIGKILL at once when the pipeline was stopped."""
    if stopped:
        _signal_all(group.pgid, group.tag, signal.SIGKILL)
    else:
        _killpg(group.pgid, signal.SIGTERM)
        stop_tagged([group.tag], grace=min(kill_grace, 2.0))
    _reap_all(group.procs, group.pumps, group.pgid, group.tag, control, grace=kill_grace)


@dataclass
class _Group:
    """The processes of one pipeline (one process group, all carrying ``tag`` in their
    environment) with their stderr pumps and reapers, as far as they were started."""

    tag: str
    pgid: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pumps: list[_StderrPump] = field(default_factory=list)
    reapers: list[_Reaper] = field(default_factory=list)


def _spawn(
    stages: Sequence[StageSpec],
    group: _Group,
    outcomes: list[StageOutcome],
    *,
    cwd: Path,
    stdout: int | None,
    logs: list[Path | None],
    started: float,
    on_stderr_line: StderrCallback | None,
    control: PipelineControl,
    task: str,
) -> None:
    """Start every stage, each reading the previous one's stdout, into ``group`` (the
    first stage's pid is the group id). Raises ``StageError`` when one can't start; the
    caller stops what ``group`` holds then."""
    stdin_fd: int | None = None  # read end feeding the next stage
    last = len(stages) - 1
    try:
        for i, stage in enumerate(stages):
            write_fd: int | None = None
            if i < last:
                read_next, write_fd = os.pipe()
                _widen_pipe(write_fd)
            else:
                read_next = None
            out_fd = write_fd if write_fd is not None else stdout
            try:
                proc = _popen(stage, stdin_fd, out_fd, cwd=cwd, group=group)
            except OSError as exc:
                _close(read_next)
                raise StageError(
                    f"task '{task}' stage {outcomes[i].number} ('{stage.label}') could not "
                    f"start: {exc.strerror or exc}",
                    task=task,
                    stage_index=outcomes[i].number,
                    command=stage.label,
                    exit_code=None,
                ) from None
            finally:
                # The parent's copies must go now: EOF and SIGPIPE depend on it.
                _close(stdin_fd)
                _close(write_fd)
                stdin_fd = None
            stdin_fd = read_next
            group.procs.append(proc)
            if group.pgid == 0:
                group.pgid = proc.pid
                control._register(group.pgid, group.tag)
            assert proc.stderr is not None
            pump = _StderrPump(proc.stderr, outcomes[i].number, logs[i], on_stderr_line)
            pump.start()
            group.pumps.append(pump)
            reaper = _Reaper(proc, outcomes[i], started, measure_io=i < last, cond=control._cond)
            reaper.start()
            group.reapers.append(reaper)
    except BaseException:
        _close(stdin_fd)
        raise


def _popen(
    stage: StageSpec, stdin_fd: int | None, stdout_fd: int | None, *, cwd: Path, group: _Group
) -> subprocess.Popen[bytes]:
    """One stage's process, in ``group``'s process group, tagged (``None`` fds: /dev/null),
    dying with this thread (``PR_SET_PDEATHSIG``: through ``setpriv`` when there is one and
    the program can be executed directly, else set in a ``preexec_fn``; see
    :mod:`process_tree`)."""
    argv = list(stage.argv)
    common: dict[str, Any] = {
        "stdin": stdin_fd if stdin_fd is not None else subprocess.DEVNULL,
        "stdout": stdout_fd if stdout_fd is not None else subprocess.DEVNULL,
        "stderr": subprocess.PIPE,
        "cwd": cwd,
        "env": {**stage.env, group.tag: "1"},
        "close_fds": True,
        "restore_signals": True,
    }
    prefix = pdeathsig_prefix()
    if prefix is not None and direct_exec(argv):
        return subprocess.Popen([*prefix, *argv], process_group=group.pgid, **common)
    return subprocess.Popen(argv, preexec_fn=child_setup(group.pgid), **common)


def _measure(outcomes: list[StageOutcome], group: _Group, stdout: int | None) -> None:
    """Bytes each stage wrote (its I/O counter less its stderr; the last stage's: the
    size of a regular file it wrote to)."""
    for outcome, pump, reaper in zip(outcomes, group.pumps, group.reapers, strict=True):
        outcome.stderr_bytes = pump.bytes
        if reaper.wchar is not None:
            outcome.bytes_out = max(0, reaper.wchar - pump.bytes)
    if stdout is not None:
        with contextlib.suppress(OSError):
            st = os.fstat(stdout)
            if _is_regular(st.st_mode):
                outcomes[-1].bytes_out = st.st_size


def _wait(
    reapers: Sequence[_Reaper],
    pgid: int,
    tag: str,
    cond: threading.Condition,
    control: PipelineControl,
    deadline: float | None,
    kill_grace: float,
) -> tuple[bool, float | None]:
    """Wait until every stage exited, enforcing the deadline and terminate requests
    (SIGTERM to the group, SIGKILL ``kill_grace`` later). Returns (timed_out, kill_at)."""
    timed_out = False
    kill_at: float | None = None
    killed = False
    with cond:
        while not all(r.done for r in reapers):
            now = time.monotonic()
            if kill_at is None:
                if control.reason is not None:
                    _signal_all(pgid, tag, signal.SIGTERM)
                    kill_at = now + kill_grace
                elif deadline is not None and now >= deadline:
                    timed_out = True
                    _signal_all(pgid, tag, signal.SIGTERM)
                    kill_at = now + kill_grace
            if kill_at is not None and not killed and now >= kill_at:
                _signal_all(pgid, tag, signal.SIGKILL)
                killed = True
            if killed:
                wake = None  # SIGKILL sent: the reapers will notify
            elif kill_at is not None:
                wake = kill_at
            else:
                wake = deadline
            cond.wait(max(0.0, wake - now) if wake is not None else None)
    return timed_out, kill_at


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _reap_all(
    procs: Sequence[subprocess.Popen[bytes]],
    pumps: Sequence[_StderrPump],
    pgid: int,
    tag: str,
    control: PipelineControl,
    *,
    grace: float,
) -> None:
    """Wait for the stderr pipes to close (SIGKILL the group and the tagged processes if
    leftovers keep them open), let the relays catch up, then reap."""
    deadline = time.monotonic() + grace
    for pump in pumps:
        pump.eof.wait(max(0.0, deadline - time.monotonic()))
    if any(not p.eof.is_set() for p in pumps):
        _signal_all(pgid, tag, signal.SIGKILL)
        for pump in pumps:
            pump.eof.wait(5.0)
    for pump in pumps:
        pump.join()
    for proc in procs:
        proc.wait()
    if pgid:
        control._unregister(pgid)


def _finish(
    task: str,
    outcomes: list[StageOutcome],
    started: float,
    *,
    timed_out: bool,
    terminated: str | None,
    timeout: float | None,
) -> PipelineResult:
    seconds = time.monotonic() - started
    # SIGPIPE victims of a successful reader are not failures (walk from the end).
    for i in range(len(outcomes) - 2, -1, -1):
        outcome = outcomes[i]
        if outcome.returncode == -signal.SIGPIPE and outcomes[i + 1].ok:
            outcome.excused_sigpipe = True
    result = PipelineResult(
        stages=outcomes, seconds=seconds, timed_out=timed_out, terminated=terminated
    )
    if timed_out or terminated is not None:
        running = [o for o in outcomes if o.returncode is None or o.returncode < 0]
        culprit = running[0] if running else outcomes[-1]
        if timed_out:
            why = f"timed out after {_fmt_seconds(timeout or 0.0)} s"
        else:
            why = f"was terminated ({terminated})"
        result.error = StageError(
            f"task '{task}' {why} (stage {culprit.number} was running: {culprit.label})",
            task=task,
            stage_index=culprit.number,
            command=culprit.label,
            exit_code=culprit.exit_code,
            timed_out=timed_out,
        )
        return result
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return result
    primary = next((o for o in failed if o.returncode != -signal.SIGPIPE), failed[0])
    # Stage and status first, the (maybe long) command last: a UI cuts the right edge.
    message = f"task '{task}' stage {primary.number} {primary.describe()}: {primary.label}"
    others = [o for o in failed if o is not primary]
    if others:
        message += "; also " + ", ".join(
            f"stage {o.number} {o.describe()}: {o.label}" for o in others
        )
    result.error = StageError(
        message,
        task=task,
        stage_index=primary.number,
        command=primary.label,
        exit_code=primary.exit_code,
    )
    return result


def _fmt_seconds(value: float) -> str:
    return f"{value:g}"
