"""A real ``fsql serve`` process for tests: started on a free port, stopped by SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from tests.redis_server import free_port

FSQL = str(Path(sys.executable).parent / "fsql")
URL = "/get-online-features"


@dataclass
class Served:
    """One running ``fsql serve`` process."""

    proc: subprocess.Popen[str]
    port: int
    stderr: str = ""  # once it has exited

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base + URL, json=body, timeout=10)

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        return httpx.get(self.base + path, timeout=timeout)


@contextmanager
def serving(root: Path, *options: str) -> Iterator[Served]:
    """``fsql serve`` on ``root`` until the block ends (then SIGTERM); waits until it answers
    HTTP (any status: /health may say 503)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSQL_")}
    proc = subprocess.Popen([FSQL, "--project-dir", str(root), "serve", "--port", str(port),
                             *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    served = Served(proc, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                served.get("/metrics", timeout=1)
                break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fsql serve did not come up"
            time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            _, served.stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, served.stderr = proc.communicate()


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(text: str) -> Samples:
    """A Prometheus text exposition: sample name -> its (sorted) labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value)
    return samples


def outcomes(text: str) -> dict[str, int]:
    """Requests to the features endpoint (or unknown paths) in ``/metrics``' text, by outcome:
    ok (2xx), client_error (4xx), server_error (5xx)."""
    counts = {"ok": 0, "client_error": 0, "server_error": 0}
    for labels, value in scrape(text).get("fsql_http_requests_total", {}).items():
        found = dict(labels)
        if found["endpoint"] in (URL, "other"):
            code = int(found["code"])
            outcome = "ok" if code < 400 else "client_error" if code < 500 else "server_error"
            counts[outcome] += int(value)
    return counts


def assert_documented(spec: dict[str, Any], path: str, method: str, response: Any) -> None:
    """``response`` (an httpx/TestClient response to ``method path``) has a status code, media
    type and body that ``spec`` (the served OpenAPI description) documents for that path."""
    documented = spec["paths"][path][method]["responses"]
    code = str(response.status_code)
    assert code in documented, f"{method.upper()} {path}: {code} is not documented"
    media = response.headers["content-type"].split(";")[0]
    content = documented[code]["content"]
    assert media in content, f"{method.upper()} {path} {code}: {media} is not documented"
    schema = {**content[media]["schema"], "components": spec["components"]}
    body = response.text if media == "text/plain" else response.json()
    jsonschema.Draft202012Validator(schema).validate(body)
