"""Fixtures for the security tests: a real redis-server that requires a password, and
profiles.yml text whose online store holds a secret."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.redis_server import free_port, redis_binary

PASSWORD = "s3cr3t-Pw-7f2a9c"  # distinctive, so a grep for it finds only a leak


@dataclass
class PasswordRedis:
    """A redis-server started with ``--requirepass PASSWORD`` on a free loopback port."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, directory: Path) -> PasswordRedis:
        directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(directory), "--save", "", "--appendonly", "no", "--requirepass", PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=PASSWORD, socket_timeout=5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[PasswordRedis]:
    server = PasswordRedis(free_port()).start(tmp_path / "redis")
    yield server
    server.stop()


def secret_profile(url: str, password: str | None = None) -> str:
    """profiles.yml of project ``shop``: online store at ``url`` (may hold a password) with an
    optional ``password:`` line, in a fresh namespace."""
    extra = f"\n        password: \"{password}\"" if password else ""
    return ("shop:\n  target: dev\n  outputs:\n    dev:\n      offline: {type: duckdb}\n"
            f"      online:\n        type: redis\n        url: \"{url}\"{extra}\n"
            f"        namespace: sec-{uuid.uuid4().hex[:12]}\n        socket_timeout: 2\n")


@pytest.fixture
def shop_dir(online_template: Path, tmp_path: Path) -> Path:
    """A private copy of the example project (data ending today), without a profiles.yml."""
    root = tmp_path / "shop"
    shutil.copytree(online_template, root, ignore=shutil.ignore_patterns("target"))
    return root
