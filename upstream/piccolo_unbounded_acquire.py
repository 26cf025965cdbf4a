"""Piccolo: a query waits forever for a pooled connection; there is no acquire timeout to set.

PostgresEngine._run_in_pool and PostgresTransaction.get_connection call pool.acquire() with no
timeout, and no engine option passes one (config "timeout" is asyncpg's connect timeout only).
With every connection busy, a query should fail after a bounded wait; it waits for as long as
the connection is held. REPRO_DSN names the server. Exit status 1: the bug is present.
"""

import asyncio
import os

import piccolo
from piccolo.engine.postgres import PostgresEngine
from piccolo.querystring import QueryString

DSN = os.environ.get("REPRO_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
HELD_FOR = 1.0  # seconds the only connection stays busy; stands for "forever"


async def main() -> int:
    engine = PostgresEngine(config={"dsn": DSN, "timeout": 0.5, "command_timeout": 0.5})
    await engine.start_connection_pool(min_size=1, max_size=1)
    held = await engine.pool.acquire()  # e.g. a request stuck in a long transaction
    results = {}
    for name, work in [
        ("query", lambda: engine.run_querystring(QueryString("SELECT 1 AS one"))),
        ("transaction", lambda: engine.transaction().__aenter__()),
    ]:
        task = asyncio.ensure_future(work())
        done, _ = await asyncio.wait([task], timeout=HELD_FOR)
        results[name] = not done
        outcome = "still waiting (expected: a timeout error)" if not done else f"ended: {task.exception()!r}"
        print(f"{name} with the only connection busy, after {HELD_FOR} s: {outcome}")
        task.cancel()
    await engine.pool.release(held)
    await engine.close_connection_pool()
    unbounded = all(results.values())
    print(
        f"piccolo {piccolo.__VERSION__}:",
        "BUG PRESENT" if unbounded else "FIXED",
        f"(pool acquire {'un' if unbounded else ''}bounded)",
    )
    return 1 if unbounded else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
