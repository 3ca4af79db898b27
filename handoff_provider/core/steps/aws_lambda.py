"""Task kind ``lambda:``: invoke an AWS Lambda function (Open Task Framework's Lambda
"execution"; the call itself is :mod:`handoff_provider.core.aws.lambda_invoke`).

The spec's strings are rendered like ``args``. The response (status, request id,
payload) is saved to ``artifacts/lambda-<task>.json``, also when the function reports an
error, which fails the task with the function's own message. The client has a 900 s read
timeout and no retries for ``RequestResponse``
(:func:`~handoff_provider.core.aws.lambda_invoke.lambda_client_config`); the task's
``timeout`` and the run's terminate() stop waiting for it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from handoff_provider.core.aws.lambda_invoke import (
    INVOCATION_TYPES,
    LAMBDA_MAX_SECONDS,
    LambdaResult,
    encode_payload,
    invoke_lambda,
)
from handoff_provider.core.errors import (
    ConfigurationError,
    HandoffError,
    LambdaFunctionError,
    ProjectError,
)
from handoff_provider.core.steps.aws_call import AwsCallKind, schema_keys, wait_for
from handoff_provider.core.steps.base import RunScope, TaskPlan

if TYPE_CHECKING:
    from handoff_provider.core.model.project import Task
    from handoff_provider.core.run.summary import StageResult


@dataclass(frozen=True)
class LambdaStep:
    """A project task step invoking a Lambda function (task kind ``lambda`` in project.yml)::

    tasks:
      - name: notify
        lambda:
          function: arn:aws:lambda:eu-west-1:123456789012:function:my-function
          invocation_type: RequestResponse     # default: Event
          payload: {file-name: "{{ ds }}.csv"}  # any JSON value; strings are templates
          qualifier: live                      # optional version/alias
    """

    #: The kind's schema fragment (composed into the project schema).
    SCHEMA: ClassVar[Mapping[str, Any]] = {
        "description": "Invoke an AWS Lambda function (core/steps/aws_lambda.py). Strings in "
        "'payload' are templates.",
        "type": "object",
        "additionalProperties": False,
        "required": ["function"],
        "properties": {
            "function": {"type": "string", "minLength": 1},
            "invocation_type": {"enum": list(INVOCATION_TYPES)},
            "payload": {},
            "qualifier": {"type": "string", "minLength": 1},
        },
    }

    function: str
    invocation_type: str = "Event"
    payload: Any = None
    qualifier: str | None = None

    @classmethod
    def from_mapping(cls, data: Any, *, path: str) -> LambdaStep:
        from handoff_provider.core.model.transfers import check_mapping_keys

        data = check_mapping_keys(data, path, **schema_keys(cls.SCHEMA))
        for key in ("function", "invocation_type", "qualifier"):
            if key in data and data[key] is not None and not isinstance(data[key], str):
                raise ProjectError(f"{path}.{key}: expected a string")
        invocation_type = data.get("invocation_type") or "Event"
        if invocation_type not in INVOCATION_TYPES:
            raise ProjectError(
                f"{path}.invocation_type: must be one of {', '.join(INVOCATION_TYPES)}"
            )
        payload = data.get("payload")
        try:
            encode_payload(payload)
        except ConfigurationError as exc:
            raise ProjectError(f"{path}.payload: {exc}") from None
        return cls(data["function"], invocation_type, payload, data.get("qualifier"))

    def render(self, render: Callable[[str, str], str], *, path: str = "lambda") -> LambdaStep:
        """Apply ``render(text, field_path)`` to the function, the qualifier and every string
        inside the payload (keys are left as written)."""

        def walk(value: Any, where: str) -> Any:
            if isinstance(value, str):
                return render(value, where)
            if isinstance(value, Mapping):
                return {key: walk(item, f"{where}.{key}") for key, item in value.items()}
            if isinstance(value, list):
                return [walk(item, f"{where}[{index}]") for index, item in enumerate(value)]
            return value

        return replace(
            self,
            function=render(self.function, f"{path}.function"),
            qualifier=None
            if self.qualifier is None
            else render(self.qualifier, f"{path}.qualifier"),
            payload=walk(self.payload, f"{path}.payload"),
        )

    def invoke(self, lambda_client: Any) -> LambdaResult:
        return invoke_lambda(
            lambda_client,
            self.function,
            payload=self.payload,
            invocation_type=self.invocation_type,
            qualifier=self.qualifier,
        )


class LambdaKind(AwsCallKind):
    key = "lambda"
    hint = "'lambda'"
    spec = LambdaStep

    def label(self, step: LambdaStep) -> str:
        return f"lambda {step.function} ({step.invocation_type})"

    def cli_line(self, task: Task) -> str:
        step = task.step
        words = ["aws lambda invoke --function-name", shlex.quote(step.function)]
        words += ["--invocation-type", step.invocation_type]
        if step.qualifier:
            words += ["--qualifier", shlex.quote(step.qualifier)]
        if step.payload is not None:
            payload = step.payload  # a string is JSON text already (encode_payload)
            if not isinstance(payload, str):
                payload = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            words += ["--cli-binary-format raw-in-base64-out --payload", shlex.quote(payload)]
        words.append(f"artifacts/lambda-{task.name}.json")
        return " ".join(words)

    def call(self, plan: TaskPlan, scope: RunScope, stage: StageResult) -> None:
        from handoff_provider.core.aws.lambda_invoke import lambda_client_config

        task, step = plan.task, plan.step
        overrides: dict[str, Any] = {}
        if task.timeout is not None and task.timeout < LAMBDA_MAX_SECONDS:
            overrides["read_timeout"] = max(1, int(task.timeout) + 1)  # wait_for enforces it
        config = lambda_client_config(step.invocation_type, **overrides)
        client = scope.client("lambda", config, key=f"{step.invocation_type}:{overrides}")
        result = wait_for(plan, scope, lambda: step.invoke(client))
        _save(task, scope, result)
        stage.bytes_out = len(result.payload_bytes)
        scope.log(
            f"task '{task.name}': lambda {step.invocation_type} call returned "
            f"{result.status_code} (request id {result.request_id}); "
            f"response in artifacts/lambda-{task.name}.json"
        )

    def failed(self, exc: HandoffError, plan: TaskPlan, scope: RunScope) -> None:
        if isinstance(exc, LambdaFunctionError):
            _save(plan.task, scope, exc.result)


def _save(task: Task, scope: RunScope, result: LambdaResult) -> None:
    from handoff_provider.core.aws.lambda_invoke import save_lambda_response

    save_lambda_response(scope.workspace.artifacts_dir, task.name, result)


KIND = LambdaKind()
