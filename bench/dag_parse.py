"""DAG parse time: 50 handoff projects through the DAG factory vs 50 minimal DAGs.

Generates, in a temporary folder, 50 small projects (project.yml with a schedule, a
config file, files/) and DAG folders of one file each, parsed with Airflow's ``DagBag``:

* ``factory``     ``handoff_dags_for_folder(projects)``: 50 DAGs, the default mode
                  (push_config -> push_files -> run: 3 tasks per DAG);
* ``run_remote``  the same with ``mode="run_remote"`` (1 task per DAG, like the baseline);
* ``baseline``    50 DAGs of one ``EmptyOperator`` each;
* ``baseline_3``  50 DAGs of three chained ``EmptyOperator`` each: the factory's default
                  shape, so ``ratio_same_shape=`` is the factory's cost beyond its task count;
* ``by_hand``     the factory's 50 DAGs written without it, as a user would: the same
                  three handoff operators with the same arguments (``max_active_runs=1``
                  and the run's ``depends_on_past``, as the factory gives a project with
                  state) and a cron string ``schedule``. ``ratio_vs_by_hand=`` is what the
                  factory itself adds (reading the projects, the timetable, ``doc_md``);
                  ``ratio_by_hand_same_shape=`` is what Airflow's operator machinery costs
                  for three ``AwsBaseOperator`` subclasses (one with an outlet) over three
                  ``EmptyOperator`` ones, whoever writes the DAG;
* ``baseline_s3`` the baseline plus one ``s3://`` outlet Asset: what any DAG with an S3
                  asset pays once per process (Airflow imports the Amazon provider's S3
                  URI handler, hence boto3), to show which part of the cold cost is ours.

Two measurements, each in fresh interpreter processes (Airflow imported before timing;
the interpreter's venv has its bytecode compiled first, as ``pip install`` leaves it):

* warm (``ratio=``): the median of repeated ``DagBag`` fills after a first one, i.e. the
  steady per-parse cost once one-time imports are done;
* cold (``cold_ratio=``): the first ``DagBag`` fill of a fresh process, one-time imports
  included, which is what a DAG processor pays per file parse (it parses in a fresh
  child process).

Every parse runs with an audit hook on ``socket.connect``: a network connection (an AWS
call) while parsing fails the bench (``network_at_parse=0`` is printed otherwise).

Rounds: 11 by default; a round runs one fresh process per folder, one after the other,
in the opposite order from the round before. A warm fill of 50 DAGs takes 20-50 ms, so
one process's figure moves by a tenth with the machine, and the machine drifts between
rounds: every ``ratio=`` is the median of the rounds' own ratios (a round's folders are
measured side by side), and the target line prints their quartiles. (Each folder's
median over the rounds, divided, read 1.41, 1.51 and 1.63 for one commit in one day.)

Usage: ``python bench/dag_parse.py [--python .venv-af2/bin/python] [--rounds 11]``.
Prints ``ratio=`` lines (target for ``ratio_same_shape=``: <= 1.5) and per-DAG
milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from _util import compile_bytecode

PROJECTS = 50

PROJECT_YML = """\
description: generated project {i}
envs:
  - key: TARGET
    value: out/{i}.csv
tasks:
  - name: main
    pipeline:
      - command: cat
        args: files/in.txt
      - command: wc
        args: -l
schedules:
  - cron: "{minute} {hour} * * ? *"
"""

FACTORY = """\
# Airflow DAG file: every project of the folder through the handoff DAG factory
from handoff_provider.dag_factory import handoff_dags_for_folder

globals().update(handoff_dags_for_folder({projects!r}, bucket="bench-bucket"{extra}))
"""

BASELINE = """\
# Airflow DAG file: {n} minimal DAGs of {tasks} chained EmptyOperator(s) each
from datetime import datetime, timezone

try:
    from airflow.sdk import DAG, Asset
    from airflow.providers.standard.operators.empty import EmptyOperator
except ImportError:
    from airflow.models.dag import DAG
    from airflow.datasets import Dataset as Asset
    from airflow.operators.empty import EmptyOperator

