"""The ``secret('name')`` template function: AWS Secrets Manager lookups at run time.

The companion of ``ssm()`` (:mod:`handoff_provider.core.aws.ssm_lookup`), with the same
contract: **lazy** (nothing is read until a template calls it), **once per run** (each
function made by :func:`make_secret_function` caches every secret version it read),
**masked first** (``on_value`` gets each value before the template does) and **errors name
the secret (and the path), never a value**::

    args: "--password {{ secret('prod/db') }}"                  # the whole SecretString
    args: "--password {{ secret('prod/db', 'password') }}"      # a field of a JSON secret
    args: "--host {{ secret('prod/db', 'hosts[0].name') }}"     # any JMESPath expression
    args: "{{ secret('prod/db', 'password', version_stage='AWSPREVIOUS') }}"

The path is a `JMESPath <https://jmespath.org>`_ expression (the query language of the AWS
CLI's ``--query``, shipped with botocore), so ``a.b[0]`` selects ``{"a": {"b": [x]}}``'s
``x``. A string is returned as is; a number, boolean, object or list as compact JSON. A
path selecting nothing (or ``null``) is an error: Open Task Framework returns
``LOOKUP_FAILED`` silently, handoff fails the run before any command starts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from handoff_provider.core.aws.clients import LazyClient
from handoff_provider.core.aws.errors import aws_error_types, error_code, failure_code
from handoff_provider.core.errors import SecretLookupError

__all__ = ["make_secret_function", "unavailable_secret_function"]

# Secret names are at most 512 characters, full ARNs a little more (Secrets Manager API).
_MAX_ID_LENGTH = 2048


def make_secret_function(
    client_factory: Callable[[str], Any],
    *,
    on_value: Callable[[str], None] | None = None,
) -> Callable[..., str]:
    """Return the template function ``secret(name, path=None, *, version_id=None,
    version_stage=None) -> str`` (see the module doc).

    ``client_factory("secretsmanager")`` is called at most once, on the first lookup.
    ``on_value`` is called once per distinct value handed out, before it is returned. The
    function is thread-safe (stages may render concurrently).
    """
    documents: dict[tuple[str, str | None, str | None], str] = {}
    registered: set[str] = set()
    lock = threading.Lock()
    client = LazyClient(client_factory, "secretsmanager")

    def secret(
        name: str,
        path: str | None = None,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
    ) -> str:
        _check_arguments(name, path, version_id, version_stage)
        with lock:
            key = (name, version_id, version_stage)
            if key not in documents:
                documents[key] = _fetch(client(), name, version_id, version_stage)
            document = documents[key]
            value = document if path is None else _select(document, name, path)
            if on_value is not None and value and value not in registered:
                on_value(value)
            registered.add(value)
            return value

    secret.__doc__ = (
        "Read a Secrets Manager secret once per run: {{ secret('name') }}, "
        "{{ secret('name', 'a.b[0]') }}"
    )
    return secret


def unavailable_secret_function(reason: str) -> Callable[..., str]:
    """A ``secret()`` for runs without AWS access: calling it fails with ``reason``."""

    def secret(name: str, path: str | None = None, **_: Any) -> str:
        call = f"{name!r}" if path is None else f"{name!r}, {path!r}"
        raise SecretLookupError(
            f"template function secret({call}): {reason}", secret=str(name), path=path
        )

    return secret


def _describe(name: str, version_id: str | None, version_stage: str | None) -> str:
    text = f"secret {name!r}"
    if version_id is not None:
        text += f" (version id {version_id!r})"
    if version_stage is not None:
        text += f" (version stage {version_stage!r})"
    return text


def _check_arguments(name: object, path: object, version_id: object, version_stage: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise SecretLookupError(
            "template function secret(): the secret name must be a non-empty string",
            secret=str(name),
        )
    if len(name) > _MAX_ID_LENGTH:
        raise SecretLookupError(
            f"template function secret(): secret name longer than {_MAX_ID_LENGTH} characters",
            secret=name[:64],
        )
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise SecretLookupError(
            f"template function secret({name!r}): the JSON path must be a non-empty string",
            secret=name,
        )
    for label, option in (("version_id", version_id), ("version_stage", version_stage)):
        if option is not None and (not isinstance(option, str) or not option.strip()):
            raise SecretLookupError(
                f"template function secret({name!r}): {label} must be a non-empty string",
                secret=name,
            )


def _fetch(client: Any, name: str, version_id: str | None, version_stage: str | None) -> str:
    what = _describe(name, version_id, version_stage)
    params: dict[str, str] = {"SecretId": name}
    if version_id is not None:
        params["VersionId"] = version_id
    if version_stage is not None:
        params["VersionStage"] = version_stage
    try:
        response = client.get_secret_value(**params)
    except aws_error_types() as exc:
        # The code only (a connection/credential problem: the class name): no value.
        code = failure_code(exc)
        reason = (
            "not found" if code == "ResourceNotFoundException" else f"could not be read ({code})"
        )
        raise SecretLookupError(
            f"template function secret(): {what} {reason}",
            secret=name,
            code=error_code(exc) or None,
        ) from None
    if "SecretString" not in response:
        raise SecretLookupError(
            f"template function secret(): {what} is a binary secret; secret() reads "
            "SecretString values only",
            secret=name,
        )
    return str(response["SecretString"])


def _select(document: str, name: str, path: str) -> str:
    """The value at JMESPath ``path`` in the JSON ``document`` of secret ``name``."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        expression = jmespath.compile(path)
    except JMESPathError:
        raise SecretLookupError(
            f"template function secret({name!r}, {path!r}): {path!r} is not a valid "
            "JSON path (JMESPath, e.g. 'a.b[0]')",
            secret=name,
            path=path,
        ) from None
    try:
        data = json.loads(document)
    except ValueError:
        raise SecretLookupError(
            f"template function secret({name!r}, {path!r}): secret {name!r} is not a JSON "
            f"document, so path {path!r} cannot select from it",
            secret=name,
            path=path,
        ) from None
    try:
        selected = expression.search(data)
    except JMESPathError:
        selected = None
    if selected is None:
        raise SecretLookupError(
            f"template function secret({name!r}, {path!r}): secret {name!r} has no value "
            f"at path {path!r}",
            secret=name,
            path=path,
        )
    if isinstance(selected, str):
        return selected
    return json.dumps(selected, separators=(",", ":"))
