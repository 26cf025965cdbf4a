"""Webhook deliveries per second on one worker, to a local receiver.

    uv run python bench/webhooks.py                        # 3000 deliveries over 4 webhooks
    uv run python bench/webhooks.py --deliveries 10000 --webhooks 1 --concurrency 64

Makes a fresh database (``taskapi_bench_webhooks``) on the server of DATABASE_URL (default
``postgresql://postgres@127.0.0.1:5432/postgres``), queues the deliveries (each an event-sized
JSON body, ~700 bytes) as the event trigger would, starts a receiver in another process
(tests/webhook_receiver.py: HTTP/1.1 keep-alive, answers 200) and runs one
``app.webhooks_worker.WebhookWorker`` until every delivery is delivered. Prints deliveries/s,
the worker process's CPU per delivery, and checks that each was received exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import seed  # noqa: E402  (bench/seed.py: database creation, migrations)

DB_NAME = "taskapi_bench_webhooks"
PAYLOAD = {
    "type": "task.updated",
    "occurred_at": "2026-11-30T14:00:00.123456Z",
    "actor_id": 1,
    "project_id": 1,
    "object": {
        "id": 1,
        "project_id": 1,
        "parent_id": None,
        "title": "Write the quarterly report for the steering committee",
        "description": "Collect the numbers from finance, draft the summary, circulate for review. " * 3,
        "status": "in_progress",
        "priority": 3,
        "due_at": "2026-12-15T17:00:00Z",
        "completed_at": None,
        "position": 4,
        "labels": [{"id": 1, "name": "work", "color": "#3366ff"}],
        "assignee_ids": [1],
        "created_by": 1,
        "version": 7,
        "created_at": "2026-11-01T09:00:00Z",
        "updated_at": "2026-11-30T14:00:00.123456Z",
    },
    "changes": {"status": ["todo", "in_progress"]},
}


async def _receiver() -> None:
    """The receiver process: prints its port, then serves until stdin closes."""
    from tests.webhook_receiver import Receiver

    async with Receiver() as receiver:
        print(receiver.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(len(receiver.requests), len({r.headers["webhook-id"] for r in receiver.requests}), flush=True)


async def _bench(args: argparse.Namespace, receiver_url: str) -> dict[str, float]:
    from app.services import webhooks
    from app.settings import get_settings
    from app.webhooks_worker import WebhookWorker

    db = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        user_id = await db.fetchval(
            "INSERT INTO app_user (email, display_name, password_hash) VALUES ('bench@example.com', 'Bench', 'x')"
            " RETURNING id"
        )
        from app.db import close_pool, start_pool

        settings = get_settings()
        await start_pool(settings)
        try:
            ids = []
            for _ in range(args.webhooks):
                hook, _, _ = await webhooks.create_webhook(
                    user_id, url=receiver_url, events=["*"], project_id=None, allow_private=True
                )
                ids.append(hook.id)
        finally:
            await close_pool()
        await db.execute(
            "INSERT INTO webhook_delivery (webhook, event_id, type, message_id, payload)"
            " SELECT ($1::integer[])[1 + i % cardinality($1::integer[])], i, 'task.updated', 'msg_bench_' || i,"
            " jsonb_set($2::jsonb, '{id}', to_jsonb(i)) FROM generate_series(1, $3) i",
            ids,
            json.dumps(PAYLOAD),
            args.deliveries,
        )
        worker = WebhookWorker(
            replace(
                settings,
                webhooks=replace(
                    settings.webhooks, allow_private=True, concurrency=args.concurrency, per_webhook=args.per_webhook
                ),
            )
        )
        cpu, wall = time.process_time(), time.perf_counter()
        await worker.run_until_idle()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await worker.stop()
        statuses = dict(await db.fetch("SELECT status, count(*) FROM webhook_delivery GROUP BY status"))
    finally:
        await db.close()
    delivered = statuses.get("delivered", 0)
    assert statuses == {"delivered": args.deliveries}, statuses
    return {"delivered": delivered, "seconds": wall, "per_second": delivered / wall, "cpu_ms": cpu * 1000 / delivered}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--webhooks", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--per-webhook", type=int, default=8)
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(_receiver())
        return 0

    admin_url = seed.server_url()
    db_url = seed.with_database(admin_url, DB_NAME)
    asyncio.run(seed._create_database(admin_url, DB_NAME))
    seed._migrate(db_url)
    os.environ.update(DATABASE_URL=db_url, TASKAPI_ENV="production", TASKAPI_SECRET_KEY="webhook-bench-" + "x" * 40)
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None and receiver.stdin is not None
    port = int(receiver.stdout.readline())
    try:
        result = asyncio.run(_bench(args, f"http://127.0.0.1:{port}/hook"))
    finally:
        receiver.stdin.close()
        received, distinct = map(int, receiver.stdout.readline().split())
        receiver.wait(timeout=10)
    print(
        f"{result['delivered']} deliveries to {args.webhooks} webhook(s), concurrency {args.concurrency}"
        f" (per webhook {args.per_webhook}): {result['seconds']:.2f} s, {result['per_second']:.0f} deliveries/s,"
        f" worker CPU {result['cpu_ms']:.2f} ms per delivery; receiver got {received} requests, {distinct} distinct"
    )
    return 0 if received == distinct == result["delivered"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
