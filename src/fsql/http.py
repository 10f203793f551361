"""``fsql serve``: the online features over HTTP (Starlette on uvicorn), one code path with the
Python API (``OnlineService.get``).

    POST /get-online-features   {"features": ["view.feature", ...] | "feature_service": "name",
                                 "entities": {"customer_id": [1, 2]}}
    GET  /health                200 when the server can serve (body: "ok" or "degraded" with
                                the views it cannot serve), else 503; answered within ~1 s;
                                header ``fsql-worker`` names the process that answered
    GET  /metrics               Prometheus metrics (text format; see fsql.metrics)
    GET  /openapi.json          the OpenAPI description of this API (fsql.openapi)

Responses follow Feast's shape: ``metadata.feature_names`` lists the entity columns then the
features, and ``results[i]`` holds ``values``, ``statuses`` and ``event_timestamps`` for column
``i`` (one entry per requested entity). Every bad request gets a 4xx with ``{"error": "..."}``
and is counted in the metrics (400; 408 for a body slower than the read timeout, 413 for one
over the size limit); a store failure 503; nothing a client sends can stop the server or grow
it without bound. The server re-reads the project definitions when their files change and on SIGHUP.
With ``workers`` > 1 (``fsql serve --workers N``), N processes answer on the same port
(fsql.workers).

A training set whose online views' definitions differ from the ones it was built with gets
``metadata.status`` ``DEFINITION_CHANGED`` and ``metadata.definition_changed`` (the views); with
``--strict`` a 409 instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fsql.errors import FsqlError, OnDemandError, OnlineStoreError, RequestError, did_you_mean
from fsql.loader import ProjectSpec
from fsql.metrics import CONTENT_TYPE, ServeMetrics
from fsql.openapi import SPEC
from fsql.secrets import redact
from fsql.serve import DEFINITION_CHANGED, OnlineService
from fsql.workers import Supervisor

HEALTH_TIMEOUT = 1.0  # seconds a health check waits for the store
PROJECT_FILES = ("features", "models", "macros")  # folders whose files define the project
READ_TIMEOUT = 10.0  # default seconds for a request's headers, and then its body, to arrive
FEATURES_PATH = "/get-online-features"
ENDPOINTS = frozenset((FEATURES_PATH, "/health", "/metrics", "/openapi.json"))
ADHOC_SERVICE, UNKNOWN_SERVICE = "adhoc", "unknown"  # the metrics' service label


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may cost the server (the entity and feature counts are limits of
    ``OnlineService``)."""

    max_body_bytes: int = 1 << 20
    read_timeout: float = READ_TIMEOUT  # seconds for the whole body to arrive


def _dumps(payload: Any) -> bytes:
    try:
        return orjson.dumps(payload)
    except TypeError:  # ints beyond 64 bits (echoed entity keys), lone surrogates in messages
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


class JSONResponse(Response):
    """Starlette's ``JSONResponse`` with orjson (5-15x faster for feature responses)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _dumps(content)


class _Refused(RequestError):
    """A request refused before it was parsed: over the size limit (413) or too slow (408)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


#: the fields of a /get-online-features request body
_FIELDS = ("features", "feature_service", "entities", "request_data")


def _parse(body: bytes) -> tuple[Any, dict[str, Any], Any]:
    try:
        payload = orjson.loads(body)  # strict: no NaN, no lone surrogates, depth <= 1024
    except orjson.JSONDecodeError as err:
        raise RequestError(f"the body must be JSON (UTF-8): {err}") from None
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(set(payload) - set(_FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(unknown)}; "
                           f"{did_you_mean(unknown[0], _FIELDS)}use: {', '.join(_FIELDS)}")
    features, service = payload.get("features"), payload.get("feature_service")
    if (features is None) == (service is None):
        raise RequestError("give exactly one of 'features' (a list of names) or "
                           "'feature_service' (a training set name)")
    if service is not None and not isinstance(service, str):
        raise RequestError("'feature_service' must be a string")
    if features is not None and (not isinstance(features, list)
                                 or not all(isinstance(f, str) for f in features)):
        raise RequestError("'features' must be a list of strings")
    entities = payload.get("entities")
    if not isinstance(entities, dict):
        raise RequestError("'entities' must be an object: {\"join_key\": [values...]}")
    request_data = payload.get("request_data")
    if request_data is not None and not isinstance(request_data, dict):
        raise RequestError("'request_data' must be an object: {\"field\": [values...]}")
    return service if service is not None else features, entities, request_data


