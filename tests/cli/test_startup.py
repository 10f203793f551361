"""Verbs that run no data test never import great-expectations (seconds of start-up): seen in
the real CLI's ``python -X importtime`` report of every module it imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def imported(args: list[str], cwd: Path) -> set[str]:
    """The top-level packages ``fsql ARGS`` imported (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from fsql.cli import main; main()", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp"})
    assert done.returncode == 0, done.stderr[-3000:]
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["compile"], ["ls"], ["show", "customer_profile"]])
def test_verbs_without_data_tests_do_not_import_great_expectations(example_dir: Path,
                                                                   args: list[str]) -> None:
    modules = imported(args, example_dir)
    assert "fsql" in modules
    assert "great_expectations" not in modules


def test_fsql_test_imports_great_expectations(example_dir: Path) -> None:
    # the check above would pass vacuously if the report never named great_expectations
    assert "great_expectations" in imported(["test"], example_dir)


def test_the_sync_summary_reports_the_wall_time_of_the_whole_run(example_dir: Path) -> None:
    # two seconds pass before fsql's own code runs: the summary's time includes them (and the
    # inner loop's), the inner loop's alone does not
    def sync(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", "import time; time.sleep(2); from fsql.cli import main; "
             "main()", "sync", *args], capture_output=True, text=True, cwd=example_dir,
            timeout=300, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp"})
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    result = json.loads(sync("--json"))
    assert result["wall_seconds"] >= result["seconds"] + 2.0
    summary = sync().strip().splitlines()[-1]  # "Synced 3 views in 2.71s (wall time)"
    assert summary.endswith("s (wall time)"), summary
    assert float(summary.rsplit(" in ", 1)[1].split("s", 1)[0]) >= 2.0


def test_a_sync_with_nothing_new_runs_no_data_test(example_dir: Path) -> None:
    # the first sync writes, so customer_profile's data tests gate it; the second has nothing
    # to write: no gate, no great-expectations
    assert "great_expectations" in imported(["sync", "-s", "customer_profile"], example_dir)
    assert "great_expectations" not in imported(["sync", "-s", "customer_profile"], example_dir)


def test_the_examples_second_sync_tests_nothing(example_dir: Path) -> None:
    # product_ratings re-sends its future-dated rows on every sync, but it has no data test;
    # the views with tests have nothing new, so nothing is tested and great-expectations stays
    # out (the whole example's repeated sync is the benchmark's "sync (nothing new)")
    assert "great_expectations" in imported(["sync"], example_dir)
    assert "great_expectations" not in imported(["sync"], example_dir)
