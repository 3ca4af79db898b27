"""``HandoffBaseOperator``: the handoff operators' base, in the Amazon provider's shape.

Like every Amazon operator it is an ``AwsBaseOperator`` whose ``aws_hook_class`` is its
hook (:class:`~handoff_provider.hooks.handoff.HandoffHook`): ``aws_conn_id``,
``region_name``, ``verify`` and ``botocore_config`` are its arguments and template fields
(``aws_template_fields``), and ``self.hook`` is the one hook of the task, built on first
use from the rendered values and cached. What it adds is the stack: ``stack``, ``bucket``,
``config_name`` and ``kms_key_id`` name the stores :meth:`remote` returns. Neither the
hook nor the stores make an AWS call until a client is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handoff_provider._compat import AwsBaseOperator
from handoff_provider.hooks.handoff import HandoffHook

if TYPE_CHECKING:
    from handoff_provider.core.stores import Remote

__all__ = ["HandoffBaseOperator"]


class HandoffBaseOperator(AwsBaseOperator[HandoffHook]):
    """Base of the operators that use a stack's stores (module doc).

    :param stack: the stack (``HANDOFF_STACK``/``STACK_NAME`` when not given); names the
        SSM parameter ``/handoff/<stack>/config`` and the S3 prefix ``<stack>/``.
    :param bucket: the S3 bucket (``HANDOFF_BUCKET``/``S3_BUCKET_NAME``).
    :param config_name: SSM parameter name of the config (default ``/handoff/<stack>/config``).
    :param kms_key_id: KMS key of the config.
    :param aws_conn_id: the Airflow AWS connection (``aws_default``).
    :param region_name: AWS region overriding the connection's.
    :param verify: TLS verification for AWS calls (as ``AwsBaseHook``).
    :param botocore_config: ``botocore.config.Config`` keyword arguments.
    """

    aws_hook_class = HandoffHook

    stack: str | None
    bucket: str | None
    config_name: str | None
    kms_key_id: str | None

    # No __init__ here: Airflow wraps the __init__ of every class of an operator's chain
    # in its default_args handling (each one copies the DAG's default_args and params),
    # so, like the Amazon operators, each subclass has one __init__ over AwsBaseOperator's
    # and names its stores with this. Its signature lists these four arguments, so that
    # default_args still apply to them.
    def _name_stores(
        self,
        stack: str | None,
        bucket: str | None,
        config_name: str | None,
        kms_key_id: str | None,
    ) -> None:
        self.stack = stack
        self.bucket = bucket
        self.config_name = config_name
        self.kms_key_id = kms_key_id

    def remote(self) -> Remote:
        """The stack's stores over :attr:`hook` (no AWS call yet)."""
        return self.hook.get_remote(
            stack=self.stack or None,
            bucket=self.bucket or None,
            config_name=self.config_name or None,
            kms_key_id=self.kms_key_id or None,
        )
