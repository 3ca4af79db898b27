"""``handoff deploy``: the project's ECS task definition (``deploy:`` in project.yml).

    handoff deploy render -p PROJECT [--stack S] [--image IMAGE] [--region R]
    handoff deploy register -p PROJECT [--stack S] [--image IMAGE] [--region R]

``render`` prints the ``RegisterTaskDefinition`` request as JSON (checked against botocore's
input shape, no AWS call); ``register`` registers it, or prints ``unchanged`` when the
family's latest ACTIVE revision already says the same.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from handoff_provider.core.errors import ConfigurationError

__all__ = ["add_deploy_parser", "run_deploy"]


def add_deploy_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``deploy`` verb (render, register) to the ``handoff`` parser's sub-parsers."""
    parser = subparsers.add_parser("deploy", help="the project's ECS task definition")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help in (
        ("render", "print the ECS task definition of project.yml's deploy: (JSON)"),
        ("register", "register it in ECS unless the latest revision is the same"),
    ):
        action = actions.add_parser(name, help=help)
        action.add_argument("-p", "--project", type=Path, required=True, help="project directory")
        action.add_argument(
            "--stack", help="stack name (default: $HANDOFF_STACK, then $STACK_NAME)"
        )
        action.add_argument("--image", help="container image (overrides deploy.image)")
        action.add_argument(
            "--region", help="AWS region (default: $AWS_REGION / $AWS_DEFAULT_REGION)"
        )
    return parser


def _region(args: argparse.Namespace) -> str:
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigurationError("no AWS region: pass --region or set AWS_REGION")
    return region


def run_deploy(args: argparse.Namespace) -> int:
    from handoff_provider.core.aws.task_definition import (
        register_task_definition,
        render_task_definition,
    )
    from handoff_provider.core.layout import stack_name
    from handoff_provider.core.load.project import load_project

    stack = stack_name(args.stack)
    if not stack:
        raise ConfigurationError("no stack name: pass --stack or set HANDOFF_STACK")
    region = _region(args)
    project = load_project(args.project)
    definition = render_task_definition(
        project.deploy, stack=stack, region=region, image=args.image
    )
    if args.action == "render":
        sys.stdout.write(json.dumps(definition, indent=2) + "\n")
        return 0
    from botocore.config import Config

    from handoff_provider.core.aws.clients import default_client_factory

    ecs = default_client_factory()("ecs", config=Config(region_name=region))
    arn, registered = register_task_definition(ecs, definition)
    print(f"deploy register: {'registered' if registered else 'unchanged'} {arn}", file=sys.stderr)
    sys.stdout.write(arn + "\n")
    return 0
