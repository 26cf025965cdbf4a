"""CPU per request of taskapi and the raw app, in one process, without HTTP or wrk.

    uv run python bench/inprocess.py                      # GET one task, 7 rounds of 2000 requests
    uv run python bench/inprocess.py --path '/api/v1/tasks?limit=50&paginate=cursor' --requests 500
    uv run python bench/inprocess.py --method POST --path /api/v1/tasks --body '{"title": "t", "project_id": {project}}'

Both ASGI apps are started in this process (their lifespans, pools and all) and called directly with
a request scope (GET, or a write with a JSON body; tasks it creates are deleted afterwards),
alternating the order every round; each round's process CPU time is divided by its requests.
PostgreSQL's own time is not in it, and neither is uvicorn's, so the numbers are lower than
bench/run.py's server CPU column, but two versions of the code can be compared to a few per cent on
a noisy machine: the ratio raw / taskapi is what to read. This is how the changes
README "Performance" credits to in-process measurement were measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seed import BENCH_RATE_LIMIT, BenchData, ensure_seeded  # noqa: E402

Scope = dict[str, Any]


def get_scope(path: str, token: bytes, method: str = "GET", body: bytes = b"") -> Scope:
    path, _, query = path.partition("?")
    headers = [(b"host", b"localhost"), (b"authorization", b"Bearer " + token)]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: Any, scope: Scope, body: bytes = b"") -> int:
    """One request through the whole ASGI app; the response status."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def lifespan(app: Any) -> asyncio.Queue[dict[str, Any]]:
    """Start the app's lifespan; put a shutdown message in the returned queue to stop it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    return inbox


async def main(args: argparse.Namespace, data: BenchData) -> None:
    os.environ.update(DATABASE_URL=data.db_url, TASKAPI_SECRET_KEY="in-process-" + "x" * 40, TASKAPI_ENV="production")
    # High enough never to refuse, so the limiter's per-request work is in the numbers.
    os.environ.setdefault("TASKAPI_RATE_LIMIT_USER", BENCH_RATE_LIMIT)
    from app.settings import get_settings

    get_settings.cache_clear()  # seeding (password hashing) read the settings before DATABASE_URL was set
    from app.asgi import create_app
    from app.auth import issue_token
    from bench import raw_app

    conn = await asyncpg.connect(data.db_url)
    generation = await conn.fetchval("SELECT token_generation FROM app_user WHERE id = $1", data.user_id)
    await conn.close()
    token = issue_token(get_settings(), data.user_id, generation).encode()
    apps = {"taskapi": create_app(), "raw": raw_app.app}
    stops = [await lifespan(app) for app in apps.values()]

    rnd = random.Random(1)

    body = args.body.replace("{project}", str(data.project_ids[0])).encode()

    def scope() -> Scope:
        return get_scope(args.path.replace("{id}", str(rnd.randint(1, data.max_task_id))), token, args.method, body)

    for name, app in apps.items():  # warm-up: prepared statements, DTO code, pools
        for _ in range(200):
            status = await call(app, scope(), body)
            if status not in (200, 201):
                raise RuntimeError(f"{name} answered {status} to {args.method} {args.path}")
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for round_no in range(args.rounds):
        order = list(apps.items()) if round_no % 2 == 0 else list(reversed(apps.items()))
        for name, app in order:
            started = time.process_time()
            for _ in range(args.requests):
                await call(app, scope(), body)
            cpu[name].append((time.process_time() - started) / args.requests * 1e6)
    ratios = [raw / ours for raw, ours in zip(cpu["raw"], cpu["taskapi"], strict=True)]
    print(f"{args.method} {args.path}: {args.rounds} rounds of {args.requests} requests, {args.rows:,} tasks")
    for name, values in cpu.items():
        print(f"  {name:8s} CPU per request: median {statistics.median(values):7.1f} us  (min {min(values):.1f})")
    print(f"  raw / taskapi CPU: median {statistics.median(ratios):.3f}  (rounds {min(ratios):.3f}-{max(ratios):.3f})")
    for stop in stops:
        await stop.put({"type": "lifespan.shutdown"})
    if args.method == "POST":
        conn = await asyncpg.connect(data.db_url)
        await conn.execute("DELETE FROM task WHERE id > $1", data.last_seed_id)
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="/api/v1/tasks/{id}", help="{id} is a random task id")
    parser.add_argument("--method", default="GET", choices=["GET", "POST", "PATCH"])
    parser.add_argument("--body", default="", help="a JSON body; {project} is one of the user's projects")
    parser.add_argument("--requests", type=int, default=2000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=100_000, help="the seeded database to use (bench/seed.py)")
    arguments = parser.parse_args()
    uvloop.run(main(arguments, ensure_seeded(arguments.rows)))
