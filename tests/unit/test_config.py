from __future__ import annotations

from pathlib import Path

import pytest

from fsql.config import load_project_config, load_target
from fsql.errors import ConfigError

PROFILES = """
shop:
  target: "{{ env_var('FSQL_TEST_TARGET', 'dev') }}"
  outputs:
    dev:
      offline: {type: duckdb, path: target/dev.duckdb, threads: 1}
    prod:
      offline: {type: duckdb, path: "{{ env_var('FSQL_TEST_DB', 'target/prod.duckdb') }}"}
"""


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    (tmp_path / "fsql_project.yml").write_text("name: shop\n")
    (tmp_path / "profiles.yml").write_text(PROFILES)
    return tmp_path


def test_default_target_from_profile(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FSQL_TARGET", raising=False)
    target = load_target(load_project_config(project_dir))
    assert target.name == "dev"
    assert target.offline.path == project_dir / "target/dev.duckdb"
    assert target.offline.threads == 1


def test_env_var_in_profile(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSQL_TEST_TARGET", "prod")
    monkeypatch.setenv("FSQL_TEST_DB", "/tmp/elsewhere.duckdb")
    target = load_target(load_project_config(project_dir))
    assert target.name == "prod"
    assert target.offline.path == Path("/tmp/elsewhere.duckdb")


def test_option_beats_environment(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSQL_TARGET", "prod")
    assert load_target(load_project_config(project_dir), "dev").name == "dev"


def test_unknown_target_lists_available(project_dir: Path) -> None:
    with pytest.raises(ConfigError, match="no target 'staging'; available: dev, prod"):
        load_target(load_project_config(project_dir), "staging")


def test_no_profiles_file_means_embedded_duckdb(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FSQL_TARGET", raising=False)
    monkeypatch.delenv("FSQL_PROFILES_DIR", raising=False)
    (tmp_path / "fsql_project.yml").write_text("name: p\n")
    target = load_target(load_project_config(tmp_path))
    assert target.offline.type == "duckdb"
    assert target.offline.path == tmp_path / "target" / "p.duckdb"


def test_missing_project_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an fsql project"):
        load_project_config(tmp_path)
