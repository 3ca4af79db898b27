"""The config store: the compiled project document as an SSM ``SecureString``.

Sizes are UTF-8 bytes of the compact JSON we store:

* up to 4096 bytes: the Standard tier;
* up to 8192 bytes: the Advanced tier, only when the caller allows it
  (``--allow-advanced-tier`` / ``allow_advanced_tier=True``): Advanced parameters are
  billed, so it is opt-in and otherwise a clear error;
* larger: the document goes to S3 and the parameter holds a small pointer.

Why an S3 object rather than chunked parameters: a reader must never see a mix of old and
new content, and SSM has no multi-parameter transaction, so N chunk parameters plus a
manifest would need versioned chunk names and the same pointer switch anyway. A single
content-addressed object gives that with one write:

1. ``s3://<bucket>/<stack>/config/<sha256>.json`` is written first, encrypted with SSE-KMS
   (the config's KMS key when one is given, else the account's ``aws/s3`` key). The key
   is the SHA-256 of the content, so an object never changes once written;
2. the parameter is then overwritten with ``{"handoff_config_ref": {"uri", "sha256",
   "bytes"}}`` (a single ``PutParameter`` -- the switch is atomic);
3. objects under ``config/`` that the parameter no longer references are deleted, but only
   those older than a grace period, so a concurrent pusher's just-written object survives.

A reader fetches the parameter, follows the pointer and verifies size and SHA-256; if the
object is gone or differs (it raced a cleanup), it re-reads the parameter once. The
pointer key can't clash with a project document: unknown top-level keys are invalid there.

An existing Advanced parameter can't be moved back to Standard in place (SSM refuses the
downgrade), so once Advanced it stays Advanced. Values never appear in errors or logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from handoff_provider.core import layout
from handoff_provider.core.aws.errors import aws_errors, error_code
from handoff_provider.core.errors import ConfigurationError, StoreError
from handoff_provider.core.layout import s3_uri

log = logging.getLogger(__name__)

STANDARD_TIER_BYTES = 4096
ADVANCED_TIER_BYTES = 8192
REF_KEY = "handoff_config_ref"

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-/]{1,1011}$")


@dataclass(frozen=True)
class ConfigPushResult:
    """Where and how a document was stored (never its content)."""

    name: str
    tier: str
    size_bytes: int
    object_uri: str | None = None
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tier": self.tier,
            "bytes": self.size_bytes,
            "object_uri": self.object_uri,
            "version": self.version,
        }

    def __str__(self) -> str:
        if self.object_uri:
            return (
                f"SSM parameter {self.name} ({self.tier} tier) -> {self.object_uri} "
                f"({self.size_bytes} bytes, SSE-KMS)"
            )
        return f"SSM parameter {self.name} ({self.tier} tier, {self.size_bytes} bytes)"


def validate_parameter_name(name: str) -> str:
    if not _NAME_RE.match(name) or ("/" in name and not name.startswith("/")) or "//" in name:
        raise ConfigurationError(
            f"SSM parameter name {name!r}: use letters, digits, '_', '.', '-' and '/' "
            "(a hierarchical name starts with '/')"
        )
    if re.match(r"^/?(aws|ssm)", name, re.IGNORECASE):
        raise ConfigurationError(f"SSM parameter name {name!r}: can't start with 'aws' or 'ssm'")
    return name


def serialize(document: dict[str, Any]) -> str:
    """Compact JSON, non-ASCII kept as UTF-8 (``\\uXXXX`` escapes would triple the size)."""
    if not isinstance(document, dict):
        raise ConfigurationError("the config document must be a JSON object")
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"the config document is not JSON-serialisable ({exc})") from None


class _StaleRef(Exception):
    """The pointer's object is missing or differs: the parameter changed meanwhile."""


