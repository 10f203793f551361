"""Shared fixtures: throwaway projects written from dicts (dbt functional style)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import fsql
from tests.example import copy_example

REPO = Path(__file__).resolve().parent.parent

MakeProject = Callable[..., fsql.Project]


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """``make_project({"features/x.yml": "...", ...})`` -> an ``fsql.Project`` in tmp_path.

    ``fsql_project.yml`` is added unless given; there is no profiles.yml, so the project runs on
    the embedded default (a DuckDB file under its target/).
    """

    def make(files: dict[str, str], name: str = "test") -> fsql.Project:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        write_files(root, {"fsql_project.yml": f"name: {name}\n", **files})
        return fsql.Project(root)

    return make


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with demo data, made once per session."""
    return copy_example(tmp_path_factory.mktemp("example") / "shop")


@pytest.fixture
def example_dir(example_template: Path, tmp_path: Path) -> Path:
    """A private copy of the example project for one test (safe to modify)."""
    root = tmp_path / "shop"
    shutil.copytree(example_template, root, ignore=shutil.ignore_patterns("target"))
    return root
