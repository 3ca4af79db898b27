"""The runs view's pages as this Airflow deployment configures them (``[handoff]``).

Reading the settings makes no AWS call; the hook reads its connection when a page first
needs a client.
"""

from __future__ import annotations

from handoff_provider._compat import provider_setting
from handoff_provider.runs_view.pages import RunsPages, StackRef

#: The URL path both lines serve the view under.
URL_PREFIX = "/handoff"


def configured_pages() -> RunsPages:
    """:class:`RunsPages` for ``[handoff] runs_view_stacks`` over
    ``[handoff] runs_view_aws_conn_id`` (default ``aws_default``)."""
    stacks = StackRef.parse_list(provider_setting("runs_view_stacks"))
    conn_id = provider_setting("runs_view_aws_conn_id", "aws_default")

    def remote_for(ref: StackRef):  # type: ignore[no-untyped-def]
        from handoff_provider.hooks.handoff import HandoffHook

        return HandoffHook(aws_conn_id=conn_id).get_remote(stack=ref.stack, bucket=ref.bucket)

    return RunsPages(stacks, remote_for)
