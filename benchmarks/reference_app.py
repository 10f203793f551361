"""The minimal hand-written online feature server that ``benchmarks/online.py`` compares
``fsql serve`` with.

Same stack as ``fsql serve`` (Starlette on uvicorn with the same server settings, one worker, a
synchronous redis-py client called from the async endpoint, the response serialized with
``orjson``), the same request body, the same Redis keys (the generation fsql's sync published,
read once at start) and the same response (Feast's shape, as ``fsql serve`` returns it):
``metadata.feature_names`` and per column ``values``, ``statuses`` (PRESENT, MISSING, or EXPIRED
past the view's ttl) and ISO ``event_timestamps``. So both do the same job; this one does it
the shortest way: one ``MGET`` of every view's key for every entity per request, ``msgpack``
decode of each value, the event time parsed from each value's 40-byte header, ISO text made
once per value read (not per feature) by ``datetime.isoformat`` behind an ``lru_cache`` (fsql
also remembers ISO texts), and nothing else: no request validation, no key type checks, no
generation check per request (so it would serve deleted keys after a full refresh), no metrics.

    python benchmarks/reference_app.py --redis-url redis://127.0.0.1:6390/0 --namespace bench \\
        --view activity=clicks,spend,channel --ttl activity=2592000 \\
        --view profile=tier,credit_limit,score,country --port 8001
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import time
from typing import Any

import msgpack
import orjson
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HEADER = 40  # fsql's value header: event and created timestamps, 20 digits each
OFFSET = 2**62  # the header's numbers are microseconds since the epoch + 2**62
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@functools.lru_cache(maxsize=100_000)
def iso(micros: int) -> str:
    return (EPOCH + dt.timedelta(microseconds=micros)).isoformat()


def create_app(url: str, namespace: str, views: list[tuple[str, list[str], int | None]],
               key: str = "entity_id") -> Starlette:
    client = redis.Redis.from_url(url)
    prefixes = []
    for view, _, _ in views:
        generation = client.hget(f"{namespace}:v1:{view}:meta", "generation")
        if generation is None:
            raise SystemExit(f"view {view!r} was never synced")
        prefixes.append(f"{namespace}:v1:{view}:{generation.decode()}:")
    names = [key, *[name for _, features, _ in views for name in features]]
    unpack = msgpack.unpackb

    async def get_online_features(request: Request) -> Response:
        ids = orjson.loads(await request.body())["entities"][key]
        count = len(ids)
        raws = client.mget([prefix + str(i) for prefix in prefixes for i in ids])
        now = int(time.time() * 1_000_000)
        results: list[dict[str, Any]] = [{"values": ids, "statuses": ["PRESENT"] * count,
                                          "event_timestamps": [None] * count}]
        for v, (_, features, ttl) in enumerate(views):
            chunk = raws[v * count:(v + 1) * count]
            events = [None if raw is None else int(raw[:20]) - OFFSET for raw in chunk]
            decoded = [None if raw is None else unpack(raw[HEADER:]) for raw in chunk]
            statuses = ["MISSING" if raw is None else "PRESENT" for raw in chunk]
            if ttl is not None:
                for i, event in enumerate(events):
                    if event is not None and now > event + ttl * 1_000_000:
                        decoded[i], statuses[i] = None, "EXPIRED"
            stamps = [None if event is None else iso(event) for event in events]
            for f in range(len(features)):
                results.append({"values": [None if d is None else d[f] for d in decoded],
                                "statuses": statuses, "event_timestamps": stamps})
        return Response(orjson.dumps({"metadata": {"feature_names": names},
                                      "results": results}), media_type="application/json")

    async def health(_: Request) -> Response:
        client.ping()
        return Response(orjson.dumps({"status": "ok"}), media_type="application/json")

    return Starlette(routes=[Route("/get-online-features", get_online_features, methods=["POST"]),
                             Route("/health", health, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--view", action="append", required=True,
                        help="VIEW=feature,feature,... in stored order (repeatable)")
    parser.add_argument("--ttl", action="append", default=[],
                        help="VIEW=SECONDS for a view with a ttl (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    ttls = {name: int(seconds) for name, _, seconds in (t.partition("=") for t in args.ttl)}
    views = [(name, features.split(","), ttls.get(name)) for name, _, features in
             (v.partition("=") for v in args.view)]
    from fsql.http import run_server  # the same uvicorn settings as `fsql serve`

    run_server(create_app(args.redis_url, args.namespace, views), host=args.host,
               port=args.port)


if __name__ == "__main__":
    main()
