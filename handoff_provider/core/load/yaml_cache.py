"""``project.yml`` parsed once per content: a run of an unchanged project imports no PyYAML.

Importing PyYAML costs about 20 ms, a sixth of a whole ``handoff run -p`` of a trivial
pipeline and most of what such a run spends before its first stage starts. What a parse
gives depends only on the file's text (and on this package's loader), so the result is
kept as JSON in ``PROJECT/.handoff/parsed/project.yml.json``
(:mod:`~handoff_provider.core.local_cache`) together with the text it came from, and is
used only when the text read now is that text, character for character: no timestamp
or hash is trusted, so an edit, however quick or small, is always parsed again. The
entry also names this package's version (a new loader may parse differently).

Only successful parses whose result JSON carries exactly (strings, numbers, booleans,
null, lists, string-keyed mappings: what a valid project is made of) are kept; a file
that fails to parse fails every time, with the parser's own message. A cache that can't
be read or written (a read-only checkout) is a parse as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handoff_provider import __version__
from handoff_provider.core.errors import HandoffError
from handoff_provider.core.load.document_limits import MAX_PROJECT_BYTES
from handoff_provider.core.load.safe_tree import read_regular_file
from handoff_provider.core.local_cache import CACHE_DIR_NAME, write_private

FORMAT_VERSION = 1
#: An entry holds the text and its parse, JSON-escaped: never more than this.
MAX_ENTRY_BYTES = 16 * MAX_PROJECT_BYTES


def cache_file(project_file: Path) -> Path:
    """``<dir of project_file>/.handoff/parsed/<name>.json``."""
    return project_file.parent / CACHE_DIR_NAME / "parsed" / f"{project_file.name}.json"


def parse_cached(project_file: Path, text: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, or what it gave last time for this very ``text``."""
    path = cache_file(project_file)
    hit, data = _lookup(path, text)
    if hit:
        return data
    data = parse(text)  # a parse error propagates: nothing is kept
    _store(path, text, data)
    return data


def _lookup(path: Path, text: str) -> tuple[bool, Any]:
    try:
        # Bounded, and a FIFO or device put there is refused rather than waited on.
        entry = json.loads(read_regular_file(path, limit=MAX_ENTRY_BYTES, what="cache file"))
    except FileNotFoundError:
        return False, None
    except (HandoffError, OSError, ValueError) as exc:
        _note(f"parse cache {path} unreadable ({exc}): parsing")
        return False, None
    if (
        isinstance(entry, dict)
        and entry.get("format") == FORMAT_VERSION
        and entry.get("handoff") == __version__
        and entry.get("text") == text
        and "data" in entry
    ):
        return True, entry["data"]
    return False, None


def _store(path: Path, text: str, data: Any) -> None:
    entry = {"format": FORMAT_VERSION, "handoff": __version__, "text": text, "data": data}
    try:
        document = json.dumps(entry, allow_nan=False)  # ASCII: a character is a byte
    except (TypeError, ValueError):
        return  # binary, sets, non-finite numbers...: not JSON, so not kept
    if len(document) > MAX_ENTRY_BYTES or json.loads(document)["data"] != data:
        return  # too big to be read back, or e.g. a tuple (JSON hands back a list)
    try:
        write_private(path, document)
    except OSError as exc:
        _note(f"parse cache {path} not written ({exc})")


def _note(message: str) -> None:
    """A debug line; ``logging`` is imported only then (a run may otherwise not need it)."""
    import logging

    logging.getLogger(__name__).debug(message)
