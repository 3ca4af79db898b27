"""AWS failures as user errors: the one place that reads botocore's exceptions.

:func:`translate` (and the :func:`aws_errors` block) turns a failed store operation into a
:class:`~handoff_provider.core.errors.StoreError` or ``ConfigurationError`` whose message
names the resource and what to check; :func:`failure_code` is the short form (the AWS
error code, else the exception's class name) that the template functions, the S3 watch,
transfers and Lambda steps put in their own messages.

Messages name the AWS resource (bucket, key, parameter) and the AWS error code, never a
value: SSM echoes parameter values in some validation messages, so for SSM only the error
code is ever shown.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from handoff_provider.core.errors import ConfigurationError, StoreError

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


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def failure_code(exc: BaseException) -> str:
    """What went wrong in one word: the AWS error code (``AccessDenied``...), looking
    through the transfer manager's wrappers (``S3UploadFailedError`` keeps the
    ``ClientError`` as its context), else the exception's class name
    (``EndpointConnectionError``). Never a message: it may hold a value."""
    seen: BaseException | None = exc
    while seen is not None:
        code = error_code(seen)
        if code:
            return code
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    """AWS's error message ('' when there is none). Only for services whose messages never
    echo a value (not SSM, Secrets Manager)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message", "") or "")


def aws_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type an AWS call or transfer raises: ``except aws_error_types():``
    catches AWS failures and lets bugs through."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, *_transfer_errors())


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
    """The transfer managers' own failure types: s3transfer's (``S3DownloadFailedError`` is
    new in s3transfer 0.13; older versions raise ``RetriesExceededError`` or the
    ``ClientError``) and boto3's (``S3TransferFailedError``, ``S3UploadFailedError``)."""
    from boto3 import exceptions as b3
    from s3transfer import exceptions as tx

    names = ("RetriesExceededError", "S3UploadFailedError", "S3DownloadFailedError")
    return (
        b3.S3TransferFailedError,
        b3.S3UploadFailedError,
        *(getattr(tx, name) for name in names if hasattr(tx, name)),
    )


def _raise_transfer_error(exc: BaseException, where: str) -> None:
    if isinstance(exc, _transfer_errors()):
        raise StoreError(f"{where}: {type(exc).__name__}: {_first_line(exc)}") from None


def _message(exc: BaseException) -> str:
    return _first_line(error_message(exc))


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else ""


@contextmanager
def aws_errors(action: str, resource: str, *, service: str) -> Iterator[None]:
    """Translate AWS failures raised inside the block (see :func:`translate`)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, aws_error_types()):
            translate(exc, action=action, resource=resource, service=service)
        raise
