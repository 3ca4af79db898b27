"""The ``handoff`` console script: the original handoff verbs over the core API.

Every verb is a thin wrapper: the work is done in ``project``, ``orchestrate`` and
``stores`` so that the Airflow operators and the Fargate container run the same code.
Errors the core raises on purpose (:class:`HandoffError`) are printed as one line
(``handoff: error: ...``, control characters such as a newline in a file name escaped)
with exit status 2 for bad input (usage, configuration, project, template problems) and
1 for a failed run or AWS operation; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from handoff_provider.core.cli.deploy import add_deploy_parser, run_deploy
from handoff_provider.core.cli.state import add_lock_options, add_state_parser, run_state
from handoff_provider.core.cli.watch import add_watch_parser, run_watch
from handoff_provider.core.errors import (
    ConfigurationError,
    HandoffError,
    ProjectError,
    RunFailed,
    TemplateError,
)


def one_line(text: str) -> str:
    """``text`` on one printable line (:func:`~handoff_provider.core.load.safe_tree.shown`,
    imported only when there is something to print: ``--help`` never loads it)."""
    from handoff_provider.core.load.safe_tree import shown

    return shown(text)


def _add_remote_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("remote (AWS) options")
    group.add_argument("--stack", help="stack name (default: $HANDOFF_STACK, then $STACK_NAME)")
    group.add_argument(
        "--bucket", help="S3 bucket (default: $HANDOFF_BUCKET, then $S3_BUCKET_NAME)"
    )
    group.add_argument(
        "--config-name",
        help="SSM parameter name of the config (default: /handoff/<stack>/config)",
    )


def _add_project(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "-p",
        "--project",
        type=Path,
        required=required,
        help="project directory (project.yml, config/, files/)"
        + ("" if required else "; without it the remote config (SSM) and files (S3) are used"),
    )


def _add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--workspace", type=Path, required=True, help="workspace directory")


def _add_run_variables(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--var",
        dest="vars",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a project variable (repeatable)",
    )
    parser.add_argument("--start-at", help="start of the data interval (ISO 8601)")
    parser.add_argument("--end-at", help="end of the data interval (ISO 8601)")
    parser.add_argument(
        "--venv-cache",
        type=Path,
        help="venv cache directory (default: $HANDOFF_VENV_CACHE or ~/.cache/handoff/venvs)",
    )


def _command(
    verbs: Any, name: str, help: str, *, workspace: bool = False, project: bool | None = None
) -> argparse.ArgumentParser:
    """The sub-command ``name`` with its option groups, in this order: ``-w`` (when
    ``workspace``), ``-p`` (required when ``project`` is True, optional when False, absent
    when None) and the remote options (every sub-command made here takes them)."""
    parser = verbs.add_parser(name, help=help)
    if workspace:
        _add_workspace(parser)
    if project is not None:
        _add_project(parser, required=project)
    _add_remote_options(parser)
    return parser


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``verb``) the top level with only that verb's sub-parser:
    argparse builds every option's help formatter as it goes, and two dozen sub-parsers
    cost more than the rest of a local run's start-up. ``handoff --help`` (no verb) and
    an unknown verb get the whole parser, so that every verb is listed."""
    parser = argparse.ArgumentParser(
        prog="handoff",
        description="Run handoff projects: unix pipelines of commands, configured from "
        "project.yml, with config in SSM and files/artifacts in S3.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, add_parser in _VERB_PARSERS.items():
        if verb is None or verb == name:
            add_parser(verbs)
    return parser


def _add_config_parser(verbs: Any) -> None:
    """``handoff config print|push``."""
    config = verbs.add_parser("config", help="compiled project config (SSM)")
    config_verbs = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_print = _command(
        config_verbs,
        "print",
        "print the compiled config document (local with -p, else from SSM), its secrets "
        "shown as ***",
        project=False,
    )
    config_print.add_argument(
        "--show-secrets",
        action="store_true",
        help="print secret values as they are (the document exactly as stored in SSM)",
    )
    config_push = _command(
        config_verbs, "push", "compile the project and store it in SSM", project=True
    )
    config_push.add_argument(
        "--allow-advanced-tier",
        action="store_true",
        help="allow the SSM Advanced tier (up to 8 KB) when the document exceeds 4 KB",
    )
    config_push.add_argument("--kms-key-id", help="KMS key for the SecureString (default: aws/ssm)")


def _add_files_parser(verbs: Any) -> None:
    """``handoff files push|get``."""
    files = verbs.add_parser("files", help="run-time files (S3)")
    files_verbs = files.add_subparsers(dest="action", required=True, metavar="ACTION")
    _command(files_verbs, "push", "sync PROJECT/files/ to s3://BUCKET/STACK/files/", project=True)
    _command(
        files_verbs, "get", "sync s3://BUCKET/STACK/files/ to WORKSPACE/files/", workspace=True
    )


def _add_artifacts_parser(verbs: Any) -> None:
    """``handoff artifacts push|get|repair``."""
    artifacts = verbs.add_parser("artifacts", help="run artifacts (S3)")
    artifacts_verbs = artifacts.add_subparsers(dest="action", required=True, metavar="ACTION")
    artifacts_push = _command(
        artifacts_verbs,
        "push",
        "upload WORKSPACE/artifacts/ to STACK/runs/<run-key>/ (and last/ on success)",
        workspace=True,
    )
    artifacts_push.add_argument("--run-key", help="run key (default: timestamp + random suffix)")
    artifacts_push.add_argument(
        "--by-hand",
        action="store_true",
        help="artifacts/ was filled by hand (no run.json): publish it to last/ as a success",
    )
    add_lock_options(artifacts_push)
    _command(
        artifacts_verbs, "get", "download STACK/last/ into WORKSPACE/artifacts/", workspace=True
    )
    repair = _command(
        artifacts_verbs,
        "repair",
        "finish an interrupted publish of STACK/last/ (the next run does it too)",
    )
    add_lock_options(repair)


def _add_workspace_parser(verbs: Any) -> None:
    """``handoff workspace install``."""
    workspace = verbs.add_parser("workspace", help="workspace set-up")
    workspace_verbs = workspace.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = _command(
        workspace_verbs,
        "install",
        "create the venvs and run their installs",
        workspace=True,
        project=False,
    )
    install.add_argument("--venv-cache", type=Path, help="venv cache directory")


def _add_run_parser(verbs: Any) -> None:
    """``handoff run``."""
    run = _command(
        verbs, "run", "run the project's tasks in the workspace", workspace=True, project=False
    )
    _add_run_variables(run)
    run.add_argument(
        "-a",
        "--push-artifacts",
        action="store_true",
        help="archive WORKSPACE/artifacts/ to S3 after the run (runs/<run-key>/, last/ on success)",
    )
    run.add_argument(
        "--run-key", help="run key for the artifacts (default: timestamp + random suffix)"
    )
    state = run.add_argument_group("state")
    state.add_argument(
        "--full-refresh",
        action="store_true",
        help="start without the published state (the tap reads from its start date); the "
        "run's new state is published as usual",
    )
    state.add_argument(
        "--no-state-update",
        action="store_true",
        help="archive to runs/<run-key>/ but never touch last/ (the published state stays)",
    )
    add_lock_options(run)


def _add_show_parser(verbs: Any) -> None:
    """``handoff show commands``."""
    show = verbs.add_parser("show", help="inspect a project")
    show_verbs = show.add_subparsers(dest="action", required=True, metavar="ACTION")
    _command(show_verbs, "commands", "print the pipelines as shell lines", project=False)


def _remote(args: argparse.Namespace, *, kms_key_id: str | None = None) -> Any:
    from handoff_provider.core.stores import Remote

    return Remote.from_options(
        stack=args.stack,
        bucket=args.bucket,
        config_name=args.config_name,
        kms_key_id=kms_key_id,
    )


def _lazy_client_factory() -> Any:
    """A client factory that imports botocore and makes its session on first use only."""
    made: list[Any] = []

    def factory(service_name: str, config: Any = None) -> Any:
        if not made:
            from handoff_provider.core.aws.clients import default_client_factory

            made.append(default_client_factory())
        return made[0](service_name, config=config)

    return factory


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")


def _secrets_hidden(document: Any, *, source: str) -> Any:
    """``document`` with the project's secrets (the set masked in a run's output) as
    ``***``: what ``config print`` shows unless asked for ``--show-secrets``."""
    from handoff_provider.core.load.project import project_from_document
    from handoff_provider.core.model.secrets import SecretRedactor, redact_tree

    redactor = SecretRedactor()
    redactor.add_all(project_from_document(document, source=source).secret_values())
    return redact_tree(document, redactor.redact) if len(redactor) else document


def _cmd_config(args: argparse.Namespace) -> int:
    from handoff_provider.core.load.project import compile_document

    if args.action == "print":
        if args.project is not None:
            document, source = compile_document(args.project), str(args.project)
        else:
            document, source = _remote(args).config.fetch(), "remote config"
        _print_json(document if args.show_secrets else _secrets_hidden(document, source=source))
        return 0
    document = compile_document(args.project)
    result = _remote(args, kms_key_id=args.kms_key_id).config.push(
        document, allow_advanced_tier=args.allow_advanced_tier
    )
    print(f"config pushed: {result}", file=sys.stderr)
    return 0


def _workspace(path: Path) -> Any:
    """The workspace at ``path``, its directories created (a clear error if it can't be)."""
    from handoff_provider.core.run.workspace import Workspace

    return Workspace(path).prepare()


def _cmd_files(args: argparse.Namespace) -> int:
    remote = _remote(args)
    if args.action == "push":
        result = remote.files.push(args.project / "files")
    else:
        result = remote.files.get(_workspace(args.workspace).files_dir)
    print(f"files {args.action}: {result}", file=sys.stderr)
    return 0


def _cmd_artifacts(args: argparse.Namespace) -> int:
    remote = _remote(args)
    if args.action == "push":
        from handoff_provider.core.run.orchestrate import push_workspace_artifacts

        location = push_workspace_artifacts(
            args.workspace,
            remote,
            run_key=args.run_key,
            by_hand=args.by_hand,
            lock=not args.no_lock,
            lock_wait=args.lock_wait,
        )
    elif args.action == "repair":
        from handoff_provider.core.run.orchestrate import repair_artifacts

        result = repair_artifacts(remote, lock=not args.no_lock, lock_wait=args.lock_wait)
        print(f"artifacts repair: {remote.artifacts.last_uri}: {result}", file=sys.stderr)
        return 0
    else:
        location = remote.artifacts.get_last(_workspace(args.workspace).artifacts_dir)
    print(f"artifacts {args.action}: {location}", file=sys.stderr)
    return 0


def _cmd_workspace(args: argparse.Namespace) -> int:
    from handoff_provider.core.run.orchestrate import install_workspace

    remote = None if args.project is not None else _remote(args)
    venvs = install_workspace(
        args.workspace, project_dir=args.project, remote=remote, venv_cache_dir=args.venv_cache
    )
    for name, path in sorted(venvs.items()):
        print(f"venv {name}: {path}", file=sys.stderr)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from handoff_provider.core.load.templating import parse_var_overrides
    from handoff_provider.core.model.context import RunContext
    from handoff_provider.core.run.orchestrate import HandoffRun, RunRequest

    needs_remote = args.project is None or args.push_artifacts
    remote = _remote(args) if needs_remote else None
    request = RunRequest(
        workspace=args.workspace,
        project_dir=args.project,
        remote=remote,
        # A local run without a remote still reaches AWS for ssm(), transfers and Lambda
        # steps, through the AWS default chain, created only if the project uses them.
        client_factory=None if remote is not None else _lazy_client_factory(),
        push_artifacts=args.push_artifacts,
        variables=parse_var_overrides(args.vars),
        context=RunContext.from_strings(start_at=args.start_at, end_at=args.end_at),
        run_key=args.run_key,
        venv_cache_dir=args.venv_cache,
        lock=not args.no_lock,
        lock_wait=args.lock_wait,
        full_refresh=args.full_refresh,
        no_state_update=args.no_state_update,
    )
    run = HandoffRun(request)

    def _terminate(signum: int, _frame: Any) -> None:
        run.terminate(reason=signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        outcome = run.execute()
    except RunFailed as exc:
        print(f"handoff: run failed: {one_line(str(exc))}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"handoff: run succeeded: {outcome.describe()}", file=sys.stderr)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from handoff_provider.core.load.project import load_project, project_from_document

    if args.project is not None:
        project = load_project(args.project)
    else:
        project = project_from_document(_remote(args).config.fetch(), source="remote config")
    for line in project.shell_lines():
        print(line)
    return 0


_HANDLERS = {
    "config": _cmd_config,
    "files": _cmd_files,
    "artifacts": _cmd_artifacts,
    "workspace": _cmd_workspace,
    "run": _cmd_run,
    "show": _cmd_show,
    "state": lambda args: run_state(args, _remote(args)),
    "watch": run_watch,
    "deploy": run_deploy,
}


_VERB_PARSERS: dict[str, Callable[[Any], object]] = {
    "config": _add_config_parser,
    "files": _add_files_parser,
    "artifacts": _add_artifacts_parser,
    "workspace": _add_workspace_parser,
    "run": _add_run_parser,
    "show": _add_show_parser,
    "state": lambda verbs: add_state_parser(verbs, _command),
    "watch": add_watch_parser,
    "deploy": add_deploy_parser,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``handoff`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = argv[0] if argv and argv[0] in _VERB_PARSERS else None
    args = build_parser(verb).parse_args(argv)
    try:
        return _HANDLERS[args.verb](args)
    except (ConfigurationError, ProjectError, TemplateError) as exc:  # bad input
        print(f"handoff: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except HandoffError as exc:
        print(f"handoff: error: {one_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
