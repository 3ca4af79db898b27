"""Invoke AWS Lambda functions: Open Task Framework's Lambda "execution".

* ``Event`` (the default, as in OTF): asynchronous, fire and forget. Lambda queues the event
  and answers ``202``; whether the function later succeeds is not known here (monitor it
  with the function's own alarms / DLQ / destinations).
* ``RequestResponse``: waits for the function. A function error (``FunctionError`` in the
  response: an unhandled exception or a returned error) raises :class:`LambdaFunctionError`
  whose message shows the function's own ``errorType``/``errorMessage`` (the user's error
  text, so it is shown; it is truncated to one line).

**Timeouts.** botocore's default read timeout is 60 s, so a ``RequestResponse`` call on a
function running longer fails client-side while the function keeps running (the problem
the OTF documentation warns about), and botocore's retries would *invoke it again*. Create
the client with :func:`lambda_client_config` (read timeout 900 s = Lambda's maximum run
time, no retries), e.g. ``boto3.client("lambda", config=lambda_client_config())``.

The response payload can be saved with :func:`save_lambda_response` to
``artifacts/lambda-<step>.json`` so it is archived with the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoff_provider.core.aws.errors import aws_error_types, error_message, failure_code
from handoff_provider.core.errors import (
    ConfigurationError,
    LambdaError,
    LambdaFunctionError,
)

__all__ = [
    "INVOCATION_TYPES",
    "LambdaResult",
    "encode_payload",
    "invoke_lambda",
    "lambda_client_config",
    "save_lambda_response",
]

INVOCATION_TYPES = ("Event", "RequestResponse")
LAMBDA_MAX_SECONDS = 900
_MESSAGE_LIMIT = 500
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class LambdaResult:
    """What an invocation returned. ``payload_bytes`` is empty for ``Event``."""

    function: str
    invocation_type: str
    status_code: int
    function_error: str | None
    payload_bytes: bytes
    request_id: str | None
    executed_version: str | None = None

    def payload_json(self) -> Any:
        """The payload decoded as JSON, or ``None`` when empty / not JSON."""
        if not self.payload_bytes:
            return None
        try:
            return json.loads(self.payload_bytes)
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary with the payload (decoded JSON, else text)."""
        payload: Any = self.payload_json()
        if payload is None and self.payload_bytes:
            payload = self.payload_bytes.decode("utf-8", errors="replace")
        return {
            "function": self.function,
            "invocation_type": self.invocation_type,
            "status_code": self.status_code,
            "function_error": self.function_error,
            "request_id": self.request_id,
            "executed_version": self.executed_version,
            "payload": payload,
        }


def lambda_client_config(invocation_type: str = "RequestResponse", **overrides: Any) -> Any:
    """A botocore ``Config`` for Lambda clients (see module doc).

    ``RequestResponse``: read timeout 900 s and a single attempt (a retried synchronous
    invocation runs the function twice). ``Event``: botocore defaults plus standard retries
    (queuing an event is quick; a retry may at worst queue it twice, which Lambda's async
    invocation already allows). ``overrides`` are passed to ``Config`` as they are.
    """
    from botocore.config import Config

    if invocation_type == "RequestResponse":
        settings: dict[str, Any] = {
            "read_timeout": LAMBDA_MAX_SECONDS,
            "connect_timeout": 10,
            "retries": {"total_max_attempts": 1, "mode": "standard"},
        }
    else:
        settings = {"retries": {"mode": "standard"}}
    settings.update(overrides)
    return Config(**settings)


def encode_payload(payload: Any) -> bytes | None:
    """``None`` -> no payload; ``bytes``/``str`` as they are (must be JSON); anything
    else is JSON-encoded. Raises :class:`ConfigurationError` for invalid JSON."""
    if payload is None:
        return None
    if isinstance(payload, (bytes, bytearray)):
        data = bytes(payload)
    elif isinstance(payload, str):
        data = payload.encode("utf-8")
    else:
        try:
            return json.dumps(payload, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"lambda payload is not JSON-serialisable ({exc})") from None
    try:
        json.loads(data)
    except ValueError:
        raise ConfigurationError("lambda payload is not valid JSON") from None
    return data