for i in range({n}):
    with DAG(
        f"minimal_{{i:02d}}",
        schedule=f"{{i % 60}} {{i % 24}} * * *",
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
    ) as dag:
        previous = None
        for t in range({tasks}):
            task = EmptyOperator(task_id=f"noop_{{t}}"{outlet})
            if previous is not None:
                previous >> task
            previous = task
    globals()[dag.dag_id] = dag
"""

BY_HAND = """\
# Airflow DAG file: the factory's DAGs written by hand with the handoff operators
from datetime import datetime, timezone

try:
    from airflow.sdk import DAG
except ImportError:
    from airflow.models.dag import DAG

from handoff_provider.operators.config import HandoffConfigPushOperator, HandoffFilesPushOperator
from handoff_provider.operators.run import HandoffRunOperator

for i in range({n}):
    project, stack = f"{projects}/project_{{i:02d}}", f"project-{{i:02d}}"
    with DAG(
        f"by_hand_{{i:02d}}",
        schedule=f"{{i % 60}} {{i % 24}} * * *",
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        tags=["handoff"],
    ) as dag:
        common = dict(project_dir=project, stack=stack, bucket="bench-bucket")
        (
            HandoffConfigPushOperator(task_id="push_config", **common)
            >> HandoffFilesPushOperator(task_id="push_files", **common)
            >> HandoffRunOperator(
                task_id="run", stack=stack, bucket="bench-bucket", depends_on_past=True
            )
        )
    globals()[dag.dag_id] = dag
