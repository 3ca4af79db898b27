"""target-demo-csv: write Singer RECORD messages read from stdin to CSV files.

Usage: ``target-demo-csv --config CONFIG``

CONFIG (JSON): ``{"destination_path": "artifacts", "delimiter": ","}``. Each stream goes
to ``<destination_path>/<stream>.csv`` (columns from its SCHEMA). At the end the value of
the last STATE message is printed on stdout: handoff keeps the last stage's stdout as
``artifacts/state``, which the tap reads on the next run.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="target-demo-csv", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)

    config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    destination = Path(config.get("destination_path", "."))
    destination.mkdir(parents=True, exist_ok=True)
    delimiter = config.get("delimiter", ",")

    handles: dict[str, TextIO] = dict()
    writers: dict[str, csv.DictWriter] = dict()
    rows: dict[str, int] = dict()
    state: Any = None
    try:
        for number, line in enumerate(sys.stdin, start=1):
            if not line.strip():
                continue
            message = json.loads(line)
            kind = message.get("type")
            if kind == "SCHEMA":
                stream = message["stream"]
                columns = list(message["schema"]["properties"])
                handle = (destination / f"{stream}.csv").open("w", newline="", encoding="utf-8")
                handles[stream] = handle
                writers[stream] = csv.DictWriter(handle, fieldnames=columns, delimiter=delimiter)
                writers[stream].writeheader()
                rows[stream] = 0
            elif kind == "RECORD":
                stream = message["stream"]
                if stream not in writers:
                    print(f"target-demo-csv: line {number}: RECORD before SCHEMA", file=sys.stderr)
                    return 2
                writers[stream].writerow(message["record"])
                rows[stream] += 1
            elif kind == "STATE":
                state = message["value"]
    finally:
        for handle in handles.values():
            handle.close()
    for stream, count in rows.items():
        print(f"target-demo-csv: {count} rows to {destination / stream}.csv", file=sys.stderr)
    if state is not None:
        sys.stdout.write(json.dumps(state) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
