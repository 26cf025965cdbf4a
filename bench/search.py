"""Search at scale: ``GET /api/v1/tasks?q=<40 words>`` over 10 000 tasks with 20 KB descriptions.

    uv run python bench/search.py               # seeds once (reused while the seed matches), then measures
    uv run python bench/search.py --reseed      # force a fresh database

Prints p50 / p99 latency per case, with and without the trigram index; asserts nothing.
The database (``taskapi_bench_search``) is created on the server of DATABASE_URL (default
``postgresql://postgres@127.0.0.1:5432/postgres``) and left for the next run.

The text looks like prose: a vocabulary of 40 000 generated words with Zipf frequencies
(a few very common short words, a long tail of rarer longer ones), so trigrams are spread
as in real text. Cases, each a 40-word ``q`` drawn from the texts:
- ``mixed``: 30 words of one task's description and 10 words no text holds (matches nothing);
- ``present``: 40 distinct words of one task's description (that task matches, maybe others);
- ``common``: the 40 most frequent words, which nearly every task holds (the worst case: the index
  cannot narrow anything, every task is read; the statement timeout may turn it into a 400).

"With the index" goes through the app over HTTP (httpx ASGITransport, the real middleware and
auth); "without" runs the same service call inside a transaction that dropped the index (rolled
back afterwards), so the index never has to be rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import seed  # noqa: E402  (bench/seed.py: database creation, migrations, password hashing)

DB_NAME = "taskapi_bench_search"
SEED_VERSION = 1
ROWS = 10_000
DESCRIPTION_CHARS = 20_000  # SPEC: description up to 20 000 characters
VOCABULARY = 40_000
EMAIL = "search-bench@example.com"
PASSWORD = "search-bench-123"
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
# English letter frequencies, in the order of LETTERS.
LETTER_WEIGHTS = [
    12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
    2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1,
]  # fmt: skip


def _vocabulary(rng: random.Random) -> list[str]:
    """Distinct words, most frequent first; frequent words are short, as in prose."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        rank = len(words)
        length = min(14, max(1, int(rng.gauss(2 + min(rank, 20_000) ** 0.18, 1.5))))
        word = "".join(rng.choices(LETTERS, weights=LETTER_WEIGHTS, k=length))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _text(rng: random.Random, vocabulary: list[str], weights: list[float], chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        for word in rng.choices(vocabulary, cum_weights=weights, k=256):
            out.append(word)
            size += len(word) + 1
    text = " ".join(out)[:chars]
    return text.rsplit(" ", 1)[0]


async def _existing(db_url: str) -> dict[str, Any] | None:
    try:
        conn = await asyncpg.connect(db_url, timeout=5)
    except (asyncpg.InvalidCatalogNameError, OSError):
        return None
    try:
        raw = await conn.fetchval("SELECT value FROM bench_meta WHERE key = 'search'")
    except asyncpg.UndefinedTableError:
        return None
    finally:
        await conn.close()
    meta: dict[str, Any] | None = json.loads(raw) if raw else None
    return meta if meta and meta.get("version") == SEED_VERSION else None


async def _fill(db_url: str, password_hash: str) -> dict[str, Any]:
    rng = random.Random(20261130)
    vocabulary = _vocabulary(rng)
    cumulative: list[float] = []
    total = 0.0
    for rank in range(len(vocabulary)):
        total += 1 / (rank + 1) ** 1.07
        cumulative.append(total)
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        user_id = await conn.fetchval(
            "INSERT INTO app_user (email, display_name, password_hash) VALUES ($1, 'Search', $2) RETURNING id",
            EMAIL,
            password_hash,
        )
        started = time.monotonic()
        rows = []
        for i in range(ROWS):
            title = _text(rng, vocabulary, cumulative, rng.randint(20, 80)).capitalize()
            description = _text(rng, vocabulary, cumulative, DESCRIPTION_CHARS)
            rows.append((user_id, title, description))
            if len(rows) == 1000:
                await conn.copy_records_to_table("task", records=rows, columns=["owner", "title", "description"])
                rows.clear()
                print(f"  {i + 1:>6,} tasks ({time.monotonic() - started:.0f} s)", flush=True)
        meta = {"version": SEED_VERSION, "user_id": user_id, "common": vocabulary[:40]}
        await conn.execute("CREATE TABLE bench_meta (key text PRIMARY KEY, value text NOT NULL)")
        await conn.execute("INSERT INTO bench_meta VALUES ('search', $1)", json.dumps(meta))
    finally:
        await conn.close()
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        print("  VACUUM ANALYZE", flush=True)
        await conn.execute("VACUUM ANALYZE", timeout=3600)
    finally:
        await conn.close()
    return meta


def ensure_seeded(reseed: bool) -> tuple[str, dict[str, Any]]:
    admin_url = seed.server_url()
    db_url = seed.with_database(admin_url, DB_NAME)
    if not reseed and (meta := asyncio.run(_existing(db_url))) is not None:
        print(f"seed: reusing {DB_NAME}")
        seed._migrate(db_url)  # the schema of this checkout (new migrations since the seed)
        return db_url, meta
    print(f"seed: creating {DB_NAME} with {ROWS:,} tasks of {DESCRIPTION_CHARS:,} characters")
    asyncio.run(seed._create_database(admin_url, DB_NAME))
    seed._migrate(db_url)
    meta = asyncio.run(_fill(db_url, seed._hash_password(PASSWORD)))
    return db_url, meta


async def _cases(db_url: str, meta: dict[str, Any], per_case: int) -> dict[str, list[str]]:
    """``per_case`` queries per case, drawn from the stored texts (fixed seed: same every run)."""
    rng = random.Random(7)
    conn = await asyncpg.connect(db_url)
    try:
        texts = [r["d"] for r in await conn.fetch("SELECT description AS d FROM task ORDER BY id LIMIT 200")]
    finally:
        await conn.close()
    cases: dict[str, list[str]] = {"mixed": [], "present": [], "common": []}
    for _ in range(per_case):
        words = sorted(set(rng.choice(texts).split()))
        absent = ["".join(rng.choices("qxzjkv", k=8)) for _ in range(10)]
        mixed = rng.sample(words, 30) + absent
        rng.shuffle(mixed)
        cases["mixed"].append(" ".join(mixed))
        cases["present"].append(" ".join(rng.sample(words, 40)))
        common = list(meta["common"])
        rng.shuffle(common)
        cases["common"].append(" ".join(common))
    return cases


def _summary(times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.1f} ms   p99 {p99:7.1f} ms   max {ordered[-1]:7.1f} ms"


async def measure(db_url: str, meta: dict[str, Any], per_case: int) -> None:
    os.environ.update(DATABASE_URL=db_url, TASKAPI_ENV="production", TASKAPI_SECRET_KEY="search-bench-" + "x" * 40)
    from app.settings import get_settings

    get_settings.cache_clear()  # seeding read the settings before DATABASE_URL was set
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    from app.asgi import create_app
    from app.db import close_pool, get_engine, start_pool
    from app.services import tasks

    settings = get_settings()
    await start_pool(settings)
    engine = get_engine()
    indexed = bool(await engine.fetch("SELECT 1 FROM pg_indexes WHERE indexname = 'task_search_trgm'"))
    cases = await _cases(db_url, meta, per_case)
    print(f"statement_timeout {settings.db_statement_timeout_ms} ms; {per_case} queries per case, each 40 words")
    print(f"trigram index present: {indexed}")
    app = create_app()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            login = await client.post("/api/v1/auth/token", json={"email": EMAIL, "password": PASSWORD})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            for name, queries in cases.items():
                times: list[float] = []
                statuses: dict[int, int] = {}
                matched = 0
                for q in queries:
                    started = time.perf_counter()
                    response = await client.get("/api/v1/tasks", params={"q": q, "limit": 20}, headers=headers)
                    times.append((time.perf_counter() - started) * 1000)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        matched += response.json()["total"]
                print(f"HTTP, with index    {name:8} {_summary(times)}   statuses {statuses}   matches {matched}")

        if indexed:
            for name, queries in cases.items():
                times = []
                outcomes: dict[str, int] = {}
                for q in queries:
                    started = time.perf_counter()
                    try:
                        async with engine.transaction():
                            await engine.run_ddl("DROP INDEX task_search_trgm")
                            started = time.perf_counter()
                            await tasks.list_tasks(
                                meta["user_id"], tasks.TaskFilters(q=q), sort=None, limit=20, offset=0
                            )
                            times.append((time.perf_counter() - started) * 1000)
                            outcomes["ok"] = outcomes.get("ok", 0) + 1
                            raise _Rollback
                    except _Rollback:
                        pass
                    except Exception as exc:  # the statement timeout: the API answers 400
                        times.append((time.perf_counter() - started) * 1000)
                        outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                print(f"service, no index   {name:8} {_summary(times)}   outcomes {outcomes}")
    finally:
        await close_pool()


class _Rollback(Exception):
    pass


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark 40-word q over 10 000 long tasks")
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--queries", type=int, default=50, help="queries per case (default 50)")
    args = parser.parse_args()
    db_url, meta = ensure_seeded(args.reseed)
    asyncio.run(measure(db_url, meta, args.queries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
