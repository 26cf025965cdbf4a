"""``q`` on GET /api/v1/tasks: semantics, the word cap, the trigram index, and a too-costly search.

SPEC: words that must all appear, case-insensitively, in title or description (substrings).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.services import tasks as task_service
from tests.api.problems import assert_problem, run_sql
from tests.conftest import DATABASE_URL
from tests.serverproc import server_env, start_server

TASKS = "/api/v1/tasks"


async def _create(client: httpx.AsyncClient, user: Any, items: list[dict[str, Any]]) -> dict[str, int]:
    response = await client.post(f"{TASKS}/bulk", json={"tasks": items}, headers=user.headers)
    assert response.status_code == 201, response.text
    return {t["title"]: t["id"] for t in response.json()["items"]}


async def _found(client: httpx.AsyncClient, user: Any, q: str) -> set[str]:
    response = await client.get(TASKS, params={"q": q, "limit": 100}, headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    return {t["title"] for t in body["items"]}


WORLD = [
    {"title": "Buy milk", "description": "whole, from the Farmers market"},
    {"title": "Call the BANK", "description": "about the mortgage"},
    {"title": "Écrire à Zoë", "description": "lettre de remerciement"},
    {"title": "Rates 100%", "description": "discount_code applies"},
    {"title": "Plain", "description": "nothing special here"},
    {"title": "Path", "description": r"C:\temp\report"},
]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("milk", {"Buy milk"}),  # in the title
        ("farmers", {"Buy milk"}),  # in the description, other case
        ("MILK market", {"Buy milk"}),  # one word in each: still all words
        ("milk mortgage", set()),  # each word in a different task: no task holds both
        ("ank", {"Call the BANK"}),  # substrings
        ("the", {"Buy milk", "Call the BANK"}),
        ("ÉCRIRE zoË", {"Écrire à Zoë"}),  # Unicode case folding, not ASCII only
        ("100%", {"Rates 100%"}),  # % is literal, not a wildcard
        ("0%", {"Rates 100%"}),
        ("%", {"Rates 100%"}),
        ("discount_code", {"Rates 100%"}),  # _ is literal, not any character
        ("t_e", set()),
        ("temp\\report", {"Path"}),  # backslash is literal, not LIKE's escape
        ("milk milk MILK", {"Buy milk"}),  # repeated words change nothing
        ("buy\tmilk", {"Buy milk"}),  # any whitespace separates words
        ("milk the", {"Buy milk"}),  # "the" also in its description
    ],
)
async def test_q_semantics(client, alice, q, expected):
    await _create(client, alice, WORLD)
    assert await _found(client, alice, q) == expected


async def test_q_words_do_not_match_across_title_and_description(client, alice):
    """The title and description are searched as one text joined by a space, so a word (which
    holds no whitespace) cannot match across the join."""
    await _create(client, alice, [{"title": "abc", "description": "def"}])
    assert await _found(client, alice, "abcdef") == set()
    assert await _found(client, alice, "abc def") == {"abc"}


async def test_q_sees_only_the_callers_tasks(client, alice, bob):
    await _create(client, alice, [{"title": "alpha shared word"}])
    await _create(client, bob, [{"title": "bravo shared word"}])
    assert await _found(client, alice, "shared") == {"alpha shared word"}


async def test_q_works_with_cursor_pages(client, alice):
    await _create(client, alice, [{"title": f"needle {i}"} for i in range(5)] + [{"title": "hay"}])
    first = await client.get(
        TASKS, params={"q": "needle", "paginate": "cursor", "limit": 3, "sort": "id"}, headers=alice.headers
    )
    assert first.status_code == 200, first.text
    rest = await client.get(
        TASKS,
        params={"q": "needle", "cursor": first.json()["next_cursor"], "limit": 3, "sort": "id"},
        headers=alice.headers,
    )
    titles = [t["title"] for t in first.json()["items"] + rest.json()["items"]]
    assert titles == [f"needle {i}" for i in range(5)]


async def test_q_word_cap(client, alice):
    cap = task_service.MAX_SEARCH_WORDS
    await _create(client, alice, [{"title": " ".join(f"w{i}" for i in range(cap + 1))}])
    at_cap = " ".join(f"w{i}" for i in range(cap))
    assert len(await _found(client, alice, at_cap)) == 1
    over = await client.get(TASKS, params={"q": at_cap + " extra"}, headers=alice.headers)
    body = assert_problem(over, 400, "q")
    assert str(cap) in body["detail"]
    # Repeats are one word: they do not count against the cap.
    assert len(await _found(client, alice, at_cap + " w0 w1")) == 1


async def test_q_length_cap(client, alice):
    word = "x" * task_service.MAX_SEARCH_LENGTH
    assert (await client.get(TASKS, params={"q": word}, headers=alice.headers)).status_code == 200
    assert_problem(await client.get(TASKS, params={"q": word + "x"}, headers=alice.headers), 400, "q")


async def _has_pg_trgm() -> bool:
    rows = await run_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
    return bool(rows)


async def test_migration_creates_the_trigram_index_where_pg_trgm_exists():
    rows = await run_sql("SELECT indexdef FROM pg_indexes WHERE indexname = 'task_search_trgm'")
    if await _has_pg_trgm():
        assert len(rows) == 1
        assert "gin_trgm_ops" in rows[0]["indexdef"]
        assert "lower(" in rows[0]["indexdef"]
    else:  # e.g. the embedded server: no index, and the searches above pass without it
        assert rows == []


async def test_list_with_q_is_served_by_the_trigram_index(client, alice):
    """The statement the service sends for q uses the index where it exists (the expression the
    WHERE searches is the index's expression); without pg_trgm the same statement scans."""
    from app.db import get_engine

    await run_sql(
        "INSERT INTO task (owner, created_by, title, description) SELECT {}, {}, 'task ' || g, 'lorem ipsum ' || g"
        " FROM generate_series(1, 3000) g",
        alice.id,
        alice.id,
    )
    await run_sql("VACUUM ANALYZE task")  # also moves the GIN index's pending entries into it
    filters = task_service.TaskFilters(q="needle 2999")
    shape = task_service._shape(filters)
    count = task_service._count_statement(shape)
    sql, values = count.sql, count.bind({**task_service._values(alice.id, filters, shape), "count_max": 10_001})
    engine = get_engine()
    async with engine.transaction():
        # Short rows are cheap to scan whole; ask which index serves the statement when not.
        await engine.fetch("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await engine.fetch(f"EXPLAIN {sql}", *values))
    if await _has_pg_trgm():
        assert "Bitmap Index Scan on task_search_trgm" in plan, plan
    else:
        assert "task_search_trgm" not in plan, plan
    # Either way the answer is right.
    assert await _found(client, alice, "ipsum task 2999") == {"task 2999"}


async def test_a_search_too_costly_for_the_statement_timeout_is_400_naming_q(register):
    """A real server with a 100 ms statement timeout: a 40-word q that every long task matches
    (no index can narrow it) is cancelled by PostgreSQL, and answers 400 naming q, not 503.
    The same server then answers other requests normally."""
    words = [f"word{i:02d}" for i in range(40)]
    env = server_env(DATABASE_URL, DB_STATEMENT_TIMEOUT_MS="100", TASKAPI_LOG_LEVEL="WARNING")
    server = start_server(env)
    try:
        await asyncio.to_thread(server.wait_healthy)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            credentials = {"email": "costly@example.com", "password": "correct-horse-battery"}
            assert (await http.post("/api/v1/auth/register", json=credentials)).status_code == 201
            token = (await http.post("/api/v1/auth/token", json=credentials)).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            user_id = (await http.get("/api/v1/users/me", headers=headers)).json()["id"]
            text = " ".join(words) + " " + "filler text " * 1600  # ~20 KB
            await run_sql(
                "INSERT INTO task (owner, created_by, title, description) SELECT {}, {}, 't' || g, {}"
                " FROM generate_series(1, 400) g",
                user_id,
                user_id,
                text,
            )
            costly = await http.get(TASKS, params={"q": " ".join(words)}, headers=headers)
            body = assert_problem(costly, 400, "q")
            assert "too costly" in body["detail"]
            assert "retry-after" not in costly.headers
            cheap = await http.get(TASKS, params={"limit": 1}, headers=headers)
            assert cheap.status_code == 200, cheap.text
            assert cheap.json()["total"] == 400
    finally:
        server.stop()
