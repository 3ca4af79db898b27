"""The ``ssm('/path/param')`` template function: SSM Parameter Store lookups at run time.

Open Task Framework's SSM plugin resolves variables from Parameter Store; handoff exposes the
same thing as a Jinja function usable in ``args``, ``envs`` and ``files/`` templates::

    args: "--token {{ ssm('/team/api/token') }}"

Contract (what the runner and the Airflow operators rely on):

* **Lazy.** Building the function fetches nothing; a parameter is read the first time a
  template calls ``ssm(name)``, i.e. while a run renders its templates. Nothing is read at
  DAG parse time because the function is only created for a run.
* **Once per run.** Each function made by :func:`make_ssm_function` keeps its own cache, so a
  name used in ten templates costs one ``GetParameter``. Create one function per run.
* **Decrypted.** ``WithDecryption=True`` (``SecureString`` values come back in clear; plain
  ``String``/``StringList`` are unaffected).
* **Masked first.** ``on_value(value)`` is called before the value is handed to the template,
  so the caller can register it with a secrets masker (Airflow's ``mask_secret``, the run's
  own redaction list) before it can reach any log.
* **Errors name the parameter, never the value.** A missing parameter raises
  :class:`SsmLookupError` (a :class:`TemplateError`) naming it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from handoff_provider.core.aws.clients import LazyClient
from handoff_provider.core.aws.errors import aws_error_types, error_code, failure_code
from handoff_provider.core.errors import SsmLookupError
from handoff_provider.core.model.secrets import SecretRedactor  # re-exported: its old home

__all__ = [
    "SecretRedactor",
    "make_ssm_function",
    "unavailable_ssm_function",
]

# Parameter names are at most 2048 characters (fully qualified) per the SSM API.
_MAX_NAME_LENGTH = 2048


def make_ssm_function(
    client_factory: Callable[[str], Any],
    *,
    on_value: Callable[[str], None] | None = None,
) -> Callable[[str], str]:
    """Return a template function ``ssm(name) -> str`` reading SSM parameters (see module doc).

    ``client_factory("ssm")`` is called at most once, on the first lookup. ``on_value`` is
    called once per distinct parameter, with the decrypted value, before it is returned.
    The function is thread-safe (stages may render concurrently).
    """
    cache: dict[str, str] = {}
    lock = threading.Lock()
    client = LazyClient(client_factory, "ssm")

    def ssm(name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise SsmLookupError(
                "template function ssm(): the parameter name must be a non-empty string",
                parameter=str(name),
            )
        if len(name) > _MAX_NAME_LENGTH:
            raise SsmLookupError(
                f"template function ssm(): parameter name longer than {_MAX_NAME_LENGTH} "
                "characters",
                parameter=name[:64],
            )
        with lock:
            if name in cache:
                return cache[name]
            value = _fetch(client(), name)
            if on_value is not None and value:
                on_value(value)
            cache[name] = value
            return value

    ssm.__doc__ = "Read an SSM parameter (decrypted), once per run: {{ ssm('/path/param') }}"
    return ssm


def unavailable_ssm_function(reason: str) -> Callable[[str], str]:
    """An ``ssm()`` for runs without AWS access: calling it fails with ``reason``
    (instead of Jinja's "'ssm' is undefined")."""

    def ssm(name: str) -> str:
        raise SsmLookupError(f"template function ssm({name!r}): {reason}", parameter=str(name))

    return ssm


def _fetch(client: Any, name: str) -> str:
    try:
        response = client.get_parameter(Name=name, WithDecryption=True)
    except aws_error_types() as exc:
        # The code only (a connection/credential problem: the class name): no value.
        code = failure_code(exc)
        if code == "ParameterNotFound":
            raise SsmLookupError(
                f"template function ssm(): SSM parameter {name!r} not found",
                parameter=name,
                code=code,
            ) from None
        raise SsmLookupError(
            f"template function ssm(): could not read SSM parameter {name!r} ({code})",
            parameter=name,
            code=error_code(exc) or None,
        ) from None
    return str(response["Parameter"]["Value"])
