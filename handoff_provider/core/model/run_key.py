"""Run keys: the one path segment under ``<stack>/runs/`` that names a run's artifacts.

Kept apart from the S3 stores (and boto3) so that cheap callers, such as the CLI's
``workspace install`` path, can make a key without importing an AWS SDK.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone

from handoff_provider.core.errors import ConfigurationError

__all__ = ["check_run_key", "new_run_key"]

_RUN_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=-]{0,199}$")


def new_run_key(hint: str | None = None) -> str:
    """A run key: ``20240131T000000Z-ab12cd`` (UTC time + random), or ``hint`` made S3-safe.

    A hint that already is a valid key (:func:`check_run_key`) is kept as is. Otherwise
    anything but letters, digits, ``.``, ``_``, ``=`` and ``-`` becomes ``_`` (so the key
    is one path segment), leading punctuation is dropped and long hints are
    cut to 200 characters.
    """
    if hint is not None:
        if _RUN_KEY_RE.match(hint) and not hint.endswith("."):
            return hint
        cleaned = re.sub(r"[^A-Za-z0-9._=-]+", "_", hint).lstrip("._=-")[:200].rstrip(".")
        if cleaned:
            return cleaned
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # os.urandom, not the secrets module: the same source, without importing hmac,
    # hashlib and random at every start.
    return f"{stamp}-{os.urandom(3).hex()}"


def check_run_key(run_key: str) -> str:
    if not _RUN_KEY_RE.match(run_key) or run_key.endswith("."):
        raise ConfigurationError(
            f"run key {run_key!r}: use letters, digits, '.', '_', '=' and '-' "
            "(up to 200 characters, starting with a letter, digit or '_')"
        )
    return run_key