class ConfigStore:
    """The SSM parameter ``name`` (default ``/handoff/<stack>/config``)."""

    #: Unreferenced ``config/`` objects younger than this are kept (a concurrent push).
    cleanup_grace = timedelta(minutes=5)

    def __init__(
        self,
        get_client: Callable[[str], Any],
        name: str,
        *,
        stack: str,
        bucket: str | None,
        kms_key_id: str | None = None,
    ) -> None:
        self._client = get_client
        self.name = validate_parameter_name(name)
        self.stack = stack
        self.bucket = bucket
        self.kms_key_id = kms_key_id
        self.objects_prefix = layout.config_prefix(stack)

    @property
    def resource(self) -> str:
        return f"SSM parameter {self.name}"

    # ------------------------------------------------------------------------ push

    def push(
        self, document: dict[str, Any], *, allow_advanced_tier: bool = False
    ) -> ConfigPushResult:
        """Overwrite the parameter with ``document`` (see the module docstring for tiers)."""
        value = serialize(document)
        size = len(value.encode("utf-8"))
        object_uri: str | None = None
        if size <= STANDARD_TIER_BYTES:
            tier = "Standard"
        elif size <= ADVANCED_TIER_BYTES:
            if not allow_advanced_tier:
                raise ConfigurationError(
                    f"the config document is {size} bytes, over the {STANDARD_TIER_BYTES}-byte "
                    f"SSM Standard tier limit for {self.name}: pass --allow-advanced-tier "
                    "(Airflow: allow_advanced_tier=True) to use the Advanced tier (up to "
                    f"{ADVANCED_TIER_BYTES} bytes, billed)"
                )
            tier = "Advanced"
        else:
            object_uri, value, created = self._write_object(value, size)
            tier = "Standard"
        if tier == "Standard" and self._current_tier() == "Advanced":
            log.info(
                "%s is an Advanced parameter: SSM can't downgrade it, keeping Advanced", self.name
            )
            tier = "Advanced"

        request: dict[str, Any] = {
            "Name": self.name,
            "Value": value,
            "Type": "SecureString",
            "Overwrite": True,
            "Tier": tier,
        }
        if self.kms_key_id:
            request["KeyId"] = self.kms_key_id
        ssm = self._client("ssm")
        try:
            with aws_errors("write", self.resource, service="ssm"):
                response = ssm.put_parameter(**request)
        except BaseException:
            if object_uri is not None and created:
                self._delete_object(object_uri)  # nothing refers to it: leave nothing behind
            raise
        self._cleanup(keep=object_uri, now=_response_date(response))
        return ConfigPushResult(
            name=self.name,
            tier=tier,
            size_bytes=size,
            object_uri=object_uri,
            version=response.get("Version"),
        )

    def _delete_object(self, uri: str) -> None:
        key = uri.removeprefix(s3_uri(self.bucket or "", ""))
        try:
            self._client("s3").delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:  # the push already failed; report that, not this
            log.warning("could not remove %s after the failed push: %s", uri, exc)

    def _object_exists(self, key: str) -> bool:
        try:
            self._client("s3").head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _write_object(self, value: str, size: int) -> tuple[str, str, bool]:
        """Store the document in S3 (content-addressed); returns its URI, the SSM pointer
        and whether this call created the object (an existing one may be referenced by
        the current parameter: a failed push must not delete it)."""
        if not self.bucket:
            raise ConfigurationError(
                f"the config document is {size} bytes, over the {ADVANCED_TIER_BYTES}-byte SSM "
                "limit: it is stored in S3 (SSE-KMS) and referenced from SSM, which needs a "
                "bucket: pass --bucket or set HANDOFF_BUCKET (or S3_BUCKET_NAME)"
            )
        body = value.encode("utf-8")
        sha256 = hashlib.sha256(body).hexdigest()
        key = f"{self.objects_prefix}{sha256}.json"
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms"}
        if self.kms_key_id:
            extra["SSEKMSKeyId"] = self.kms_key_id
        uri = s3_uri(self.bucket, key)
        with aws_errors("write", uri, service="s3"):
            created = not self._object_exists(key)
            self._client("s3").put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata={"handoff-sha256": sha256},
                **extra,
            )
        pointer = {REF_KEY: {"uri": uri, "sha256": sha256, "bytes": size}}
        return uri, json.dumps(pointer, separators=(",", ":")), created

    def _current_tier(self) -> str | None:
        """The existing parameter's tier (None when absent or not allowed to look)."""
        ssm = self._client("ssm")
        try:
            pages = ssm.get_paginator("describe_parameters").paginate(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [self.name]}]
            )
            for page in pages:
                for parameter in page.get("Parameters", []):
                    if parameter.get("Name") == self.name:
                        return parameter.get("Tier")
        except Exception as exc:
            if error_code(exc) in {"AccessDenied", "AccessDeniedException"}:
                return None
            with aws_errors("describe", self.resource, service="ssm"):
                raise
        return None

    def _cleanup(self, *, keep: str | None, now: datetime) -> None:
        """Delete unreferenced config objects older than the grace period (best effort)."""
        if not self.bucket:
            return
        from handoff_provider.core.stores.s3sync import delete_keys

        cutoff = now - self.cleanup_grace
        s3 = self._client("s3")
        try:
            stale: list[str] = []
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.objects_prefix
            ):
                for item in page.get("Contents", []):
                    if s3_uri(self.bucket, item["Key"]) != keep and item["LastModified"] <= cutoff:
                        stale.append(item["Key"])
            delete_keys(s3, self.bucket, stale)
        except Exception as exc:  # the push itself succeeded: only report
            log.warning(
                "config pushed, but old objects under %s were not cleaned: %s",
                s3_uri(self.bucket, self.objects_prefix),
                type(exc).__name__ if not error_code(exc) else error_code(exc),
            )

    # ----------------------------------------------------------------------- fetch

    def fetch(self) -> dict[str, Any]:
        """The stored document (decrypted; pointers to S3 followed and verified)."""
        try:
            return self._resolve(self._read_parameter())
        except _StaleRef:
            # A push replaced the document while we read it: the parameter is newer now.
            document = self._read_parameter()
        try:
            return self._resolve(document)
        except _StaleRef:
            raise StoreError(
                f"{self.resource} points to {document[REF_KEY].get('uri')}, which is "
                "missing or does not match its SHA-256: push the config again"
            ) from None

    def _resolve(self, document: dict[str, Any]) -> dict[str, Any]:
        """``document``, or the one its pointer names (:class:`_StaleRef` if that is gone)."""
        return self._read_object(document[REF_KEY]) if _is_pointer(document) else document

    def _read_parameter(self) -> dict[str, Any]:
        ssm = self._client("ssm")
        try:
            response = ssm.get_parameter(Name=self.name, WithDecryption=True)
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                raise StoreError(
                    f"{self.resource} not found: push the config first "
                    f"(handoff config push -p PROJECT --stack {self.stack})"
                ) from None
            with aws_errors("read", self.resource, service="ssm"):
                raise
        try:
            document = json.loads(response["Parameter"]["Value"])
        except ValueError:
            raise StoreError(f"{self.resource} does not hold a JSON document") from None
        if not isinstance(document, dict):
            raise StoreError(f"{self.resource} does not hold a JSON object")
        return document

    def _read_object(self, ref: Any) -> dict[str, Any]:
        if not isinstance(ref, dict) or not isinstance(ref.get("uri"), str):
            raise StoreError(f"{self.resource}: malformed {REF_KEY} pointer")
        uri: str = ref["uri"]
        match = re.match(r"^s3://([^/]+)/(.+)$", uri)
        if not match:
            raise StoreError(f"{self.resource}: malformed {REF_KEY} uri {uri!r}")
        bucket, key = match.groups()
        s3 = self._client("s3")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in {"NoSuchKey", "404"}:
                raise _StaleRef from None
            with aws_errors("read", uri, service="s3"):
                raise
        if len(body) != ref.get("bytes") or hashlib.sha256(body).hexdigest() != ref.get("sha256"):
            raise _StaleRef
        try:
            document = json.loads(body.decode("utf-8"))
        except ValueError:
            raise StoreError(f"{uri} does not hold a JSON document") from None
        if not isinstance(document, dict):
            raise StoreError(f"{uri} does not hold a JSON object")
        return document


def _is_pointer(document: dict[str, Any]) -> bool:
    return set(document) == {REF_KEY}


def _response_date(response: dict[str, Any]) -> datetime:
    """The server's clock (the ``Date`` header), compared with S3 ``LastModified``."""
    header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if header:
        try:
            date = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            date = None
        # A header without a usable zone (moto <= 5.1.10 sends Date twice, which botocore
        # joins into one unparseable value) can't be compared with LastModified.
        if date is not None and date.tzinfo is not None:
            return date
    return datetime.now(timezone.utc)
