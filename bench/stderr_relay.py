"""1 GiB of stderr from one stage: ``handoff run`` vs ``bash`` writing it to a file.

Both sides are whole user processes: ``handoff run -w WS -p PROJECT`` (the runner writes
the stage's stderr to ``artifacts/<task>.1.stderr.log`` and relays its lines to the CLI's
own stderr, here a file) and ``bash -c '( <same line> ) 2>file'``. The stage is
``yes <99 x> | head -c SIZE >&2``: 100-byte lines, about 10 million of them per GiB.
``ratio`` = handoff median / bash median (target <= 3).

Usage: ``python bench/stderr_relay.py [--size 1G] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _size_bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = _size_bytes(args.size)
    line = f"yes {'x' * 99} | head -c {size} >&2"
    handoff = Path(sys.executable).with_name("handoff")
    with tempfile.TemporaryDirectory(prefix="bench-stderr-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "project.yml").write_text(
            "tasks:\n  - name: noisy\n    state_from: none\n    commands:\n"
            f"      - command: sh\n        args: \"-c '{line}'\"\n"
        )
        handoff_times: list[float] = []
        bash_times: list[float] = []
        for number in range(args.rounds):
            out = root / "out.log"
            started = time.perf_counter()
            with open(out, "wb") as err:
                subprocess.run(
                    [str(handoff), "run", "-w", str(root / "ws"), "-p", str(project)],
                    stderr=err,
                    check=True,
                )
            handoff_times.append(time.perf_counter() - started)
            logged = (root / "ws" / "artifacts" / "noisy.1.stderr.log").stat().st_size
            assert logged == size, f"the stage log holds {logged} bytes, not {size}"
            started = time.perf_counter()
            # No pipefail: `yes` ends by SIGPIPE when head is done (141 under pipefail;
            # the runner excuses it, see core/run/pipeline.py).
            subprocess.run(["bash", "-c", f"( {line} ) 2>{root / 'bash.log'}"], check=True)
            logged = (root / "bash.log").stat().st_size
            assert logged == size, f"bash's log holds {logged} bytes, not {size}"
            bash_times.append(time.perf_counter() - started)
            print(
                f"round {number + 1}: handoff {handoff_times[-1]:.2f} s, "
                f"bash {bash_times[-1]:.2f} s"
            )
    ratio = statistics.median(handoff_times) / statistics.median(bash_times)
    print(
        f"size={size} handoff_median={statistics.median(handoff_times):.2f}s "
        f"bash_median={statistics.median(bash_times):.2f}s"
    )
    print(f"ratio={ratio:.2f} (target <= 3)")
    return 0 if ratio <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
