"""Extra link from a handoff task to its run's artifacts in the S3 console.

The run key differs per try, so the link can't be computed from the operator: like the
Amazon provider's links (``BaseAwsLink``), the operator persists the link's parts to XCom
(key ``handoff_artifacts``) when the try starts, and the link is built from that XCom for
the try the UI shows. Shared by ``HandoffRunOperator`` and ``HandoffEcsRunOperator``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar
from urllib.parse import quote

from handoff_provider._compat import BaseAwsLink


def aws_region_from_env() -> str | None:
    """The region boto3 would use without a connection (``AWS_DEFAULT_REGION``/``AWS_REGION``)."""
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None


def aws_partition(region_name: str | None) -> str:
    """The AWS partition of a region (console domains differ in China and GovCloud)."""
    region = region_name or ""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def artifacts_console_url(
    bucket: str,
    prefix: str,
    *,
    region_name: str | None = None,
    aws_domain: str | None = "aws.amazon.com",
) -> str:
    """The S3 console page listing ``s3://<bucket>/<prefix>``."""
    url = (
        f"https://s3.console.{aws_domain or 'aws.amazon.com'}/s3/buckets/{quote(bucket, safe='')}"
        f"?prefix={quote(prefix, safe='/')}"
    )
    return f"{url}&region={quote(region_name, safe='')}" if region_name else url


class HandoffArtifactsLink(BaseAwsLink):
    """ "Handoff artifacts" button: the try's ``runs/<run-key>/`` prefix in the S3 console."""

    name: ClassVar[str] = "Handoff artifacts (S3)"
    key: ClassVar[str] = "handoff_artifacts"
    format_str: ClassVar[str] = (
        "https://s3.console.{aws_domain}/s3/buckets/{bucket}?prefix={prefix}"
    )

    def format_link(self, **kwargs: Any) -> str:
        bucket, prefix = kwargs.get("bucket"), kwargs.get("prefix")
        if not bucket or not prefix:
            return ""
        return artifacts_console_url(
            bucket,
            prefix,
            region_name=kwargs.get("region_name"),
            aws_domain=kwargs.get("aws_domain"),
        )