"""

# Runs in the measured interpreter: imports Airflow, then times DagBag fills.
PARSER = textwrap.dedent(
    """
    import json, statistics, sys, time
    import airflow
    connects = []  # no AWS (or any network) call at parse: every socket connect is seen
    sys.addaudithook(lambda event, args: event == "socket.connect" and connects.append(args))
    try:
        from airflow.dag_processing.dagbag import DagBag
        kwargs = {}
    except ImportError:
        from airflow.models.dagbag import DagBag
        kwargs = {"include_examples": False}
    folder, repeats = sys.argv[1], int(sys.argv[2])
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        bag = DagBag(folder, **kwargs)
        times.append(time.perf_counter() - start)
        if bag.import_errors:
            raise SystemExit(f"import errors: {bag.import_errors}")
    print(json.dumps({"dags": len(bag.dags), "cold": times[0], "connects": len(connects),
                      "warm": statistics.median(times[1:]) if repeats else None}))
    """
)


def generate(root: Path) -> dict[str, Path]:
    projects = root / "projects"
    for i in range(PROJECTS):
        project = projects / f"project_{i:02d}"
        (project / "config").mkdir(parents=True)
        (project / "files").mkdir()
        (project / "project.yml").write_text(PROJECT_YML.format(i=i, minute=i % 60, hour=i % 24))
        (project / "config" / "app.json").write_text(json.dumps({"token": f"t{i}", "n": i}))
        (project / "files" / "in.txt").write_text("a\nb\n")
    folders: dict[str, Path] = {}
    for name, text in {
        "factory": FACTORY.format(projects=str(projects), extra=""),
        "run_remote": FACTORY.format(projects=str(projects), extra=', mode="run_remote"'),
        "baseline": BASELINE.format(n=PROJECTS, tasks=1, outlet=""),
        "baseline_3": BASELINE.format(n=PROJECTS, tasks=3, outlet=""),
        "by_hand": BY_HAND.format(n=PROJECTS, projects=str(projects)),
        "baseline_s3": BASELINE.format(
            n=PROJECTS,
            tasks=1,
            outlet=', outlets=[Asset("s3://bench-bucket/x/last/")] if i == 0 else []',
        ),
    }.items():
        folder = root / name
        folder.mkdir()
        (folder / "dags.py").write_text(text)
        folders[name] = folder
    return folders


def measure(python: str, folder: Path, repeats: int, env: dict[str, str]) -> dict[str, float]:
    result = subprocess.run(
        [python, "-c", PARSER, str(folder), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"parsing {folder} failed:\n{result.stderr[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    if data["dags"] != PROJECTS:
        raise SystemExit(f"{folder}: {data['dags']} DAGs instead of {PROJECTS}")
    if data["connects"]:
        raise SystemExit(f"{folder}: {data['connects']} network connection(s) at parse time")
    return data


def paired(
    samples: dict[str, dict[str, list[float]]], name: str, base: str, kind: str
) -> list[float]:
    """Each round's ``name``/``base`` ratio: a round's folders ran one after the other, so
    its ratio is free of the machine's drift between rounds."""
    return [a / b for a, b in zip(samples[name][kind], samples[base][kind], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with Airflow")
    parser.add_argument("--rounds", type=int, default=11, help="fresh processes per folder")
    parser.add_argument("--repeats", type=int, default=7, help="warm fills per process")
    args = parser.parse_args()
    compile_bytecode(args.python)  # else the cold figures time the bytecode compiler

    with tempfile.TemporaryDirectory(prefix="handoff-dag-parse-") as tmp:
        root = Path(tmp)
        folders = generate(root)
        home = root / "airflow-home"
        home.mkdir()
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "baseline"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
        samples: dict[str, dict[str, list[float]]] = {
            name: {"cold": [], "warm": []} for name in folders
        }
        for number in range(args.rounds):  # interleaved, so machine noise hits every folder alike
            names = list(folders) if number % 2 == 0 else list(reversed(folders))  # A B, B A
            for name in names:
                data = measure(args.python, folders[name], args.repeats, env)
                samples[name]["cold"].append(data["cold"])
                samples[name]["warm"].append(data["warm"])
        version = (
            subprocess.run(
                [args.python, "-c", "import airflow; print(airflow.__version__)"],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            .stdout.strip()
            .splitlines()[-1:]
        )

    med = {n: {k: statistics.median(v) for k, v in s.items()} for n, s in samples.items()}
    per_dag = {n: {k: v * 1000 / PROJECTS for k, v in m.items()} for n, m in med.items()}
    print(f"airflow={version[0] if version else '?'} projects={PROJECTS} rounds={args.rounds}")
    for name in folders:
        print(
            f"{name:12s} warm {med[name]['warm'] * 1000:7.1f} ms ({per_dag[name]['warm']:.3f} "
            f"ms/DAG)  cold {med[name]['cold'] * 1000:7.1f} ms ({per_dag[name]['cold']:.3f} ms/DAG)"
        )

    def ratio(name: str, base: str, kind: str = "warm") -> str:
        return f"{statistics.median(paired(samples, name, base, kind)):.2f}"

    def spread(name: str, base: str) -> str:
        values = paired(samples, name, base, "warm")
        if len(values) < 4:
            return "n/a"
        low, _, high = statistics.quantiles(values, n=4)
        return f"{low:.2f}..{high:.2f}"

    print(f"ratio={ratio('factory', 'baseline')}")
    print(f"ratio_run_remote={ratio('run_remote', 'baseline')}")
    # The default factory DAG has 3 tasks: against DAGs of 3 chained EmptyOperators, this is
    # what the factory's DAGs cost beyond their task count (target <= 1.5).
    print(
        f"ratio_same_shape={ratio('factory', 'baseline_3')}  "
        f"(quartiles of the rounds {spread('factory', 'baseline_3')}; target <= 1.5)"
    )
    print(f"ratio_vs_by_hand={ratio('factory', 'by_hand')}")
    print(
        f"ratio_by_hand_same_shape={ratio('by_hand', 'baseline_3')}  "
        f"(quartiles of the rounds {spread('by_hand', 'baseline_3')})"
    )
    print(f"cold_ratio={ratio('factory', 'baseline', 'cold')}")
    print(f"cold_ratio_vs_s3_asset_baseline={ratio('factory', 'baseline_s3', 'cold')}")
    print("network_at_parse=0")
    factory_ms, baseline_ms = per_dag["factory"]["warm"], per_dag["baseline"]["warm"]
    print(f"per_dag_ms={factory_ms:.3f} baseline_per_dag_ms={baseline_ms:.3f}")


if __name__ == "__main__":
    main()
