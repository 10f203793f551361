"""``FSQL_ENV_SECRET_*`` variables and profile passwords never reach an artifact or Redis.

Secrets are allowed in profiles.yml only; in SQL (models, views, macros) or in fsql_project.yml
vars they are a compile error naming the file and line. After compile + build + sync with a
password read from a secret variable, no file under target/ and no value in Redis holds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

import fsql
from fsql.errors import DefinitionError
from tests.conftest import MakeProject
from tests.security.conftest import PASSWORD, PasswordRedis, secret_profile

SECRET_PROFILE = secret_profile("redis://127.0.0.1:1/0",
                                "{{ env_var('FSQL_ENV_SECRET_PW') }}").replace("shop:", "test:")


def test_secret_in_sql_is_an_error_with_file_and_line(make_project: MakeProject,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSQL_ENV_SECRET_PW", PASSWORD)
    monkeypatch.setenv("FSQL_ENV_SECRET_X", "x-secret-value")
    project = make_project({
        "profiles.yml": SECRET_PROFILE,
        "models/m.sql": "SELECT\n    '{{ env_var(\"FSQL_ENV_SECRET_X\") }}' AS token\n",
    })
    with pytest.raises(DefinitionError) as caught:
        project.compile()
    message = str(caught.value)
    assert message.startswith("models/m.sql:2: env_var('FSQL_ENV_SECRET_X') is a secret")
    assert "secrets belong in profiles.yml" in message
    assert "x-secret-value" not in message


def test_secret_in_a_macro_is_an_error(make_project: MakeProject,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSQL_ENV_SECRET_X", "x-secret-value")
    project = make_project({
        "macros/token.sql": "{% macro token() -%}\n"
                            "{{ env_var('FSQL_ENV_' ~ 'SECRET_X') }}\n{%- endmacro %}\n",
        "models/m.sql": "SELECT '{{ token() }}' AS token\n",
    })
    with pytest.raises(DefinitionError, match=r"^macros/token.sql:2: env_var\('FSQL_ENV_SECRET_X'"):
        project.compile()


def test_secret_in_project_vars_is_an_error(make_project: MakeProject) -> None:
    with pytest.raises(DefinitionError) as caught:
        make_project({"fsql_project.yml": "name: test\nvars:\n  days: 3\n"
                                          "  token: \"{{ env_var('FSQL_ENV_SECRET_X') }}\"\n"})
    assert str(caught.value).startswith(
        "fsql_project.yml:4: var 'token' uses a FSQL_ENV_SECRET_* variable")


def _redis_text(client: redis.Redis) -> bytes:
    """Every key and value in the database, concatenated (strings, hashes, sets, lists)."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            parts += [b for kv in client.hgetall(key).items() for b in kv]
        elif kind == b"set":
            parts += list(client.smembers(key))
        elif kind == b"zset":
            parts += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
    return b"\n".join(parts)


@pytest.mark.parametrize("where", ["password_field", "url"])
def test_no_secret_in_target_or_redis(where: str, shop_dir: Path, password_redis: PasswordRedis,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FSQL_ENV_SECRET_PW", PASSWORD)
    secret = "{{ env_var('FSQL_ENV_SECRET_PW') }}"
    host = f"127.0.0.1:{password_redis.port}/0"
    profile = (secret_profile(f"redis://{host}", secret) if where == "password_field"
               else secret_profile(f"redis://:{secret}@{host}"))
    (shop_dir / "profiles.yml").write_text(profile)
    project = fsql.Project(shop_dir)
    project.compile(write=True)
    project.build([])
    result = project.sync([])
    assert result.views and all(v.written for v in result.views)

    files = [p for p in (shop_dir / "target").rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files)
    for path in files:
        data = path.read_bytes()
        assert PASSWORD.encode() not in data, f"the password is in {path}"
    stored = _redis_text(password_redis.client())
    assert b"orders_30d" in stored and b"compiled_sql" in stored  # the meta manifest was read
    assert PASSWORD.encode() not in stored


@pytest.mark.parametrize("password", [None, PASSWORD])
def test_a_target_repr_shows_no_password(make_project: MakeProject, password: str | None) -> None:
    """A notebook that displays ``project.target`` (or a log of it) must not show the password
    of the URL or of the ``password:`` field."""
    url = "redis://127.0.0.1:1/0" if password else f"redis://:{PASSWORD}@127.0.0.1:1/0"
    project = make_project({"profiles.yml": secret_profile(url, password)}, name="shop")
    assert PASSWORD not in repr(project.target)
    assert PASSWORD not in project.target.online.display
    assert ":***@" in project.target.online.display
