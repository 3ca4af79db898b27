"""The AWS clients: one factory, standard retries, one session shared by every client.

The clients are botocore's, from one ``botocore.session.Session``: what boto3's clients
are, less the import of boto3 (and s3transfer) and its session, which a command that
transfers nothing never needs. Uploads and copies hand whatever client they are given to
boto3's transfer manager (:mod:`handoff_provider.core.stores.s3sync`,
:mod:`handoff_provider.core.aws.s3_transfers`), so the Airflow hook's boto3 clients work
the same. Endpoints are never set here: botocore resolves them itself
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, profiles), which is how moto and
LocalStack are reached without a code path of their own. Errors are translated by
:mod:`handoff_provider.core.aws.errors`.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

#: ``client_factory(service_name, config=None) -> botocore client``; the Airflow hook passes
#: its own. ``config`` (a ``botocore.config.Config``) is merged over the factory's own
#: settings: Lambda clients need a long read timeout and no retries (``lambda_invoke``).
#: Factories that take only ``service_name`` are still accepted (see :func:`make_client`).
ClientFactory = Callable[..., Any]

#: Threads the transfer manager uses; the default client's connection pool is sized to match.
MAX_CONCURRENCY = 16


def default_client_factory() -> ClientFactory:
    """One ``botocore.session.Session`` shared by every client, with standard-mode
    retries; ``factory(service_name, config=None)`` merges ``config`` over those defaults."""
    import botocore.config
    import botocore.session

    # Any: the stubs type create_client() per literal service name; ours is a parameter.
    session: Any = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=iso_timestamp
    )
    base = botocore.config.Config(
        retries={"mode": "standard"},
        max_pool_connections=MAX_CONCURRENCY + 4,
    )
    lock = threading.Lock()

    def factory(service_name: str, config: Any = None) -> Any:
        # Session.create_client is not thread-safe; clients themselves are.
        merged = base.merge(config) if config is not None else base
        with lock:
            return session.create_client(service_name, config=merged)

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


class LazyClient:
    """The client of ``service_name``, made by ``factory`` the first time it is asked for
    (thread-safe): for template functions (``ssm()``, ``secret()``) that a run may never
    call, so that a run without them makes no client."""

    def __init__(self, factory: Callable[[str], Any], service_name: str) -> None:
        self._factory = factory
        self._service_name = service_name
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory(self._service_name)
            return self._client


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
