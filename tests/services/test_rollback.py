"""Services roll back completely when a write fails part-way, and give their connection back.

These call app.services directly (no HTTP): the failure happens after some statements of the
transaction already ran (the task row inserted, the old labels deleted, earlier bulk items
written), so only a real rollback leaves the database as it was.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from piccolo.querystring import QueryString

from app.db import get_engine
from app.errors import InvalidFieldError, NotFoundError
from app.services import labels as label_service
from app.services import projects as project_service
from app.services import tasks as task_service
from app.services.idempotency import Idempotency
from app.tables import Task, TaskLabel
from tests.conftest import count_rows

MISSING = 987_654


async def _snapshot() -> dict[str, Any]:
    """Everything a task write could touch."""
    tasks = await Task.select(*Task._meta.columns).order_by(Task.id)
    links = await TaskLabel.select(TaskLabel.task, TaskLabel.label).order_by(TaskLabel.task, TaskLabel.label)
    return {
        "tasks": tasks,
        "links": links,
        "idempotency_key": await count_rows("idempotency_key"),
    }


async def _assert_pool_healthy() -> None:
    """No connection left checked out or inside a transaction, and the pool still answers."""
    engine = get_engine()
    assert engine.current_transaction.get() is None
    pool = engine.pool
    assert pool is not None
    assert pool.get_idle_size() == pool.get_size(), "a connection was not given back to the pool"
    rows = await asyncio.wait_for(engine.run_querystring(QueryString("SELECT 1 AS one")), timeout=5)
    assert [dict(r) for r in rows] == [{"one": 1}]
    # And a transaction can still be opened and used.
    async with engine.transaction():
        rows = await asyncio.wait_for(engine.run_querystring(QueryString("SELECT 2 AS two")), timeout=5)
    assert [dict(r) for r in rows] == [{"two": 2}]


async def _label(user_id: int, name: str) -> int:
    label, _ = await label_service.create_label(user_id, {"name": name})
    return label.id


async def _task(user_id: int, **data: Any) -> Task:
    data.setdefault("title", "task")
    task, _ = await task_service.create_task(user_id, data)
    return task


# --------------------------------------------------------------------------------------------
# create_task


@pytest.mark.parametrize("bad", ["missing", "foreign"])
async def test_create_task_with_a_bad_label_leaves_no_task_and_no_links(alice, bob, bad):
    mine = [await _label(alice.id, "a"), await _label(alice.id, "b")]
    bad_id = MISSING if bad == "missing" else await _label(bob.id, "theirs")
    before = await _snapshot()
    with pytest.raises(InvalidFieldError) as caught:
        # Valid labels come first, so some task_label rows are written before the bad id is found.
        await task_service.create_task(alice.id, {"title": "never", "label_ids": [*mine, bad_id]})
    assert caught.value.errors[0]["field"] == "label_ids"
    assert str(bad_id) in caught.value.errors[0]["message"]
    assert await _snapshot() == before
    assert await count_rows("task") == 0
    assert await count_rows("task_label") == 0
    await _assert_pool_healthy()
    # The same user can create right after, and ids were not handed to a half-written row.
    task = await _task(alice.id, label_ids=mine)
    assert [lbl["id"] for lbl in json.loads(task.labels)] == mine  # type: ignore[attr-defined]  # JSON text


async def test_create_task_with_idempotency_key_stores_no_key_on_failure(alice):
    key = Idempotency.for_request("retry-me", "POST", "/api/v1/tasks", b"{}")
    with pytest.raises(InvalidFieldError):
        await task_service.create_task(alice.id, {"title": "never", "label_ids": [MISSING]}, idempotency=key)
    assert await count_rows("task") == 0
    assert await count_rows("idempotency_key") == 0
    await _assert_pool_healthy()
    # The key was not burnt: the corrected request (same key, same fingerprint) goes through once.
    task, replayed = await task_service.create_task(alice.id, {"title": "now"}, idempotency=key)
    assert replayed is False
    again, replayed = await task_service.create_task(alice.id, {"title": "now"}, idempotency=key)
    assert (again.id, replayed) == (task.id, True)
    assert await count_rows("task") == 1


async def test_create_task_with_a_foreign_parent_writes_nothing(alice, bob):
    theirs = await _task(bob.id)
    before = await _snapshot()
    with pytest.raises(InvalidFieldError) as caught:
        await task_service.create_task(alice.id, {"title": "never", "parent": theirs.id})
    assert caught.value.errors[0]["field"] == "parent_id"
    assert await _snapshot() == before
    await _assert_pool_healthy()


# --------------------------------------------------------------------------------------------
# create_tasks (bulk)


async def test_bulk_create_where_item_3_of_5_fails_leaves_nothing(alice):
    label = await _label(alice.id, "a")
    existing = await _task(alice.id, title="already there", label_ids=[label])
    before = await _snapshot()
    items = [{"title": f"item {i}", "label_ids": [label]} for i in range(5)]
    items[2]["label_ids"] = [label, MISSING]
    with pytest.raises(InvalidFieldError) as caught:
        await task_service.create_tasks(alice.id, items)
    error = caught.value.errors[0]
    assert error["field"] == "tasks[2].label_ids"
    assert error["index"] == 2
    assert await _snapshot() == before
    assert await count_rows("task") == 1
    await _assert_pool_healthy()
    assert (await task_service.get_task(alice.id, existing.id)).title == "already there"


@pytest.mark.parametrize(("index", "field"), [(0, "project"), (2, "parent"), (4, "project")])
async def test_bulk_create_with_a_foreign_reference_anywhere_leaves_nothing(alice, bob, index, field):
    project, _ = await project_service.create_project(bob.id, {"name": "theirs"})
    parent = await _task(bob.id)
    before = await _snapshot()
    items: list[dict[str, Any]] = [{"title": f"item {i}"} for i in range(5)]
    items[index][field] = project.id if field == "project" else parent.id
    with pytest.raises(InvalidFieldError) as caught:
        await task_service.create_tasks(alice.id, items)
    assert caught.value.errors[0]["field"] == f"tasks[{index}].{field}_id"
    assert await _snapshot() == before
    await _assert_pool_healthy()


async def test_bulk_create_failure_with_idempotency_key_stores_nothing(alice):
    key = Idempotency.for_request("bulk", "POST", "/api/v1/tasks/bulk", b"{}")
    items: list[dict[str, Any]] = [{"title": f"item {i}"} for i in range(5)]
    items[3]["label_ids"] = [MISSING]
    with pytest.raises(InvalidFieldError):
        await task_service.create_tasks(alice.id, items, idempotency=key)
    assert await count_rows("task") == 0
    assert await count_rows("idempotency_key") == 0
    await _assert_pool_healthy()


# --------------------------------------------------------------------------------------------
# update_task


@pytest.mark.parametrize("bad", ["missing", "foreign"])
async def test_update_task_with_a_bad_label_changes_neither_task_nor_labels(alice, bob, bad):
    a, b, c = [await _label(alice.id, n) for n in "abc"]
    task = await _task(alice.id, title="original", priority=1, label_ids=[a, b])
    bad_id = MISSING if bad == "missing" else await _label(bob.id, "theirs")
    before = await _snapshot()
    with pytest.raises(InvalidFieldError) as caught:
        # The title/status UPDATE and the label delete run before the bad id is found.
        await task_service.update_task(
            alice.id,
            task.id,
            {"title": "changed", "status": "done", "label_ids": [c, bad_id]},
            expected_version=None,
        )
    assert caught.value.errors[0]["field"] == "label_ids"
    assert await _snapshot() == before
    fetched = await task_service.get_task(alice.id, task.id)
    assert (fetched.title, fetched.status, fetched.version, fetched.completed_at) == ("original", "todo", 1, None)
    assert [lbl["id"] for lbl in json.loads(fetched.labels)] == [a, b]  # type: ignore[attr-defined]
    await _assert_pool_healthy()


async def test_update_task_with_a_cycle_changes_nothing(alice):
    root = await _task(alice.id, title="root")
    child = await _task(alice.id, title="child", parent=root.id)
    before = await _snapshot()
    with pytest.raises(InvalidFieldError) as caught:
        await task_service.update_task(
            alice.id, root.id, {"title": "moved", "parent": child.id, "label_ids": []}, expected_version=None
        )
    assert caught.value.errors[0]["field"] == "parent_id"
    assert await _snapshot() == before
    await _assert_pool_healthy()


async def test_update_task_with_a_missing_project_changes_nothing(alice):
    label = await _label(alice.id, "a")
    task = await _task(alice.id, title="original", label_ids=[label])
    before = await _snapshot()
    with pytest.raises(InvalidFieldError) as caught:
        await task_service.update_task(
            alice.id, task.id, {"title": "changed", "project": MISSING, "label_ids": []}, expected_version=None
        )
    assert caught.value.errors[0]["field"] == "project_id"
    assert await _snapshot() == before
    await _assert_pool_healthy()


# --------------------------------------------------------------------------------------------
# update_tasks (bulk)


async def test_update_tasks_with_one_foreign_id_changes_no_task(alice, bob):
    label = await _label(alice.id, "a")
    mine = [await _task(alice.id, title=f"mine {i}", label_ids=[label]) for i in range(3)]
    theirs = await _task(bob.id, title="theirs")
    before = await _snapshot()
    ids = [mine[0].id, mine[1].id, theirs.id, mine[2].id]
    with pytest.raises(NotFoundError) as caught:
        await task_service.update_tasks(alice.id, ids, {"title": "hijacked", "status": "done", "label_ids": []})
    assert str(theirs.id) in caught.value.detail
    assert await _snapshot() == before
    assert (await task_service.get_task(bob.id, theirs.id)).title == "theirs"
    await _assert_pool_healthy()


async def test_update_tasks_with_a_missing_id_changes_no_task(alice):
    mine = [await _task(alice.id, title=f"mine {i}") for i in range(3)]
    before = await _snapshot()
    with pytest.raises(NotFoundError) as caught:
        await task_service.update_tasks(alice.id, [t.id for t in mine] + [MISSING], {"priority": 4})
    assert str(MISSING) in caught.value.detail
    assert await _snapshot() == before
    await _assert_pool_healthy()


async def test_update_tasks_with_a_bad_label_changes_no_task(alice):
    a = await _label(alice.id, "a")
    mine = [await _task(alice.id, title=f"mine {i}", label_ids=[a]) for i in range(3)]
    before = await _snapshot()
    with pytest.raises(InvalidFieldError) as caught:
        await task_service.update_tasks(alice.id, [t.id for t in mine], {"title": "x", "label_ids": [a, MISSING]})
    assert caught.value.errors[0]["field"].endswith("label_ids")
    assert await _snapshot() == before
    await _assert_pool_healthy()


# --------------------------------------------------------------------------------------------
# Many failures in a row do not drain the pool.


async def test_repeated_failures_do_not_leak_connections(alice):
    from app.settings import get_settings

    label = await _label(alice.id, "a")
    task = await _task(alice.id, label_ids=[label])
    for _ in range(get_settings().pool_max_size * 3):
        with pytest.raises(InvalidFieldError):
            await task_service.create_task(alice.id, {"title": "never", "label_ids": [MISSING]})
        with pytest.raises(InvalidFieldError):
            await task_service.update_task(alice.id, task.id, {"label_ids": [MISSING]}, expected_version=None)
        with pytest.raises(NotFoundError):
            await task_service.update_tasks(alice.id, [task.id, MISSING], {"priority": 2})
    assert await count_rows("task") == 1
    assert await count_rows("task_label") == 1
    await _assert_pool_healthy()


async def test_a_list_inside_a_transaction_sees_its_writes_and_the_rollback_undoes_them(alice):
    # The page and its count run on the transaction's connection (engine.run), not on a
    # second pool connection that could not see the uncommitted task.
    await _task(alice.id, title="committed")
    engine = get_engine()
    with pytest.raises(RuntimeError):
        async with engine.transaction():
            await _task(alice.id, title="uncommitted")
            page = await task_service.list_tasks(alice.id, task_service.TaskFilters(), sort="title", limit=10, offset=0)
            assert [t["title"] for t in page.items] == ["committed", "uncommitted"]
            assert page.total == 2
            raise RuntimeError("roll back")
    page = await task_service.list_tasks(alice.id, task_service.TaskFilters(), sort="title", limit=10, offset=0)
    assert [t["title"] for t in page.items] == ["committed"]
    assert page.total == 1
    await _assert_pool_healthy()
