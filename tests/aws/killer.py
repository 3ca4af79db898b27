"""Run the ``handoff`` CLI and SIGKILL the process at one S3 call (``kill -9`` mid-publish).

    python -m tests.aws.killer OPERATION KEY_SUBSTRING WHEN -- handoff-args...

``WHEN`` is ``before`` (the call is never sent) or ``after`` (it completed). The hook is a
botocore event handler on every client the CLI's default factory makes; nothing else of
the CLI is changed.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _install(operation: str, key_part: str, when: str) -> None:
    from handoff_provider.core import stores
    from handoff_provider.core.aws import clients

    make_factory = clients.default_client_factory

    def killing_factory() -> Any:
        base = make_factory()

        def factory(service_name: str, config: Any = None) -> Any:
            client = base(service_name, config=config)
            params_seen: dict[int, dict[str, Any]] = {}

            def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
                params_seen[id(context)] = dict(params)

            def kill(model: Any, context: dict[str, Any], **_: Any) -> None:
                params = params_seen.get(id(context), {})
                if model.name == operation and key_part in str(params.get("Key", "")):
                    os.kill(os.getpid(), signal.SIGKILL)

            client.meta.events.register("before-parameter-build", remember)
            event = "before-call" if when == "before" else "after-call"
            client.meta.events.register(event, kill)
            return client

        return factory

    # Remote.from_options uses the name stores/__init__ imported; the CLI's lazy factory
    # imports it from aws/clients.
    clients.default_client_factory = killing_factory
    stores.default_client_factory = killing_factory  # type: ignore[attr-defined]


def main() -> int:
    operation, key_part, when, separator, *argv = sys.argv[1:]
    assert separator == "--" and when in ("before", "after")
    _install(operation, key_part, when)
    from handoff_provider.core.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
