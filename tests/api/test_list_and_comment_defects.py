"""Two defects that answered wrongly: a well-signed cursor holding values of the wrong type (500),
and a comment posted while its task was being deleted (422 naming a constraint, not 404)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from app.services import tasks as task_service
from app.services.listing import encode_cursor, parse_sort, scope_fingerprint
from tests.api.problems import assert_problem
from tests.conftest import DATABASE_URL, count_rows

TASKS = "/api/v1/tasks"
GOOD_TIME = "2030-01-01T00:00:00+00:00"


def _forge(user_id: int, sort: str, values: list[Any]) -> str:
    """A cursor signed with the server's secret, for the default filters, holding ``values``."""
    keys = parse_sort(sort, task_service.SORTABLE, task_service.DEFAULT_SORT)
    return encode_cursor(keys, scope_fingerprint(user_id, task_service.TaskFilters()), values)


WRONG_VALUES = [
    ("-created_at", ["not a date", 1]),
    ("-created_at", ["2030-01-01T00:00:00", 1]),  # no zone
    ("-created_at", ["9999-12-31T23:59:59-14:00", 1]),  # out of range in UTC
    ("-created_at", [1700000000, 1]),
    ("-created_at", [["a", "list"], 1]),
    ("-created_at", [{"an": "object"}, 1]),
    ("-created_at", [None, 1]),  # created_at is never null
    ("-created_at", [GOOD_TIME, "1"]),
    ("-created_at", [GOOD_TIME, 1.5]),
    ("-created_at", [GOOD_TIME, True]),
    ("-created_at", [GOOD_TIME, 2**40]),
    ("-created_at", [GOOD_TIME, None]),
    ("title", [123, 1]),
    ("title", ["nul \u0000 inside", 1]),
    ("priority", ["3", 1]),
    ("due_at", ["tomorrow", 1]),
]


@pytest.mark.parametrize(("sort", "values"), WRONG_VALUES)
async def test_signed_cursor_with_wrong_value_types_is_400_naming_cursor(client, alice, sort, values):
    cursor = _forge(alice.id, sort, values)
    response = await client.get(TASKS, params={"cursor": cursor, "sort": sort}, headers=alice.headers)
    assert_problem(response, 400, "cursor", case=values)


async def test_signed_cursor_with_right_types_still_works(client, alice):
    """The forging helper makes cursors the server accepts when the values are well typed."""
    response = await client.post(
        f"{TASKS}/bulk", json={"tasks": [{"title": "a"}, {"title": "b"}]}, headers=alice.headers
    )
    assert response.status_code == 201, response.text
    first_id = response.json()["items"][0]["id"]
    for sort, values in [("title", ["a", first_id]), ("due_at", [None, first_id])]:
        cursor = _forge(alice.id, sort, values)
        page = await client.get(TASKS, params={"cursor": cursor, "sort": sort}, headers=alice.headers)
        assert page.status_code == 200, page.text
        assert [t["title"] for t in page.json()["items"]] == ["b"]


async def test_comment_on_a_task_deleted_between_check_and_insert_is_404(client, alice):
    """Deterministic race: another transaction has deleted the task but not committed, so the
    API's existence check still sees it and its insert waits on the foreign key's row lock; the
    delete then commits, the foreign key fails, and the answer is the task's 404."""
    created = await client.post(TASKS, json={"title": "going away"}, headers=alice.headers)
    task_id = created.json()["id"]
    deleter = await asyncpg.connect(DATABASE_URL)
    watcher = await asyncpg.connect(DATABASE_URL)
    try:
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute("DELETE FROM task WHERE id = $1", task_id)
        post = asyncio.create_task(
            client.post(f"{TASKS}/{task_id}/comments", json={"body": "too late"}, headers=alice.headers)
        )
        # Wait until the API's insert is blocked behind the uncommitted delete.
        for _ in range(200):
            blocked = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%comment%'"
            )
            if blocked or post.done():
                break
            await asyncio.sleep(0.025)
        assert blocked, "the comment insert never waited on the delete"
        await deleting.commit()
        response = await post
    finally:
        await deleter.close()
        await watcher.close()
    body = assert_problem(response, 404)
    assert str(task_id) in body["detail"]
    assert "constraint" not in body["detail"]
    assert await count_rows("comment") == 0
