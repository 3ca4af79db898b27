"""boto3 plumbing shared by the stores: the default client factory and error translation.

Endpoints are never set here: boto3 resolves them itself (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_S3``, profiles), which is how moto and LocalStack are reached without a
code path of their own.

Error messages name the AWS resource (bucket, key, parameter) and the AWS error code, never
a value: SSM echoes parameter values in some validation messages, so for SSM only the
error code is ever shown.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

from handoff_provider.core.errors import ConfigurationError, StoreError

#: ``client_factory(service_name, config=None) -> botocore client``; the Airflow hook passes
#: its own. ``config`` (a ``botocore.config.Config``) is merged over the factory's own
#: settings: Lambda clients need a long read timeout and no retries (``lambda_invoke``).
#: Factories that take only ``service_name`` are still accepted (see :func:`make_client`).
ClientFactory = Callable[..., Any]

#: Threads the transfer manager uses; the default client's connection pool is sized to match.
MAX_CONCURRENCY = 16

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidToken",
}
_DENIED_CODES = {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "Forbidden", "403"}
_THROTTLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "RequestThrottled",
    "RequestThrottledException",
    "ProvisionedThroughputExceededException",
}
_KMS_CODES = {
    "KMSKeyNotAccessibleFault",
    "InvalidKeyId",
    "KMS.NotFoundException",
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
    "KMSAccessDenied",
}


def default_client_factory() -> ClientFactory:
    """One ``boto3.session.Session`` shared by every client, with standard-mode retries;
    ``factory(service_name, config=None)`` merges ``config`` over those defaults."""
    import boto3
    import botocore.config
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=iso_timestamp
    )
    session = boto3.session.Session(botocore_session=core)
    base = botocore.config.Config(
        retries={"mode": "standard"},
        max_pool_connections=MAX_CONCURRENCY + 4,
    )
    lock = threading.Lock()

    def factory(service_name: str, config: Any = None) -> Any:
        # Session.client is not thread-safe; clients themselves are.
        merged = base.merge(config) if config is not None else base
        with lock:
            return session.client(service_name, config=merged)

    return factory


def iso_timestamp(value: Any) -> Any:
    """botocore's timestamp parser, with ISO 8601 (every ``LastModified`` of a listing)
    read by ``datetime.fromisoformat``: botocore's default goes through dateutil's
    general parser, which took half of a no-change re-sync's time over 1,000 objects.
    Anything else (RFC 822 headers, epoch numbers) is left to botocore."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


def accepts_config(factory: ClientFactory) -> bool:
    """Whether ``factory`` takes a ``config`` keyword (or ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins / C callables: assume the simple form
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "config" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in parameters
    )


def make_client(factory: ClientFactory, service_name: str, config: Any = None) -> Any:
    """``factory(service_name, config=config)``; a factory without a ``config`` parameter
    (an older custom factory) is called with the service name alone and its own settings
    apply (for Lambda: botocore's 60 s read timeout and retries)."""
    if config is not None and accepts_config(factory):
        return factory(service_name, config=config)
    return factory(service_name)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, *, action: str, resource: str, service: str) -> NoReturn:
    """Raise the :class:`HandoffError` that describes a botocore/s3transfer failure.

    ``action`` says what we were doing ("upload", "read"), ``resource`` names the object
    (``s3://bucket/key``, ``SSM parameter /handoff/x/config``). Non-AWS exceptions are
    re-raised untouched: they are bugs, not user errors.
    """
    from botocore import exceptions as bx

    where = f"{action} {resource}"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        raise ConfigurationError(
            f"{where}: no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with an IAM role"
        ) from None
    if isinstance(exc, bx.NoRegionError):
        raise ConfigurationError(
            f"{where}: no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION)"
        ) from None
    if isinstance(exc, bx.ParamValidationError):
        raise ConfigurationError(f"{where}: invalid request: {_first_line(exc)}") from None
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionError)):
        raise StoreError(
            f"{where}: cannot connect to the AWS endpoint ({_first_line(exc)}); "
            "check the network and AWS_ENDPOINT_URL"
        ) from None
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        if code in _CREDENTIAL_CODES:
            raise ConfigurationError(
                f"{where}: AWS rejected the credentials ({code}): check AWS_ACCESS_KEY_ID/"
                "AWS_PROFILE and that the session token has not expired"
            ) from None
        if code in {"PreconditionFailed", "412"}:
            raise StoreError(f"{where}: the object changed while it was read; retry") from None
        if code == "NoSuchBucket":
            raise StoreError(f"{where}: the bucket does not exist (NoSuchBucket)") from None
        if code in _DENIED_CODES:
            raise StoreError(f"{where}: access denied ({code}): check the IAM policy") from None
        if code in _THROTTLE_CODES:
            raise StoreError(f"{where}: throttled by AWS after retries ({code})") from None
        if code in _KMS_CODES or code.startswith("KMS."):
            raise StoreError(
                f"{where}: the KMS key is not usable ({code}): check the key id and its policy"
            ) from None
        if service == "ssm" or not _message(exc):
            # SSM may echo the parameter value in its messages: show the code only.
            raise StoreError(f"{where}: AWS error {code or 'unknown'}") from None
        raise StoreError(f"{where}: AWS error {code}: {_message(exc)}") from None
    if isinstance(exc, bx.BotoCoreError):
        raise StoreError(f"{where}: {type(exc).__name__}: {_first_line(exc)}") from None
    _raise_transfer_error(exc, where)
    raise exc


def _transfer_errors() -> tuple[type[BaseException], ...]:
    """The transfer manager's own failure types (``S3DownloadFailedError`` is new in
    s3transfer 0.13; older versions raise ``RetriesExceededError`` or the ``ClientError``)."""
    from s3transfer import exceptions as tx

    names = ("RetriesExceededError", "S3UploadFailedError", "S3DownloadFailedError")
    return tuple(getattr(tx, name) for name in names if hasattr(tx, name))


def _raise_transfer_error(exc: BaseException, where: str) -> None:
    if isinstance(exc, _transfer_errors()):
        raise StoreError(f"{where}: {type(exc).__name__}: {_first_line(exc)}") from None


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return _first_line(str(response.get("Error", {}).get("Message", "") or ""))


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else ""


@contextmanager
def aws_errors(action: str, resource: str, *, service: str) -> Iterator[None]:
    """Translate AWS failures raised inside the block (see :func:`translate`)."""
    try:
        yield
    except Exception as exc:
        if _is_aws_error(exc):
            translate(exc, action=action, resource=resource, service=service)
        raise


def _is_aws_error(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, (BotoCoreError, ClientError, *_transfer_errors()))


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"
