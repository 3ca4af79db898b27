"""``handoff watch``: wait for S3 objects from the command line (e.g. a Fargate task step).

    handoff watch --bucket B --prefix in/ --file-regex '.*\\.csv' --timeout 3600 \\
        [--poke-interval 30] [--min-size N] [--max-size N] [--min-age S] [--max-age S] \\
        [--min-count N] [--max-count N] [--output files/inputs.json]

Prints one JSON object per matched object on stdout (``uri``, ``bucket``, ``key``,
``size``, ``last_modified``) and exits 0; exits 3 when the timeout passes first (1 for
AWS/usage errors, as every verb). ``--output`` also writes the list as a JSON array, e.g.
into the workspace for the following ``handoff run``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["EXIT_TIMEOUT", "add_watch_parser", "run_watch"]

EXIT_TIMEOUT = 3


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def _size(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def add_watch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``watch`` verb to the ``handoff`` parser's sub-parsers; returns it."""
    parser = subparsers.add_parser(
        "watch",
        help="wait for S3 objects matching a regex (prints them as JSON lines)",
        description="Wait until objects under s3://BUCKET/PREFIX/ whose key relative to "
        "PREFIX fully matches FILE_REGEX (and the size/age bounds) exist.",
    )
    parser.add_argument(
        "--bucket",
        default=None,
        help="bucket to watch (default: $HANDOFF_BUCKET, then $S3_BUCKET_NAME)",
    )
    parser.add_argument("--prefix", default="", help="folder to watch (default: whole bucket)")
    parser.add_argument(
        "--file-regex",
        required=True,
        help="regex fully matched against the key relative to the prefix",
    )
    parser.add_argument("--min-size", type=_size, help="minimum size in bytes (inclusive)")
    parser.add_argument("--max-size", type=_size, help="maximum size in bytes (inclusive)")
    parser.add_argument("--min-age", type=_non_negative, help="minimum seconds since LastModified")
    parser.add_argument("--max-age", type=_non_negative, help="maximum seconds since LastModified")
    parser.add_argument(
        "--min-count", type=int, default=1, help="objects needed to succeed (default 1)"
    )
    parser.add_argument(
        "--max-count",
        type=int,
        help="succeed only while at most this many objects match (more: keep waiting)",
    )
    parser.add_argument(
        "--timeout", type=_non_negative, required=True, help="seconds to wait (0: check once)"
    )
    parser.add_argument(
        "--poke-interval", type=_non_negative, default=30.0, help="seconds between checks"
    )
    parser.add_argument("--output", type=Path, help="also write the matches as a JSON array here")
    return parser


def run_watch(args: argparse.Namespace, *, client: Any = None, out: TextIO | None = None) -> int:
    """Handler of ``handoff watch``; ``client`` (an S3 client) and ``out`` (default
    stdout, where only the JSON lines go) are injectable for tests."""
    from handoff_provider.core.aws.s3_watch import wait_for_files
    from handoff_provider.core.errors import ConfigurationError, WatchTimeout
    from handoff_provider.core.layout import bucket_name

    bucket = bucket_name(args.bucket)
    if not bucket:
        raise ConfigurationError(
            "watch: no bucket (use --bucket or set HANDOFF_BUCKET / S3_BUCKET_NAME)"
        )
    if client is None:
        from handoff_provider.core.aws.clients import default_client_factory

        client = default_client_factory()("s3")
    try:
        matches = wait_for_files(
            client,
            bucket,
            args.prefix,
            args.file_regex,
            timeout=args.timeout,
            poke_interval=args.poke_interval,
            min_count=args.min_count,
            max_count=args.max_count,
            min_size=args.min_size,
            max_size=args.max_size,
            min_age=args.min_age,
            max_age=args.max_age,
            log=lambda line: print(f"handoff: {line}", file=sys.stderr, flush=True),
        )
    except WatchTimeout as exc:
        print(f"handoff: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    documents = [match.to_dict() for match in matches]
    stream = out if out is not None else sys.stdout
    for document in documents:
        stream.write(json.dumps(document) + "\n")
    stream.flush()
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(documents, indent=2) + "\n")
    print(f"handoff: watch matched {len(documents)} object(s)", file=sys.stderr)
    return 0