async def _body(request: Request, limits: Limits) -> bytes:
    """The request body, refused once it passes ``max_body_bytes`` (by its Content-Length
    before any of it is read) or when it takes longer than ``read_timeout`` to arrive.

    Read straight from the ASGI ``receive`` under a plain timer that cancels this task: a
    third of the cost of ``asyncio.timeout`` over ``Request.stream()`` (measured in-process),
    which mattered at 1-entity requests."""

    def too_large() -> _Refused:
        return _Refused(413, f"the body is larger than {limits.max_body_bytes} bytes "
                             "(fsql serve --max-body-bytes)")

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_large()
    task = asyncio.current_task()
    assert task is not None, "a request is always handled in a task"
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        task.cancel()

    timer = asyncio.get_running_loop().call_later(limits.read_timeout, expire)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except asyncio.CancelledError:
        if not expired:
            raise  # cancelled for another reason (shutdown): not ours to answer
        task.uncancel()
        raise _Refused(408, f"the body did not arrive within {limits.read_timeout:g} s "
                            "(fsql serve --read-timeout)") from None
    finally:
        timer.cancel()


def create_app(service: OnlineService, limits: Limits | None = None,
               reloader: Reloader | None = None, strict: bool = False) -> Starlette:
    """The ASGI app for one ``OnlineService``; ``reloader`` (started with the app) swaps in
    new project definitions while it serves. ``strict`` refuses (409) a training set whose
    online views' definitions differ from the ones it was built with."""
    limits = limits or Limits()
    metrics = ServeMetrics(lambda: service.sync_state(HEALTH_TIMEOUT))
    openapi = _dumps(SPEC)

    async def features_endpoint(request: Request) -> Response:
        started = time.perf_counter()
        headers: dict[str, str] = {}
        name = UNKNOWN_SERVICE
        try:
            features, entities, request_data = _parse(await _body(request, limits))
            name = _service_label(features, service.spec)
            result = service.get(features, entities, request_data=request_data)
            if strict and result.definition_changed:
                status = 409
                payload = {"error": f"training set {features!r} was built with other "
                           "definitions of: " + ", ".join(result.definition_changed)
                           + "; rebuild it (fsql build) and retrain, or serve without --strict",
                           "status": DEFINITION_CHANGED,
                           "definition_changed": result.definition_changed}
            else:
                status, payload = 200, result.to_json()
                metrics.record_values(name, result.statuses, result.corrupt)
        except _Refused as err:  # the rest of the body is unread: do not reuse the connection
            status, payload = err.status, {"error": redact(str(err))}
            headers["connection"] = "close"
        except ClientDisconnect:
            status, payload = 400, {"error": "the client went away"}
        except OnlineStoreError as err:
            status, payload = 503, {"error": redact(str(err))}
            metrics.store_errors.inc()
        except OnDemandError as err:
            status, payload = 422, {"error": redact(str(err))}
        except FsqlError as err:
            status, payload = 400, {"error": redact(str(err))}
        except Exception:  # noqa: BLE001 - a bug in fsql: log it, answer 500, keep serving
            sys.stderr.write(redact(traceback.format_exc()))
            status, payload = 500, {"error": "internal error (logged)"}
        metrics.record(FEATURES_PATH, name, status, time.perf_counter() - started)
        return JSONResponse(payload, status_code=status, headers=headers)

    async def health(_: Request) -> Response:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:  # off the event loop, and abandoned (not awaited) if it overruns
            ok, report = await asyncio.wait_for(
                loop.run_in_executor(None, service.health, HEALTH_TIMEOUT),
                HEALTH_TIMEOUT + 0.5)
        except TimeoutError:
            ok, report = False, {"status": "unavailable", "error": "the online store did not "
                                 f"answer within {HEALTH_TIMEOUT:g} s"}
        status = 200 if ok else 503
        metrics.record("/health", "", status, time.perf_counter() - started)
        return JSONResponse(report, status_code=status,
                            headers={"fsql-worker": str(os.getpid())})  # a forked worker's

    async def metrics_endpoint(_: Request) -> Response:
        started = time.perf_counter()
        metrics.record("/metrics", "", 200)  # counted before the scrape: it shows itself
        loop = asyncio.get_running_loop()  # off the event loop: it reads the sync metadata
        text = await loop.run_in_executor(None, metrics.exposition)
        metrics.latency.labels("/metrics", "").observe(time.perf_counter() - started)
        return Response(text, media_type=CONTENT_TYPE)

    async def openapi_endpoint(_: Request) -> Response:
        metrics.record("/openapi.json", "", 200)
        return Response(openapi, media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        metrics.record(path if path in ENDPOINTS else "other", "", exc.status_code)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if reloader is None:
            yield
            return
        loop = asyncio.get_running_loop()
        reloader.start(lambda spec: loop.call_soon_threadsafe(service.use, spec))
        try:
            yield
        finally:
            reloader.stop()

    return Starlette(routes=[
        Route(FEATURES_PATH, features_endpoint, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ], exception_handlers={HTTPException: http_error}, lifespan=lifespan)


def _service_label(features: str | list[str], spec: ProjectSpec) -> str:
    """The metrics' ``service`` label: a known training set's name, ``adhoc`` for a feature
    list, else ``unknown`` (never a client's text: the label set stays bounded)."""
    if not isinstance(features, str):
        return ADHOC_SERVICE
    return features if features in spec.training_sets else UNKNOWN_SERVICE


class Reloader:
    """Re-reads the project definitions when a project file changes (a poll of their
    modification times every ``interval`` seconds, on a thread) or when asked (SIGHUP), and
    hands each new ``ProjectSpec`` to the server. A load that fails (a broken YAML file) keeps
    the previous definitions and logs the error."""

    def __init__(self, root: Path, load: Callable[[], ProjectSpec],
                 interval: float = 1.0) -> None:
        self.root, self.load, self.interval = root, load, interval
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Reload now (the SIGHUP handler: only sets a flag)."""
        self._wake.set()

    def start(self, apply: Callable[[ProjectSpec], Any]) -> None:
        self._thread = threading.Thread(target=self._run, args=(apply,), name="fsql-reload",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, apply: Callable[[ProjectSpec], Any]) -> None:
        seen = self.signature()
        while not self._stopped.is_set():
            asked = self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopped.is_set():
                return
            current = self.signature()
            if not asked and current == seen:
                continue
            seen = current
            try:
                spec = self.load()
            except Exception as err:  # noqa: BLE001 - whatever it is, keep serving
                _log(f"reload failed; still serving the previous definitions:\n{err}")
                continue
            apply(spec)
            _log(f"reloaded the definitions ({len(spec.views)} views)")

    def signature(self) -> tuple[tuple[str, int, int], ...]:
        """(path, mtime, size) of every project file: any edit, addition or removal shows."""
        found: list[tuple[str, int, int]] = []
        for path in (self.root / "fsql_project.yml", *(self.root / d for d in PROJECT_FILES)):
            for entry in _walk(path):
                found.append(entry)
        return tuple(sorted(found))


def _walk(path: Path) -> Iterator[tuple[str, int, int]]:
    try:
        info = path.stat()
    except OSError:  # absent, or removed meanwhile
        return
    if not path.is_dir():
        yield str(path), info.st_mtime_ns, info.st_size
        return
    with contextlib.suppress(OSError):
        for name in os.listdir(path):
            yield from _walk(path / name)


def _log(message: str) -> None:
    print(f"fsql serve: {message}", file=sys.stderr, flush=True)


class _HeadersTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request line and headers have not
    arrived ``headers_timeout`` seconds after it opened or after the request began (uvicorn
    itself holds a silent new connection, or half-sent headers, forever)."""

    headers_timeout = 10.0
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._timer = self.loop.call_later(self.headers_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server with fsql's signals: SIGTERM and SIGINT stop it gracefully and are not
    re-raised afterwards (uvicorn re-raises them, which kills the process before its clean-up,
    leaving an embedded redis-server behind); SIGHUP calls ``on_hangup`` (a reload). A worker
    of several stops on SIGTERM only (its parent relays SIGINT)."""

    def __init__(self, config: uvicorn.Config, on_hangup: Callable[[], None] | None,
                 stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        super().__init__(config)
        self.on_hangup = on_hangup
        self.stop_signals = stop_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers: dict[int, Callable[[int, FrameType | None], None]] = {
            sig: self.handle_exit for sig in self.stop_signals}
        if self.on_hangup is not None:
            hangup = self.on_hangup
            handlers[signal.SIGHUP] = lambda _sig, _frame: hangup()
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000,
               on_hangup: Callable[[], None] | None = None,
               headers_timeout: float = READ_TIMEOUT, workers: int = 1) -> None:
    """Run an ASGI app the way ``fsql serve`` does: uvicorn with its fastest event loop
    (uvloop if installed) and the httptools parser, no access log, no ``Server`` header, idle
    keep-alive connections closed after 5 s, connections whose headers do not arrive within
    ``headers_timeout`` closed. ``workers`` > 1: that many processes forked from this one,
    sharing its listening socket (fsql.workers). Returns after SIGTERM or SIGINT (graceful:
    requests in flight finish, for at most 10 s)."""
    import gc

    gc.freeze()  # what start-up loaded lives as long as the server: keep it out of collections
    protocol = type("HeadersTimeoutProtocol", (_HeadersTimeoutProtocol,),
                    {"headers_timeout": headers_timeout})
    config = uvicorn.Config(app, host=host, port=port, loop="auto", http=protocol,
                            log_level="warning", access_log=False, server_header=False,
                            timeout_keep_alive=5, timeout_graceful_shutdown=10)
    if workers == 1:
        _Server(config, on_hangup).run()
        return
    config.load()  # once, before the fork
    sock = config.bind_socket()

    def work(replacement: bool) -> None:
        if replacement and on_hangup is not None:
            on_hangup()  # reload: the definitions forked from the parent may be stale
        _Server(config, on_hangup, (signal.SIGTERM,)).run(sockets=[sock])

    try:
        Supervisor(workers, work).run()
    finally:
        sock.close()
