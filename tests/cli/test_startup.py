"""Verbs that run no data test never import great-expectations (seconds of start-up): seen in
the real CLI's ``python -X importtime`` report of every module it imported."""

from __future__ import annotations

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
