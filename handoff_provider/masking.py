"""Register secrets with Airflow's secrets masker, the same way on every Airflow line.

Values are registered without a ``name`` (a name makes Airflow mask only when the name
looks sensitive). A multi-line value (a PEM key, a JSON file) is also registered line by
line, because task logs are written one line at a time: the whole value would never
match. Values shorter than ``[logging] min_length_masked_secret`` (default 5) are skipped
on every line: Airflow 3 skips them itself, and on Airflow 2.10, which has no such limit,
masking ``1`` or ``true`` would garble every log line without protecting anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from handoff_provider._compat import airflow_mask_secret, airflow_setting

if TYPE_CHECKING:
    from handoff_provider.core.stores import ConfigBackend, ConfigPushResult

_DEFAULT_MIN_LENGTH = 5


def min_length_masked() -> int:
    """Airflow's ``[logging] min_length_masked_secret`` (5 when unset)."""
    value = airflow_setting("logging", "min_length_masked_secret", str(_DEFAULT_MIN_LENGTH))
    try:
        return max(1, int(value or _DEFAULT_MIN_LENGTH))
    except ValueError:
        return _DEFAULT_MIN_LENGTH


def mask_values(values: Iterable[object]) -> int:
    """Register every string in ``values`` (and each of its lines) with the masker.

    Returns how many distinct strings were registered (for a debug line; never log them).
    """
    min_length = min_length_masked()
    seen: set[str] = set()
    for value in values:
        if value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        candidates = [text]
        if "\n" in text:
            candidates.extend(line.strip() for line in text.splitlines())
        for candidate in candidates:
            if len(candidate.strip()) < min_length or candidate in seen:
                continue
            seen.add(candidate)
            airflow_mask_secret(candidate)
    return len(seen)


def document_secret_values(document: Any) -> list[str]:
    """The values to mask in a compiled document (``Project.secret_values()``).

    A document the project model rejects (the run will fail on it) is still masked,
    coarsely: every string of its ``files`` (the embedded config files) and of ``envs``
    entries marked secret.
    """
    from handoff_provider._compat import airflow_sensitive_words
    from handoff_provider.core.errors import HandoffError
    from handoff_provider.core.load.project import project_from_document

    try:
        project = project_from_document(document, source="remote config")
        return project.secret_values(airflow_sensitive_words())
    except HandoffError:
        pass
    values: list[str] = []
    if isinstance(document, Mapping):
        for item in document.get("files") or ():
            if isinstance(item, Mapping) and isinstance(item.get("value"), str):
                values.append(item["value"])
        for item in document.get("envs") or ():
            if isinstance(item, Mapping) and item.get("secret") and item.get("value"):
                values.append(str(item["value"]))
    return values


class MaskingConfigStore:
    """A config store whose fetched documents are masked before the caller sees them.

    ``HandoffRun`` fetches the remote config itself; wrapping ``remote.config`` with this
    registers every config value with the masker right after the fetch, before the
    runner (or anything else) can log a line containing one. It is a ``ConfigBackend``
    itself, over whichever backend it wraps.
    """

    def __init__(self, store: ConfigBackend) -> None:
        self._store = store

    @property
    def name(self) -> str:
        return self._store.name

    @property
    def resource(self) -> str:
        return self._store.resource

    def push(
        self, document: dict[str, Any], *, allow_advanced_tier: bool = False
    ) -> ConfigPushResult:
        return self._store.push(document, allow_advanced_tier=allow_advanced_tier)

    def fetch(self) -> dict[str, Any]:
        document = self._store.fetch()
        mask_values(document_secret_values(document))
        return document
