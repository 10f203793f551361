"""Benchmark: whole-process wall time of the everyday CLI verbs on the example project.

    python benchmarks/cli.py                      # this installation's fsql
    python benchmarks/cli.py --fsql OTHER/fsql    # ... and another one, alternating (A/B)

Copies the example project (``fsql_project.yml``, ``profiles.yml``, features, models, macros:
its default target, a DuckDB file and the embedded online store) into a temporary directory,
one copy per installation, generates the demo data ending today
(``scripts/generate_demo_data.py``), then builds and syncs it once. Then, ``--repeat`` times,
each verb runs as a fresh ``fsql`` subprocess (interpreter start-up, imports, the embedded
redis-server's start and stop: everything a user waits for) for each installation in turn,
the order of the installations alternating from one round to the next:

    compile | ls | show customer_profile | diff | freshness | sync (nothing new) |
    get churn_training -e customer_id=1 (embedded online store)

Prints a markdown table of median and p90 wall seconds and median CPU seconds per verb (and
the target: 1.5 s, ``get`` 1 s) and writes every run to ``benchmarks/results/cli.json``.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

VERBS: dict[str, list[str]] = {
    "compile": ["compile"],
    "ls": ["ls"],
    "show": ["show", "customer_profile"],
    "diff": ["diff"],
    "freshness": ["freshness"],
    "sync (no-op)": ["sync"],
    "get (embedded)": ["get", "churn_training", "-e", "customer_id=1"],
}
TARGETS = {verb: 1.0 if verb.startswith("get") else 1.5 for verb in VERBS}
# freshness exits 5 when an SLA is breached: a result, not a failed run
ALLOWED_EXIT = {"freshness": {0, 5}}
PARTS = ("fsql_project.yml", "profiles.yml", "features", "models", "macros")


def project_copy(root: Path, fsql: str) -> Path:
    """The example project with today's demo data, built and synced once by ``fsql``."""
    project = root / "shop"
    project.mkdir(parents=True)
    for part in PARTS:
        source = common.ROOT / part
        if source.is_dir():
            shutil.copytree(source, project / part)
        else:
            shutil.copy(source, project / part)
    subprocess.run([sys.executable, str(common.ROOT / "scripts" / "generate_demo_data.py"),
                    "--out", str(project / "data")], check=True, capture_output=True)
    for args in (["build"], ["sync"]):
        done = subprocess.run([fsql, *args], cwd=project, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise SystemExit(f"{fsql} {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return project


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(fsql: str, verb: str, project: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one ``fsql VERB`` subprocess (stop the benchmark if it
    failed). The CPU time (user + system of the process, not of the redis-server it starts)
    shows the work done even on a busy machine, where the wall time includes waiting for a
    CPU."""
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run([fsql, *VERBS[verb]], cwd=project, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in ALLOWED_EXIT.get(verb, {0}):
        raise SystemExit(f"{fsql} {' '.join(VERBS[verb])} exited {done.returncode}:\n"
                         f"{done.stderr[-4000:]}")
    return seconds, children_cpu() - cpu


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 \
        else values[0]


def figures(runs: list[tuple[float, float]]) -> dict[str, Any]:
    """Median and p90 wall seconds, median CPU seconds and every run of one verb."""
    wall, cpu = [w for w, _ in runs], [c for _, c in runs]
    return {"median": round(statistics.median(wall), 3), "p90": round(p90(wall), 3),
            "cpu_median": round(statistics.median(cpu), 3),
            "runs": [round(w, 3) for w in wall], "cpu_runs": [round(c, 3) for c in cpu]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsql", type=Path, help="another installation's fsql executable, "
                        "measured alternately with this one (e.g. a worktree of an older "
                        "commit with its own venv)")
    parser.add_argument("--repeat", type=int, default=10, help="runs of each verb (default 10)")
    parser.add_argument("--out", type=Path, default=common.ROOT / "benchmarks" / "results" /
                        "cli.json")
    args = parser.parse_args()
    installations = {"this": str(Path(sys.executable).parent / "fsql")}
    if args.fsql is not None:
        installations["other"] = str(args.fsql.resolve())
    runs: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {verb: [] for verb in VERBS} for name in installations}
    with tempfile.TemporaryDirectory(prefix="fsql-bench-cli-") as tmp:
        projects = {}
        for name, fsql in installations.items():
            common.log(f"setting up the example project for {name} ({fsql})")
            projects[name] = project_copy(Path(tmp) / name, fsql)
        order = list(installations)
        for round_ in range(args.repeat):
            common.log(f"round {round_ + 1}/{args.repeat}")
            for verb in VERBS:
                for name in order:
                    runs[name][verb].append(timed(installations[name], verb, projects[name]))
            order.reverse()
    summary = {name: {verb: figures(v) for verb, v in verbs.items()}
               for name, verbs in runs.items()}
    header = ["verb", "target (s)"] + [f"{name}: median / p90 wall (median CPU) s"
                                       for name in installations]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for verb in VERBS:
        cells = [f"{summary[name][verb]['median']:.2f} / {summary[name][verb]['p90']:.2f} "
                 f"({summary[name][verb]['cpu_median']:.2f})" for name in installations]
        lines.append(f"| `fsql {' '.join(VERBS[verb])}` | {TARGETS[verb]:.1f} | "
                     + " | ".join(cells) + " |")
    result: dict[str, Any] = {
        "benchmark": "cli", "repeat": args.repeat, "installations": installations,
        "targets": TARGETS, "results": summary, "machine": common.machine()}
    common.publish(result, args.out, "\n".join(lines))


if __name__ == "__main__":
    main()
