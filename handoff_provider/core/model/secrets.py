"""Which values of a project are secrets (the set masked in logs, on the CLI and in Airflow).

A value is a secret when:

* it is a ``config/`` file value under a key that looks sensitive: a key path (file name
  included) one of whose parts contains ``password``, ``secret``, ``token``, ``api_key``,
  ``private_key``, ... (:data:`SENSITIVE_KEY_WORDS`, the list Airflow uses to hide
  connection extras and variables; matched case-insensitively, ``-``/``.``/spaces read
  as ``_``). In a JSON file the key path is the path of keys down to the value; in any
  other file a ``key = value`` / ``key: value`` line is one key;
* it is a config file holding a PEM private key (``-----BEGIN ... PRIVATE KEY-----``);
* it is in a file or under a key the project declares secret in ``project.yml``::

      secrets:
        - tap-config.json              # every value of the file (and the file itself)
        - target-config.json:$.auth    # everything under one key (a JSONPath)

* it is the value of an ``envs`` entry with ``secret: true`` (top level or a schedule's),
  an Airflow ``secret_envs`` value, or an ``ssm('/name')`` lookup (those last two are
  registered by the run itself).

Values shorter than :data:`MIN_SECRET_LENGTH` are never secrets (as Airflow's
``[logging] min_length_masked_secret``): replacing ``1`` or ``true`` everywhere would
garble every line and protect nothing. Anything else in a config file (``readings``,
a date, a file name) is plain data and stays readable.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from handoff_provider.core.errors import ProjectError

#: Airflow's ``DEFAULT_SENSITIVE_FIELDS`` (airflow.sdk.log / secrets_masker): the Airflow
#: layer passes Airflow's own list (plus ``[core] sensitive_var_conn_names``) instead.
SENSITIVE_KEY_WORDS: frozenset[str] = frozenset(
    {
        "access_key",
        "access_token",
        "api_key",
        "apikey",
        "auth_header",
        "authorization",
        "bearer",
        "connection_string",
        "dsn",
        "passphrase",
        "passwd",
        "password",
        "private_key",
        "proxy",
        "proxy_password",
        "proxies",
        "secret",
        "service_account",
        "service_key",
        "token",
        "keyfile_dict",
        "webhook_url",
    }
)

#: Shorter values are never masked (Airflow's ``min_length_masked_secret`` default).
MIN_SECRET_LENGTH = 5

_NON_WORD = re.compile(r"\W+")
_PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
#: ``key = value`` / ``key: value`` / ``export KEY=value`` lines of a non-JSON config file.
_KEY_VALUE_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z0-9_.\-]+)\s*[:=]\s*(.*?)\s*$")


def is_sensitive_key(name: str, words: Iterable[str] = SENSITIVE_KEY_WORDS) -> bool:
    """Whether a key name looks sensitive (Airflow's rule: any word is a substring of the
    lower-cased name with non-word characters read as ``_``)."""
    normalized = _NON_WORD.sub("_", name.strip().lower())
    return any(word in normalized for word in words)


@dataclass(frozen=True)
class SecretRef:
    """One ``secrets:`` entry of ``project.yml``: a config file, or a JSONPath in it."""

    file: str
    path: str | None = None  # a JSONPath (``$.auth``); None: the whole file

    @classmethod
    def parse(cls, text: str, *, where: str) -> SecretRef:
        """``name`` or ``name:$.json.path`` (``ProjectError`` naming ``where`` otherwise)."""
        name, sep, path = text.partition(":$")
        name = name.strip()
        if not name:
            raise ProjectError(f"{where}: {text!r} names no config file")
        if not sep:
            return cls(name)
        expression = "$" + path.strip()
        _compile_path(expression, where=where)
        return cls(name, expression)

    def __str__(self) -> str:
        return f"{self.file}:{self.path}" if self.path else self.file


def _compile_path(expression: str, *, where: str) -> Any:
    from jsonpath_ng import parse as parse_jsonpath  # lazily: only projects that use it
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError

    try:
        return parse_jsonpath(expression)
    except (JsonPathLexerError, JsonPathParserError, ValueError) as exc:
        raise ProjectError(f"{where}: {expression!r} is not a valid JSONPath ({exc})") from None


def config_file_secrets(
    name: str,
    text: str,
    refs: Iterable[SecretRef] = (),
    *,
    words: Iterable[str] = SENSITIVE_KEY_WORDS,
) -> list[str]:
    """The secret values of one config file (see the module docstring)."""
    refs = [ref for ref in refs if ref.file == name]
    words = frozenset(words)
    whole = any(ref.path is None for ref in refs) or is_sensitive_key(name, words)
    if whole or _PEM_PRIVATE_KEY.search(text):
        return [text, *_leaves_of_text(text)]
    try:
        parsed = json.loads(text)
    except ValueError:
        return [_strip_quotes(match[2]) for match in _key_value_lines(text) if match[1]]
    values = [value for path, value in _json_leaves(parsed, ()) if _any_sensitive(path, words)]
    for ref in refs:
        assert ref.path is not None
        for found in _compile_path(ref.path, where=f"secrets: {ref}").find(parsed):
            values.extend(value for _, value in _json_leaves(found.value, ()))
    return values


def _key_value_lines(text: str) -> Iterator[tuple[str, bool, str]]:
    for line in text.splitlines():
        match = _KEY_VALUE_LINE.match(line)
        if match:
            yield match[1], is_sensitive_key(match[1]), match[2]


def _strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _leaves_of_text(text: str) -> list[str]:
    try:
        parsed = json.loads(text)
    except ValueError:
        return [line.strip() for line in text.splitlines()]
    return [value for _, value in _json_leaves(parsed, ())]


def _json_leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(key path, value as text) of every scalar leaf (numbers too: a PIN is a number)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for item in value:
            yield from _json_leaves(item, path)
    elif isinstance(value, str):
        yield path, value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, json.dumps(value)


def _any_sensitive(path: tuple[str, ...], words: frozenset[str]) -> bool:
    return any(is_sensitive_key(part, words) for part in path)


def maskable(values: Iterable[str | None], min_length: int = MIN_SECRET_LENGTH) -> list[str]:
    """``values`` (and each line of a multi-line one) long enough to mask; deduped, in
    order. Logs are written per line, so a PEM key or a JSON file is masked per line too."""
    out: dict[str, None] = {}
    for value in values:
        if not value:
            continue
        for candidate in (value, *(line.strip() for line in value.splitlines())):
            if len(candidate.strip()) >= min_length:
                out.setdefault(candidate, None)
    return list(out)


def redact_tree(value: Any, redact: Callable[[str], str]) -> Any:
    """``value`` (JSON-like: dicts, lists, scalars) with ``redact`` applied to every string.

    Redacting each string before serialising matters: a secret inside an embedded config
    file is JSON-escaped once the document is dumped, and would no longer match."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_tree(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_tree(item, redact) for item in value]
    return value


class SecretRedactor:
    """Replaces registered secrets with ``***`` in text a run writes itself (the CLI has no
    Airflow masker): :meth:`add` values, then :meth:`redact` (or call the redactor).

    Values go through :func:`maskable` (too short ones are ignored; multi-line ones are
    also added line by line). Longest first, so a value containing another is replaced
    whole. Thread-safe.
    """

    REPLACEMENT = "***"

    def __init__(self, min_length: int = MIN_SECRET_LENGTH) -> None:
        self.min_length = min_length
        self._values: list[str] = []
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        self.add_all([value])

    def add_all(self, values: Iterable[str | None]) -> None:
        with self._lock:
            known = set(self._values)
            self._values.extend(v for v in maskable(values, self.min_length) if v not in known)
            self._values.sort(key=len, reverse=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def redact(self, text: str) -> str:
        with self._lock:
            values = list(self._values)
        for value in values:
            if value in text:
                text = text.replace(value, self.REPLACEMENT)
        return text

    __call__ = redact
