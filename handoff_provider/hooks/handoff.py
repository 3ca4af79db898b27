"""``HandoffHook``: the handoff stores (SSM config, S3 files and artifacts) over an AWS
connection.

The hook adds nothing to the stores themselves (``core.stores.Remote``); it only supplies
the ``client_factory``: botocore clients built from the connection's credentials (keys,
role assumption, profile), region, ``endpoint_url`` extra (per service too, via
``service_config``) and botocore ``config_kwargs``, with standard-mode retries unless the
connection says otherwise. Creating the hook, or a ``Remote`` from it, makes no AWS call
and does not even read the connection: that happens when the first client is needed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from handoff_provider._compat import AwsBaseHook

if TYPE_CHECKING:
    from botocore.config import Config

    from handoff_provider.core.stores import Remote

#: Connections per client: the S3 transfer manager of the stores runs up to 16 threads.
_MAX_POOL_CONNECTIONS = 20


class HandoffHook(AwsBaseHook):
    """AWS hook that hands the handoff stores clients made from an Airflow connection.

    :param aws_conn_id: the Airflow AWS connection (``aws_default``); when it does not
        exist boto3's default credential chain is used, as with every Amazon hook.
    :param region_name: overrides the connection's region.
    :param verify: TLS verification (``False`` or a CA bundle path), as in ``AwsBaseHook``.
    :param config: a ``botocore.config.Config`` overriding the connection's ``config_kwargs``.
    """

    hook_name = "Handoff (AWS)"

    def __init__(
        self, aws_conn_id: str | None = AwsBaseHook.default_conn_name, **kwargs: Any
    ) -> None:
        kwargs.pop("client_type", None)
        kwargs.pop("resource_type", None)
        super().__init__(aws_conn_id=aws_conn_id, client_type=None, **kwargs)
        self._factory_lock = threading.Lock()
        self._session: Any = None

    def client_config(self) -> Config:
        """Standard-mode retries and a pool sized for parallel transfers, then the
        connection's ``config_kwargs`` (or the hook's ``config``) on top."""
        from botocore.config import Config

        config = Config(retries={"mode": "standard"}, max_pool_connections=_MAX_POOL_CONNECTIONS)
        own = self.conn_config.botocore_config
        if own is not None:
            config = config.merge(own)
        # AwsBaseHook adds its Airflow user-agent details here (private but present since 8.x).
        get_config = getattr(self, "_get_config", None)
        return get_config(config) if callable(get_config) else config

    def get_client(self, service_name: str, config: Config | None = None) -> Any:
        """A botocore client for ``service_name`` from this connection (one session per hook).

        ``config`` (e.g. Lambda's longer read timeout) is merged over :meth:`client_config`.
        The endpoint is the connection's ``endpoint_url`` (or its per-service one); when
        the connection has none, boto3 resolves it (``AWS_ENDPOINT_URL`` etc.).
        """
        with self._factory_lock:  # boto3 sessions are not thread-safe; clients are
            if self._session is None:
                self._session = self.get_session(region_name=self.region_name)
            base = self.client_config()
            return self._session.client(
                service_name=service_name,
                endpoint_url=self.conn_config.get_service_endpoint_url(service_name=service_name),
                config=base.merge(config) if config is not None else base,
                verify=self.verify,
            )

    def get_remote(
        self,
        stack: str | None = None,
        bucket: str | None = None,
        config_name: str | None = None,
        kms_key_id: str | None = None,
    ) -> Remote:
        """The stores of ``stack`` (``HANDOFF_STACK``/``STACK_NAME`` and
        ``HANDOFF_BUCKET``/``S3_BUCKET_NAME`` when not given) using this connection."""
        from handoff_provider.core.stores import Remote

        return Remote.from_options(
            stack=stack,
            bucket=bucket,
            config_name=config_name,
            kms_key_id=kms_key_id,
            client_factory=self.get_client,
        )