def invoke_lambda(
    lambda_client: Any,
    function: str,
    *,
    payload: Any = None,
    invocation_type: str = "Event",
    qualifier: str | None = None,
) -> LambdaResult:
    """Invoke ``function`` (name, ARN or partial ARN) and return a :class:`LambdaResult`.

    Raises :class:`LambdaFunctionError` when a ``RequestResponse`` run reports a function
    error, :class:`LambdaError` when the call fails or returns an unexpected status, and
    :class:`ConfigurationError` for a bad invocation type or payload.
    """
    if invocation_type not in INVOCATION_TYPES:
        raise ConfigurationError(
            f"lambda {function!r}: invocation_type must be one of {', '.join(INVOCATION_TYPES)}"
        )
    if not function:
        raise ConfigurationError("lambda: a function name or ARN is required")
    request: dict[str, Any] = {"FunctionName": function, "InvocationType": invocation_type}
    body = encode_payload(payload)
    if body is not None:
        request["Payload"] = body
    if qualifier:
        request["Qualifier"] = qualifier
    result = _result(function, invocation_type, _invoke(lambda_client, function, request))
    expected = 202 if invocation_type == "Event" else 200
    if result.function_error:
        raise LambdaFunctionError(
            f"lambda {function!r} failed ({result.function_error}): {_error_text(result)}",
            result=result,
        )
    if result.status_code != expected:
        raise LambdaError(
            f"lambda {function!r}: unexpected status {result.status_code} "
            f"(expected {expected} for {invocation_type})"
        )
    return result


def _invoke(lambda_client: Any, function: str, request: dict[str, Any]) -> Any:
    """The ``Invoke`` call; a botocore error as a :class:`LambdaError`."""
    try:
        return lambda_client.invoke(**request)
    except aws_error_types() as exc:
        code, message = failure_code(exc), _one_line(error_message(exc))
        raise LambdaError(
            f"lambda {function!r}: invocation failed ({code}{': ' + message if message else ''})"
        ) from None


def _result(function: str, invocation_type: str, response: Any) -> LambdaResult:
    stream = response.get("Payload")
    payload_bytes = stream.read() if stream is not None else b""
    metadata = response.get("ResponseMetadata", {})
    return LambdaResult(
        function=function,
        invocation_type=invocation_type,
        status_code=int(response.get("StatusCode", 0)),
        function_error=response.get("FunctionError"),
        payload_bytes=payload_bytes,
        request_id=metadata.get("RequestId"),
        executed_version=response.get("ExecutedVersion"),
    )


def _one_line(text: str) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MESSAGE_LIMIT else flat[: _MESSAGE_LIMIT - 3] + "..."


def _error_text(result: LambdaResult) -> str:
    """``errorType: errorMessage`` from the function's error payload, else its raw text."""
    data = result.payload_json()
    if isinstance(data, Mapping):
        kind, message = data.get("errorType"), data.get("errorMessage")
        if message is not None:
            return _one_line(f"{kind}: {message}" if kind else str(message))
    raw = result.payload_bytes.decode("utf-8", errors="replace")
    return _one_line(raw) or "no error message"


def save_lambda_response(artifacts_dir: Path, step: str, result: LambdaResult) -> Path:
    """Write ``result.to_dict()`` to ``<artifacts_dir>/lambda-<step>.json``; returns the path.

    ``step`` must be a simple name (letters, digits, ``_.-``): it becomes a file name."""
    if not _STEP_NAME.fullmatch(step):
        raise ConfigurationError(
            f"lambda step name {step!r} must be letters, digits, '_', '.', '-' (max 128)"
        )
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    path = artifacts_dir / f"lambda-{step}.json"
    path.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return path
