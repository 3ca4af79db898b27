"""tap-demo: emit a Singer stream of daily readings as JSON lines on stdout.

Usage: ``tap-demo --config CONFIG [--state STATE] [--start-date DATE] [--end-date DATE]``

CONFIG (JSON): ``{"stream": "readings", "start_date": "2024-01-01", "count": 5}``.
The first day is the day after the stream's bookmark in STATE (incremental runs), else
``--start-date``, else the config's ``start_date``. A missing or empty STATE file means a
first run. Emits one SCHEMA, ``count`` RECORDs (fewer when ``--end-date``, exclusive, comes
first; an empty value means no bound) and a final STATE message.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any


def _day(text: str) -> dt.date:
    return dt.date.fromisoformat(text[:10])


def read_state(path: str | None) -> dict[str, Any]:
    """The last non-blank JSON line of the state file, or ``{}``."""
    if not path or not Path(path).is_file():
        return dict()
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else dict()


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tap-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--state")
    parser.add_argument("--start-date")
    parser.add_argument("--end-date", default="")
    args = parser.parse_args(argv)

    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    stream = config.get("stream", "readings")
    count = int(config.get("count", 5))
    state = read_state(args.state)
    bookmark = state.get("bookmarks", dict()).get(stream, dict()).get("day")
    if bookmark:
        first = _day(bookmark) + dt.timedelta(days=1)
    else:
        first = _day(args.start_date or config["start_date"])

    schema = {
        "type": "object",
        "properties": {"day": {"type": "string", "format": "date"}, "value": {"type": "integer"}},
    }
    _emit({"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["day"]})
    end = _day(args.end_date) if args.end_date else None
    days = [first + dt.timedelta(days=offset) for offset in range(count)]
    days = [day for day in days if end is None or day < end]
    for day in days:
        record = {"day": day.isoformat(), "value": day.toordinal() * 37 % 100}
        _emit({"type": "RECORD", "stream": stream, "record": record})
    if days:
        state.setdefault("bookmarks", dict())[stream] = {"day": days[-1].isoformat()}
    _emit({"type": "STATE", "value": state})
    print(f"tap-demo: {len(days)} records of {stream!r} from {first}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
