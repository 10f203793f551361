"""profiles.yml renders only the selected target; YAML alias bombs fail fast.

An ``env_var()`` without default in a target nobody selected must not break every command, and
an error in the selected one still names ``profiles.yml:line``. A kilobyte of nested aliases
must fail in well under a second with the file and line, while ordinary anchors and merge keys
(``<<: *defaults``) keep working.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fsql.config import load_project_config, load_target
from fsql.errors import ConfigError, DefinitionError
from tests.conftest import MakeProject

PROFILES = """\
shop:
  target: dev
  outputs:
    dev:
      offline: {type: duckdb, path: target/dev.duckdb}
    prod:
      offline:
        path: "{{ env_var('FSQL_TEST_UNSET_PROD_DB') }}"
other:
  outputs:
    dev:
      offline: {path: "{{ env_var('FSQL_TEST_UNSET_OTHER') }}"}
"""


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("FSQL_TARGET", "FSQL_PROFILES_DIR", "FSQL_TEST_UNSET_PROD_DB",
                 "FSQL_TEST_UNSET_OTHER"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "fsql_project.yml").write_text("name: shop\n")
    (tmp_path / "profiles.yml").write_text(PROFILES)
    return tmp_path


def test_unused_target_is_not_rendered(project_dir: Path) -> None:
    target = load_target(load_project_config(project_dir))
    assert (target.name, target.offline.path) == ("dev", project_dir / "target/dev.duckdb")


def test_selected_target_error_names_the_line(project_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_target(load_project_config(project_dir), "prod")
    message = str(caught.value)
    assert message.startswith(f"{project_dir / 'profiles.yml'}:8: cannot render")
    assert "environment variable 'FSQL_TEST_UNSET_PROD_DB' is not set" in message


def test_templated_target_name_is_rendered(project_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (project_dir / "profiles.yml").write_text(PROFILES.replace(
        "target: dev", "target: \"{{ env_var('FSQL_TEST_PICK', 'dev') }}\""))
    assert load_target(load_project_config(project_dir)).name == "dev"
    monkeypatch.setenv("FSQL_TEST_PICK", "prod")
    monkeypatch.setenv("FSQL_TEST_UNSET_PROD_DB", "/tmp/prod.duckdb")
    assert load_target(load_project_config(project_dir)).offline.path == Path("/tmp/prod.duckdb")


BOMB = "\n".join(
    [f"{chr(97)}: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    + [f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]"
       for i in range(1, 9)]) + "\n"


def test_alias_bomb_fails_fast(make_project: MakeProject) -> None:
    assert len(BOMB.encode()) < 1024  # 9 ** 9 = 387 million "lol"s
    project = make_project({"features/bomb.yml": BOMB})
    started = time.perf_counter()
    with pytest.raises(DefinitionError) as caught:
        project.load()
    seconds = time.perf_counter() - started
    assert seconds < 1.0, f"took {seconds:.2f}s"
    assert str(caught.value).startswith("features/bomb.yml:5: YAML aliases here expand to more "
                                        "than 50,000 values")


def test_alias_bomb_in_profiles_fails_fast(project_dir: Path) -> None:
    (project_dir / "profiles.yml").write_text(PROFILES + BOMB.replace("a:", "x:", 1))
    started = time.perf_counter()
    with pytest.raises(DefinitionError, match="profiles.yml:17: YAML aliases"):
        load_target(load_project_config(project_dir))
    assert time.perf_counter() - started < 1.0


def test_anchors_and_merge_keys_still_work(make_project: MakeProject) -> None:
    project = make_project({
        "features/entities.yml": "entities:\n  - {name: user, join_keys: [user_id]}\n",
        "features/scores.yml": """\
            feature_view:
              entities: [user]
              timestamp: ts
              features:
                - &number {name: score, type: int64, description: a count}
                - <<: *number
                  name: bonus
                  description: overridden
                - *number
            """,
        "features/scores.sql": "SELECT 1 AS user_id, TIMESTAMP '2024-01-01' AS ts, "
                               "2 AS score, 3 AS bonus\n",
    })
    with pytest.raises(DefinitionError, match="feature .score. is declared twice"):
        project.load()  # the plain alias repeats feature 'score': the anchor was read whole
    yml = project.root / "features/scores.yml"
    yml.write_text(yml.read_text().replace("    - *number\n", ""))
    view = project.load().views["scores"]
    assert [(f.name, f.dtype.name, f.description) for f in view.features] == [
        ("score", "int64", "a count"), ("bonus", "int64", "overridden")]
