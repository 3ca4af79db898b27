"""S3 conditional writes (``If-None-Match: *`` create, ``If-Match: <etag>`` replace).

The stack lease and the ``last/`` manifest switch rely on them. botocore added the
``IfNoneMatch`` and ``IfMatch`` members of ``PutObject`` in separate releases (botocore
1.35.36, the oldest MWAA pin, has ``IfNoneMatch`` only). :func:`enable_conditional_put`
looks at the client's own operation model: a member the model has is passed as usual; one
it lacks is taken out of the call's parameters before validation
(``provide-client-params``) and sent as its HTTP header (``before-call``), through the
call's own request context, so concurrent calls on the same client never see each other's
conditions. Callers always write ``client.put_object(..., IfMatch=etag)``.

A failed condition is AWS error ``PreconditionFailed`` (HTTP 412); a concurrent
conditional write to the same key may get ``ConditionalRequestConflict`` (HTTP 409).
Both mean "someone else wrote it": :func:`is_condition_failure`.
"""

from __future__ import annotations

from typing import Any

from handoff_provider.core.aws.errors import error_code

_HEADERS = {"IfMatch": "If-Match", "IfNoneMatch": "If-None-Match"}
_CONTEXT_KEY = "handoff_conditional_headers"
_CONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def enable_conditional_put(client: Any) -> Any:
    """Make ``client.put_object`` accept ``IfMatch``/``IfNoneMatch`` whatever its botocore
    version; returns the client. Idempotent."""
    members = client.meta.service_model.operation_model("PutObject").input_shape.members
    missing = {name: header for name, header in _HEADERS.items() if name not in members}
    if not missing:
        return client

    def take_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        headers = {header: params.pop(name) for name, header in missing.items() if name in params}
        if headers:
            context[_CONTEXT_KEY] = headers

    def add_headers(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        params.setdefault("headers", {}).update(context.get(_CONTEXT_KEY) or {})

    events = client.meta.events
    events.register(
        "provide-client-params.s3.PutObject", take_params, unique_id="handoff-conditional-params"
    )
    events.register("before-call.s3.PutObject", add_headers, unique_id="handoff-conditional-hdrs")
    return client


def is_condition_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is S3 refusing a conditional write (412 / 409)."""
    if error_code(exc) in _CONDITION_CODES:
        return True
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in (409, 412)
