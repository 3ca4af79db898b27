"""``handoff state ...`` and the lease options shared by the verbs that publish.

    handoff state get                      the published state, on stdout
    handoff state list                     runs that published state, newest first (* = now)
    handoff state set VALUE | --file PATH  publish a new state ('-' reads stdin)
    handoff state clear                    publish "no state": the next run starts from scratch
    handoff state rollback --to RUN_KEY    publish an earlier run (its state) again

``set``/``clear``/``rollback`` take the stack lease (``--lock-wait``; ``--no-lock`` skips
it, unsafe) and print one line saying what changed; see ``core/stores/state.py``. ``set``
checks the value is JSON when the project says ``state_format: json`` (the project from
``-p``, else the remote config).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_lock_options", "add_state_parser", "run_state"]


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def add_lock_options(parser: argparse.ArgumentParser) -> None:
    """``--lock-wait SECONDS`` and ``--no-lock`` (see ``stores/lease.py``)."""
    group = parser.add_argument_group("stack lease (one run of a stack at a time)")
    group.add_argument(
        "--lock-wait",
        type=_seconds,
        metavar="SECONDS",
        help="wait this long for the stack lease held by another run, then fail naming it "
        "(default: $HANDOFF_LOCK_WAIT, else 600)",
    )
    group.add_argument(
        "--no-lock",
        action="store_true",
        help="UNSAFE: don't take the stack lease; concurrent runs of the stack then restore "
        "the same state (the conditional publish still refuses all but the first)",
    )


def add_state_parser(verbs: Any, command: Any) -> None:
    """Add ``state`` and its actions; ``command`` is the CLI's sub-command maker."""
    state = verbs.add_parser("state", help="the stack's published state (last/state)")
    actions = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    command(actions, "get", "print the published state on stdout")
    command(actions, "list", "list the runs that published state, newest first")
    set_parser = command(
        actions, "set", "publish a new state (under the stack lease)", project=False
    )
    set_parser.add_argument("value", nargs="?", help="the state (or use --file)")
    set_parser.add_argument("--file", type=Path, help="read the state from this file ('-': stdin)")
    add_lock_options(set_parser)
    clear = command(actions, "clear", "publish 'no state': the next run starts without one")
    add_lock_options(clear)
    rollback = command(actions, "rollback", "publish an earlier run's state again")
    rollback.add_argument("--to", required=True, metavar="RUN_KEY", help="a run from `state list`")
    add_lock_options(rollback)


def run_state(args: argparse.Namespace, remote: Any) -> int:
    from handoff_provider.core.stores import state as state_ops

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.action == "get":
        value, run_key = state_ops.get_state(remote)
        if value is None:
            where = f"run {run_key} has no state file" if run_key else "nothing published yet"
            print(f"handoff: no state under {remote.artifacts.last_uri} ({where})", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(value)
        sys.stdout.flush()
        log(f"state: from run {run_key} ({len(value)} bytes)")
        return 0
    if args.action == "list":
        rows = state_ops.list_published(remote)
        if not rows:
            log(f"state: nothing published under {remote.artifacts.last_uri} yet")
        for row in rows:
            print(row.line())
        return 0

    from handoff_provider.core.stores.lease import lease_options

    options: dict[str, Any] = {"lock": not args.no_lock, **lease_options(args.lock_wait)}
    if args.action == "set":
        value = _read_value(args)
        project_format, source = _state_format(args, remote)
        state_ops.check_state_value(value, state_format=project_format, source=source)
        change = state_ops.set_state(remote, value, log=log, **options)
    elif args.action == "clear":
        change = state_ops.set_state(remote, None, log=log, **options)
    else:
        change = state_ops.rollback_state(remote, args.to, log=log, **options)
    print(f"handoff: {change}", file=sys.stderr)
    return 0


def _read_value(args: argparse.Namespace) -> bytes:
    from handoff_provider.core.errors import ConfigurationError

    if (args.value is None) == (args.file is None):
        raise ConfigurationError("state set: give the state as VALUE or --file PATH (one of them)")
    if args.value is not None:
        return args.value.encode("utf-8")
    if str(args.file) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(args.file).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"--file {args.file}: {exc.strerror}") from None


def _state_format(args: argparse.Namespace, remote: Any) -> tuple[str, str]:
    """(the project's ``state_format``, what to name in errors)."""
    from handoff_provider.core.errors import StoreError
    from handoff_provider.core.load.project import load_project, project_from_document

    where = "--file " + str(args.file) if args.file is not None else "state set VALUE"
    if args.project is not None:
        return load_project(args.project).state_format, where
    try:
        document = remote.config.fetch()
    except StoreError as exc:
        if f"{remote.config.resource} not found" not in str(exc):
            raise
        print(
            f"handoff: no remote config ({remote.config.name}): the state is not checked "
            "as JSON (pass -p PROJECT to check it)",
            file=sys.stderr,
        )
        return "text", where
    project = project_from_document(document, source=f"remote config ({remote.config.name})")
    return project.state_format, where
