"""``offline: {type: spark}`` in profiles.yml: keys, defaults, refusals, secrets in ``conf``.
(No Spark needed: this is configuration only.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from fsql import secrets
from fsql.config import OfflineConfig, load_project_config, load_target
from fsql.errors import ConfigError


def _target(root: Path, offline: str) -> OfflineConfig:
    (root / "fsql_project.yml").write_text("name: shop\n")
    (root / "profiles.yml").write_text(
        f"shop:\n  target: dev\n  outputs:\n    dev:\n      offline: {offline}\n")
    return load_target(load_project_config(root)).offline


def test_spark_keys_and_defaults(tmp_path: Path) -> None:
    config = _target(tmp_path, "{type: spark}")
    assert (config.type, config.master, config.conf, config.database) == (
        "spark", "local[*]", (), "default")
    assert config.warehouse == tmp_path / "target" / "spark-warehouse"
    config = _target(tmp_path, "{type: spark, master: 'spark://h:7077', warehouse: wh, "
                               "database: feats, conf: {spark.executor.memory: 4g, "
                               "spark.sql.adaptive.enabled: true}}")
    assert config.master == "spark://h:7077" and config.database == "feats"
    assert config.warehouse == tmp_path / "wh"
    assert config.conf == (("spark.executor.memory", "4g"),
                           ("spark.sql.adaptive.enabled", "true"))


def test_unknown_key_names_file_and_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _target(tmp_path, "{type: spark, threads: 4}")
    message = str(info.value)
    assert "profiles.yml" in message and "target 'dev' offline" in message
    assert "threads" in message and "allowed for type spark: type, master, conf" in message


def test_unsupported_engine_lists_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="supported: duckdb, spark"):
        _target(tmp_path, "{type: trino}")


def test_credential_in_conf_must_come_from_a_secret_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        _target(tmp_path, "{type: spark, conf: {spark.hadoop.fs.s3a.secret.key: hunter2}}")
    assert "FSQL_ENV_SECRET_" in str(info.value) and "hunter2" not in str(info.value)
    monkeypatch.setenv("FSQL_ENV_SECRET_S3", "s3cr3t-value")
    config = _target(tmp_path, "{type: spark, conf: {spark.hadoop.fs.s3a.secret.key: "
                               "\"{{ env_var('FSQL_ENV_SECRET_S3') }}\"}}")
    assert config.conf == (("spark.hadoop.fs.s3a.secret.key", "s3cr3t-value"),)
    assert "s3cr3t-value" not in repr(config)
    assert secrets.redact("failed with s3cr3t-value") == "failed with ***"


def test_conf_values_are_single_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="conf spark.jars must be a single value"):
        _target(tmp_path, "{type: spark, conf: {spark.jars: [a, b]}}")


def test_pinned_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _target(tmp_path, "{type: spark, conf: {spark.sql.ansi.enabled: false}}")
    assert "profiles.yml" in str(info.value) and "spark.sql.ansi.enabled" in str(info.value)
