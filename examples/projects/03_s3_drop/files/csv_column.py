"""Print ``<file>,<value>`` for one column of every CSV file in a folder (sorted by name).

Usage: csv_column.py --column NAME FOLDER. Fails (exit 1) when a file lacks the column or
a value is not a number, so a bad drop fails the run before anything is published.
"""

import argparse
import csv
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--column", required=True)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    files = sorted(p for p in args.folder.glob("*.csv") if p.is_file())
    if not files:
        print(f"no CSV file in {args.folder}", file=sys.stderr)
        return 1
    out = csv.writer(sys.stdout, lineterminator="\n")
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if args.column not in (reader.fieldnames or []):
                print(f"{path.name}: no column {args.column!r}", file=sys.stderr)
                return 1
            rows = 0
            for line, row in enumerate(reader, start=2):
                try:
                    value = Decimal(row[args.column])
                except (InvalidOperation, TypeError):
                    print(f"{path.name}:{line}: {args.column} is not a number", file=sys.stderr)
                    return 1
                out.writerow([path.name, value])
                rows += 1
        print(f"{path.name}: {rows} row(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
