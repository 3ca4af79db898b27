"""Pass stdin to stdout unchanged, counting the Singer messages that go through.

Writes ``artifacts/collector_stats.json`` (or ``$COLLECTOR_STATS_PATH``) at the end, e.g.
``{"rows_read": 7, "messages": {"SCHEMA": 1, "RECORD": 5, "STATE": 1}}``.
"""

import json
import os
import sys
from pathlib import Path

counts: dict = dict()
rows = 0
for line in sys.stdin.buffer:
    sys.stdout.buffer.write(line)
    rows += 1
    try:
        kind = str(json.loads(line).get("type", "other"))
    except (ValueError, AttributeError):
        kind = "other"
    counts[kind] = counts.get(kind, 0) + 1
sys.stdout.buffer.flush()

stats_path = Path(os.environ.get("COLLECTOR_STATS_PATH", "artifacts/collector_stats.json"))
stats_path.parent.mkdir(parents=True, exist_ok=True)
stats_path.write_text(json.dumps({"rows_read": rows, "messages": counts}) + "\n")
print(f"stats_collector: {rows} lines", file=sys.stderr)
