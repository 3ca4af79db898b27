"""Lambda invocations.

moto can only *run* a Lambda function by starting it in Docker, and this machine (like CI)
has no Docker engine. So these tests use a real botocore Lambda client pointed at the moto
server and **stub the function's response at the botocore level**: a ``before-send`` event
handler captures the outgoing HTTP request (so the request is asserted: invocation type,
payload, qualifier) and returns a canned ``AWSResponse`` (status, ``X-Amz-Function-Error``,
payload), which botocore then parses exactly as a real Lambda answer. The not-found path is
not stubbed: it is moto's own answer for a function that does not exist.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from handoff_provider.core.aws.lambda_invoke import (
    LambdaResult,
    encode_payload,
    invoke_lambda,
    lambda_client_config,
    save_lambda_response,
)
from handoff_provider.core.errors import (
    ConfigurationError,
    LambdaError,
    LambdaFunctionError,
    ProjectError,
)
from handoff_provider.core.load.templating import render_text
from handoff_provider.core.steps.aws_lambda import LambdaStep

ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-function"


class _Raw(io.BytesIO):
    """The raw HTTP body botocore reads (``read`` for streaming, ``stream`` for the rest)."""

    def stream(self, **_: Any) -> Any:
        yield self.read()


class StubbedLambda:
    """Captures each Invoke request and answers it with the next canned response."""

    def __init__(self, client: Any) -> None:
        self.requests: list[Any] = []
        self.responses: list[tuple[int, dict[str, str], bytes]] = []
        client.meta.events.register("before-send.lambda.Invoke", self._send)

    def answer(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.responses.append((status, headers, body))

    def _send(self, request: Any, **_: Any) -> AWSResponse:
        self.requests.append(request)
        status, headers, body = self.responses.pop(0)
        headers = {"x-amzn-RequestId": "req-1234", "Content-Length": str(len(body)), **headers}
        return AWSResponse(request.url, status, headers, _Raw(body))


@pytest.fixture
def client(aws: str) -> Any:
    return boto3.client("lambda", config=lambda_client_config("RequestResponse"))


@pytest.fixture
def stub(client: Any) -> StubbedLambda:
    return StubbedLambda(client)


def _header(request: Any, name: str) -> str:
    value = request.headers[name]
    return value.decode() if isinstance(value, bytes) else value


def test_event_is_fire_and_forget(client: Any, stub: StubbedLambda) -> None:
    stub.answer(202)
    result = invoke_lambda(client, ARN, payload={"file-name": "some_file.txt"})
    assert (result.status_code, result.function_error, result.payload_bytes) == (202, None, b"")
    assert result.request_id == "req-1234" and result.invocation_type == "Event"
    (request,) = stub.requests
    assert _header(request, "X-Amz-Invocation-Type") == "Event"
    assert json.loads(request.body) == {"file-name": "some_file.txt"}
    assert request.url.endswith("/functions/" + quote(ARN, safe="") + "/invocations")


def test_request_response_returns_the_payload(
    client: Any, stub: StubbedLambda, tmp_path: Path
) -> None:
    stub.answer(200, b'{"rows": 42}', **{"X-Amz-Executed-Version": "7"})
    result = invoke_lambda(
        client, "my-function", invocation_type="RequestResponse", qualifier="live"
    )
    assert result.status_code == 200 and result.payload_json() == {"rows": 42}
    assert result.executed_version == "7"
    (request,) = stub.requests
    assert _header(request, "X-Amz-Invocation-Type") == "RequestResponse"
    assert "Qualifier=live" in request.url
    assert not request.body  # no payload given: none sent

    path = save_lambda_response(tmp_path / "artifacts", "load-step", result)
    assert path == tmp_path / "artifacts" / "lambda-load-step.json"
    saved = json.loads(path.read_text())
    assert saved["payload"] == {"rows": 42} and saved["request_id"] == "req-1234"
    assert saved["function_error"] is None and saved["invocation_type"] == "RequestResponse"


def test_function_error_fails_with_the_function_message(client: Any, stub: StubbedLambda) -> None:
    error = {
        "errorMessage": "bad input:\n  column 'x' missing",
        "errorType": "ValueError",
        "stackTrace": ["  File ...", "    raise ValueError"],
    }
    stub.answer(200, json.dumps(error).encode(), **{"X-Amz-Function-Error": "Unhandled"})
    with pytest.raises(LambdaFunctionError) as caught:
        invoke_lambda(client, ARN, invocation_type="RequestResponse", payload='{"k": 1}')
    message = str(caught.value)
    assert message == (
        f"lambda '{ARN}' failed (Unhandled): ValueError: bad input: column 'x' missing"
    )
    assert caught.value.result.function_error == "Unhandled"
    assert caught.value.result.payload_json()["stackTrace"]
    assert stub.requests[0].body == b'{"k": 1}'


def test_function_error_without_json_payload(client: Any, stub: StubbedLambda) -> None:
    stub.answer(200, b"Task timed out after 3.00 seconds", **{"X-Amz-Function-Error": "Unhandled"})
    with pytest.raises(LambdaFunctionError, match=r"Task timed out after 3\.00 seconds"):
        invoke_lambda(client, "f", invocation_type="RequestResponse")


def test_unexpected_status_is_an_error(client: Any, stub: StubbedLambda) -> None:
    stub.answer(200, b"{}")
    with pytest.raises(LambdaError, match=r"unexpected status 200 .*expected 202 for Event"):
        invoke_lambda(client, "f", invocation_type="Event")


def test_unknown_function_is_moto_s_own_error(aws: str) -> None:
    client = boto3.client("lambda")
    with pytest.raises(
        LambdaError, match=r"lambda 'no-such-fn': invocation failed \(ResourceNotFound"
    ):
        invoke_lambda(client, "no-such-fn", invocation_type="RequestResponse")


def test_bad_arguments_never_reach_aws(client: Any, stub: StubbedLambda) -> None:
    with pytest.raises(ConfigurationError, match="invocation_type"):
        invoke_lambda(client, "f", invocation_type="DryRunz")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        invoke_lambda(client, "f", payload="{not json")
    with pytest.raises(ConfigurationError, match="JSON-serialisable"):
        invoke_lambda(client, "f", payload={"when": object()})
    assert stub.requests == []


def test_encode_payload() -> None:
    assert encode_payload(None) is None
    assert encode_payload({"a": [1, "é"]}) == b'{"a":[1,"\\u00e9"]}'
    assert encode_payload(b"[1]") == b"[1]"
    assert encode_payload("null") == b"null"


def test_client_config_for_synchronous_calls(aws: str) -> None:
    sync = boto3.client("lambda", config=lambda_client_config("RequestResponse")).meta.config
    assert sync.read_timeout == 900
    assert sync.retries["total_max_attempts"] == 1
    queued = boto3.client("lambda", config=lambda_client_config("Event")).meta.config
    assert queued.read_timeout == 60 and queued.retries["mode"] == "standard"
    assert lambda_client_config("Event", read_timeout=5).read_timeout == 5


def test_step_names_cannot_escape_artifacts(tmp_path: Path) -> None:
    result = LambdaResult("f", "Event", 202, None, b"", "r")
    with pytest.raises(ConfigurationError):
        save_lambda_response(tmp_path, "../escape", result)
    assert list(tmp_path.iterdir()) == []


def test_lambda_step_spec_render_and_invoke(client: Any, stub: StubbedLambda) -> None:
    step = LambdaStep.from_mapping(
        {
            "function": "{{ prefix }}-loader",
            "invocation_type": "RequestResponse",
            "payload": {"file-name": "{{ ds }}.csv", "retries": 2, "tags": ["{{ ds }}", None]},
        },
        path="tasks[1].lambda",
    )
    rendered = step.render(
        lambda text, where: render_text(text, {"ds": "2024-05-01", "prefix": "prod"}, source=where)
    )
    assert rendered.payload == {
        "file-name": "2024-05-01.csv",
        "retries": 2,
        "tags": ["2024-05-01", None],
    }
    stub.answer(200, b'"ok"')
    assert rendered.invoke(client).payload_json() == "ok"
    (request,) = stub.requests
    assert json.loads(request.body) == rendered.payload
    assert "/functions/prod-loader/" in request.url


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"functionArn": "x"},
            r"tasks\[0\]\.lambda\.functionArn: unknown key \(did you mean 'function'",
        ),
        ({"function": "f", "invocationType": "Event"}, "'invocation_type'"),
        ({"function": "f", "invocation_type": "DryRun"}, r"invocation_type: must be one of"),
        ({"function": "f", "payload": "{oops"}, r"payload: lambda payload is not valid JSON"),
        ({"invocation_type": "Event"}, r"lambda\.function: required"),
    ],
)
def test_lambda_step_spec_errors(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ProjectError, match=expected):
        LambdaStep.from_mapping(data, path="tasks[0].lambda")
