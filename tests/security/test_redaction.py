"""The online store's password appears in no output: CLI errors (text and ``--json``), the
``fsql serve`` start-up line, HTTP error bodies, /health and /metrics.

Real processes throughout: the ``fsql`` command, a redis-server that requires a password (or
none listening at all), and ``fsql serve`` killed with a signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fsql.secrets import display_url, redact, remember
from tests.redis_server import free_port
from tests.security.conftest import PASSWORD, PasswordRedis, secret_profile

FSQL = str(Path(sys.executable).parent / "fsql")
SECRET_ENV = "{{ env_var('FSQL_ENV_SECRET_PW') }}"


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSQL_")}
    env["FSQL_ENV_SECRET_PW"] = PASSWORD
    return subprocess.run([FSQL, "--project-dir", str(root), *args], capture_output=True,
                          text=True, env=env, timeout=120)


PROFILES = {  # how the password reaches the profile
    "url": lambda host: secret_profile(f"redis://:{PASSWORD}@{host}/0"),
    "url_user": lambda host: secret_profile(f"redis://app:{PASSWORD}@{host}/0"),
    "password_field": lambda host: secret_profile(f"redis://{host}/0", PASSWORD),
    "secret_env_var": lambda host: secret_profile(f"redis://{host}/0", SECRET_ENV),
}
COMMANDS = {
    "sync": ["sync"],
    "sync_json": ["sync", "--json"],
    "get": ["get", "customer_orders", "-e", "customer_id=1"],
    "get_json": ["get", "customer_orders", "-e", "customer_id=1", "--json"],
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_error_with_redis_down_hides_password(profile: str, command: str,
                                                  shop_dir: Path) -> None:
    port = free_port()  # nothing listens there
    (shop_dir / "profiles.yml").write_text(PROFILES[profile](f"127.0.0.1:{port}"))
    done = run(shop_dir, *COMMANDS[command])
    assert done.returncode == 4, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert f"redis://{'app' if profile == 'url_user' else ''}:***@127.0.0.1:{port}/0" in \
        " ".join(done.stderr.split())


@pytest.mark.parametrize("command", ["sync", "get_json"])
def test_wrong_password_hides_it(command: str, shop_dir: Path,
                                 password_redis: PasswordRedis) -> None:
    wrong = "Wr0ng-" + PASSWORD[::-1]
    (shop_dir / "profiles.yml").write_text(
        secret_profile(f"redis://:{wrong}@127.0.0.1:{password_redis.port}/0"))
    done = run(shop_dir, *COMMANDS[command])
    assert done.returncode == 4, done.stderr
    assert "password" in done.stderr.lower()  # redis says why: the message stays useful
    assert wrong not in done.stdout + done.stderr and PASSWORD not in done.stdout + done.stderr


def test_serve_hides_password_in_start_up_line_and_http_bodies(
        shop_dir: Path, password_redis: PasswordRedis) -> None:
    (shop_dir / "profiles.yml").write_text(
        PROFILES["url"](f"127.0.0.1:{password_redis.port}"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSQL_")}
    proc = subprocess.Popen([FSQL, "--project-dir", str(shop_dir), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    bodies: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                # up: /health answers (503 "unavailable" here: nothing was synced yet)
                if httpx.get(f"{base}/health", timeout=1).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fsql serve did not come up"
            time.sleep(0.05)
        request = {"features": ["customer_orders.orders_30d"], "entities": {"customer_id": [1]}}
        with httpx.Client(base_url=base, timeout=10) as http:
            password_redis.stop()  # the store goes down under the running server
            for _ in range(2):
                down = http.post("/get-online-features", json=request)
                assert down.status_code == 503
                bodies.append(down.text)
            health = http.get("/health")
            assert health.status_code == 503
            bodies += [health.text, http.get("/metrics").text]
            bad = http.post("/get-online-features", json={"features": ["nope.x"],
                                                          "entities": {"customer_id": [1]}})
            assert bad.status_code == 400
            bodies.append(bad.text)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert ":***@127.0.0.1" in bodies[0], bodies[0]
    for text in [*bodies, out, err]:
        assert PASSWORD not in text
    assert f"fsql serving redis://:***@127.0.0.1:{password_redis.port}/0" in " ".join(err.split())


def test_serve_with_redis_down_at_start_hides_password(shop_dir: Path) -> None:
    (shop_dir / "profiles.yml").write_text(PROFILES["secret_env_var"](f"127.0.0.1:{free_port()}"))
    done = run(shop_dir, "serve", "--port", str(free_port()))
    assert done.returncode == 4, done.stderr
    assert PASSWORD not in done.stdout + done.stderr and ":***@" in done.stderr


@pytest.mark.parametrize(("url", "password", "shown"), [
    ("redis://:pw@h:1/0", None, "redis://:***@h:1/0"),
    ("redis://user:pw@h:1/0", None, "redis://user:***@h:1/0"),
    ("rediss://h:1/2", "pw", "rediss://:***@h:1/2"),
    ("redis://h:1/0", None, "redis://h:1/0"),
    ("unix:///tmp/r.sock?db=1", None, "unix:///tmp/r.sock?db=1"),
])
def test_display_url(url: str, password: str | None, shown: str) -> None:
    assert display_url(url, password) == shown


def test_redact_masks_url_passwords_and_remembered_values() -> None:
    remember("p@ss word")
    text = redact('cannot reach redis://u:x%40y@h:1 (password "p@ss word") {"pw": "p@ss word"}')
    assert text == 'cannot reach redis://u:***@h:1 (password "***") {"pw": "***"}'
