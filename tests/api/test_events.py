"""SPEC "Changes, live updates and webhooks": the event log and its feed.

One event per committed change, none for a rolled-back one; the object as GET shows it and the
changes as {field: [old, new]}; the feed in order with no gap and no duplicate while writers
commit out of order; who sees what; 410 past the retention; a task's activity.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import asyncpg
import httpx

from tests.api.sharing import join
from tests.conftest import DATABASE_URL

EVENTS = "/api/v1/events"
PROJECTS = "/api/v1/projects"


async def feed(client: httpx.AsyncClient, user: Any, after: int | None = None, limit: int = 100) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        params["after"] = after
    response = await client.get(EVENTS, params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def all_events(client: httpx.AsyncClient, user: Any, after: int | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = await feed(client, user, after)
        items += page["items"]
        after = page["next_after"]
        if len(page["items"]) < 100:
            return items


async def test_each_change_is_one_event_with_the_object_as_get_shows_it(client, alice, bob):
    h = alice.headers
    project = (await client.post("/api/v1/projects", json={"name": "P", "color": "#aabbcc"}, headers=h)).json()
    label = (await client.post("/api/v1/labels", json={"name": "L"}, headers=h)).json()
    body = {"title": "T", "project_id": project["id"], "label_ids": [label["id"]], "due_at": "2030-01-01T10:00:00.5Z"}
    task = (await client.post("/api/v1/tasks", json=body, headers=h)).json()
    comment = (await client.post(f"/api/v1/tasks/{task['id']}/comments", json={"body": "B"}, headers=h)).json()
    member = await join(client, alice, project["id"], bob, "editor")

    events = await all_events(client, alice)
    assert [e["type"] for e in events] == [
        "project.created",
        "label.created",
        "task.created",
        "comment.created",
        "member.added",
    ]
    by_type = {e["type"]: e for e in events}
    assert all(set(e) == {"id", "type", "occurred_at", "actor_id", "project_id", "object", "changes"} for e in events)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    # The object is the GET answer (a project without the reader's role, which differs per reader).
    project.pop("role")
    assert by_type["project.created"]["object"] == project
    assert by_type["label.created"]["object"] == label
    assert by_type["task.created"]["object"] == (await client.get(f"/api/v1/tasks/{task['id']}", headers=h)).json()
    assert by_type["comment.created"]["object"] == comment
    assert by_type["member.added"]["object"] == member
    assert by_type["member.added"]["actor_id"] == bob.id  # bob accepted
    assert {e["actor_id"] for e in events if e["type"] != "member.added"} == {alice.id}
    assert by_type["label.created"]["project_id"] is None
    assert {by_type[t]["project_id"] for t in ("project.created", "task.created", "comment.created")} == {project["id"]}
    assert all(e["changes"] is None for e in events)


async def test_a_patch_with_labels_and_assignees_is_one_event_with_its_changes(client, alice, bob):
    h = alice.headers
    project = (await client.post("/api/v1/projects", json={"name": "P"}, headers=h)).json()
    await join(client, alice, project["id"], bob, "editor")
    first = (await client.post("/api/v1/labels", json={"name": "first"}, headers=h)).json()
    second = (await client.post("/api/v1/labels", json={"name": "second"}, headers=bob.headers)).json()
    task = (
        await client.post(
            "/api/v1/tasks", json={"title": "T", "project_id": project["id"], "label_ids": [first["id"]]}, headers=h
        )
    ).json()
    position = (await feed(client, alice))["next_after"]

    response = await client.patch(
        f"/api/v1/tasks/{task['id']}",
        json={"title": "T2", "status": "done", "label_ids": [second["id"]], "assignee_ids": [bob.id]},
        headers=bob.headers,
    )
    assert response.status_code == 200, response.text
    [event] = (await feed(client, alice, position))["items"]
    assert event["type"] == "task.updated"
    assert event["actor_id"] == bob.id
    assert event["object"] == response.json()
    changes = event["changes"]
    assert changes.pop("completed_at")[0] is None
    assert changes == {
        "title": ["T", "T2"],
        "status": ["todo", "done"],
        "label_ids": [[first["id"]], [second["id"]]],
        "assignee_ids": [[], [bob.id]],
    }


async def test_a_rolled_back_bulk_create_writes_no_event(client, alice):
    position = (await feed(client, alice))["next_after"]
    items = [{"title": "a"}, {"title": "b"}, {"title": "c", "label_ids": [999_999]}, {"title": "d"}]
    response = await client.post("/api/v1/tasks/bulk", json={"tasks": items}, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert (await feed(client, alice, position))["items"] == []
    response = await client.post("/api/v1/tasks/bulk", json={"tasks": items[:2]}, headers=alice.headers)
    assert response.status_code == 201
    created = (await feed(client, alice, position))["items"]
    assert [e["type"] for e in created] == ["task.created", "task.created"]
    assert [e["object"]["title"] for e in created] == ["a", "b"]


async def test_updates_and_deletes_and_what_a_delete_takes_along(client, alice):
    h = alice.headers
    project = (await client.post("/api/v1/projects", json={"name": "P"}, headers=h)).json()
    tasks = "/api/v1/tasks"
    parent = (await client.post(tasks, json={"title": "parent", "project_id": project["id"]}, headers=h)).json()
    child = (await client.post(tasks, json={"title": "child", "parent_id": parent["id"]}, headers=h)).json()
    await client.post(f"/api/v1/tasks/{child['id']}/comments", json={"body": "hi"}, headers=h)
    position = (await feed(client, alice))["next_after"]

    assert (await client.patch(f"/api/v1/projects/{project['id']}", json={"name": "Q"}, headers=h)).status_code == 200
    assert (await client.delete(f"/api/v1/tasks/{parent['id']}", headers=h)).status_code == 204
    events = (await feed(client, alice, position))["items"]
    assert [(e["type"], e["object"].get("name"), e["changes"]) for e in events] == [
        ("project.updated", "Q", {"name": ["P", "Q"]}),
        ("task.deleted", None, None),
    ]
    assert events[1]["object"] == {"id": parent["id"]}  # its subtask and comment go with it, no events


async def test_the_feed_shows_what_the_reader_can_see_now(client, alice, bob):
    h = alice.headers
    project = (await client.post("/api/v1/projects", json={"name": "Shared"}, headers=h)).json()
    await join(client, alice, project["id"], bob, "viewer")
    await client.post("/api/v1/tasks", json={"title": "in the project", "project_id": project["id"]}, headers=h)
    await client.post("/api/v1/tasks", json={"title": "alice's inbox"}, headers=h)
    await client.post("/api/v1/labels", json={"name": "alice's label"}, headers=h)
    bob_sees = await all_events(client, bob)
    assert [e["type"] for e in bob_sees] == ["project.created", "member.added", "task.created"]
    position = bob_sees[-1]["id"]

    # Removed: bob stops seeing the project's events, the unread ones too, but learns he was removed.
    await client.post("/api/v1/tasks", json={"title": "before removal", "project_id": project["id"]}, headers=h)
    assert (await client.delete(f"/api/v1/projects/{project['id']}/members/{bob.id}", headers=h)).status_code == 204
    await client.post("/api/v1/tasks", json={"title": "after removal", "project_id": project["id"]}, headers=h)
    after_removal = await all_events(client, bob, position)
    assert [(e["type"], e["object"]) for e in after_removal] == [("member.removed", {"user": {"id": bob.id}})]
    assert [e["object"].get("title") for e in await all_events(client, alice) if e["type"] == "task.created"] == [
        "in the project",
        "alice's inbox",
        "before removal",
        "after removal",
    ]


async def test_next_after_moves_past_what_the_reader_cannot_see(client, alice, bob):
    for n in range(5):
        await client.post("/api/v1/tasks", json={"title": f"alice {n}"}, headers=alice.headers)
    page = await feed(client, bob, 0)
    assert page["items"] == []
    assert page["next_after"] > 0
    mine = (await client.post("/api/v1/tasks", json={"title": "bob's"}, headers=bob.headers)).json()
    [event] = (await feed(client, bob, page["next_after"]))["items"]
    assert event["object"]["id"] == mine["id"]


async def test_paging_by_next_after_gives_every_event_once_in_order(client, alice):
    for n in range(7):
        await client.post("/api/v1/labels", json={"name": f"l{n}"}, headers=alice.headers)
    seen, after = [], 0
    for _ in range(4):
        page = await feed(client, alice, after, limit=3)
        seen += page["items"]
        after = page["next_after"]
    assert [e["object"]["name"] for e in seen] == [f"l{n}" for n in range(7)]
    for bad in ("-1", "x", "1.5"):
        response = await client.get(EVENTS, params={"after": bad}, headers=alice.headers)
        assert response.status_code == 400, (bad, response.text)
    assert (await client.get(EVENTS, params={"limit": 101}, headers=alice.headers)).status_code == 400
    assert (await client.get(EVENTS)).status_code == 401


async def test_an_after_older_than_the_retention_is_410(client, alice):
    from app.services.events import purge_events

    await client.post("/api/v1/labels", json={"name": "old"}, headers=alice.headers)
    first = await feed(client, alice, 0)
    assert len(first["items"]) == 1
    # Nothing has expired yet: nothing goes, and every cursor still works.
    assert await purge_events(30) == 0
    assert (await feed(client, alice, 0))["items"] == first["items"]
    # 31 days later the label's event has expired.
    assert await purge_events(30, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=31)) == 1
    response = await client.get(EVENTS, params={"after": 0}, headers=alice.headers)
    assert response.status_code == 410
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "fetch the objects again" in response.json()["detail"]
    # A cursor at or past what was deleted goes on; so does a client starting without one.
    assert (await feed(client, alice, first["next_after"]))["items"] == []
    assert (await feed(client, alice))["items"] == []
    await client.post("/api/v1/labels", json={"name": "new"}, headers=alice.headers)
    [event] = (await feed(client, alice, first["next_after"]))["items"]
    assert event["object"]["name"] == "new"


async def test_task_activity_newest_first_and_404_for_others(client, alice, bob):
    h = alice.headers
    task = (await client.post("/api/v1/tasks", json={"title": "a"}, headers=h)).json()
    for title in ("b", "c"):
        assert (await client.patch(f"/api/v1/tasks/{task['id']}", json={"title": title}, headers=h)).status_code == 200
    await client.post("/api/v1/tasks", json={"title": "other"}, headers=h)
    response = await client.get(f"/api/v1/tasks/{task['id']}/activity", params={"limit": 2}, headers=h)
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
    assert [e["changes"] for e in body["items"]] == [{"title": ["b", "c"]}, {"title": ["a", "b"]}]
    rest = (await client.get(f"/api/v1/tasks/{task['id']}/activity", params={"offset": 2}, headers=h)).json()
    assert [e["type"] for e in rest["items"]] == ["task.created"]
    assert (await client.get(f"/api/v1/tasks/{task['id']}/activity", headers=bob.headers)).status_code == 404
    assert (await client.get("/api/v1/tasks/999999/activity", headers=h)).status_code == 404


async def test_a_transaction_committing_late_is_served_in_order_not_skipped(client, alice):
    """A plain ``id > after`` reader skips an earlier id that commits after a later one; the feed
    holds the later one back until the earlier transaction has ended."""
    position = (await feed(client, alice))["next_after"]
    slow = await asyncpg.connect(DATABASE_URL)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute("INSERT INTO label (owner, name) VALUES ($1, 'slow')", alice.id)
        await client.post("/api/v1/labels", json={"name": "fast"}, headers=alice.headers)
        newest = await slow.fetchval("SELECT max(id) FROM event")  # the slow one's is invisible: fast's
        held = await feed(client, alice, position)
        assert held["items"] == []  # "fast" committed, but waits behind "slow"
        assert held["next_after"] < newest
        await transaction.commit()
    finally:
        await slow.close()
    served = await feed(client, alice, held["next_after"])
    assert [e["object"]["name"] for e in served["items"]] == ["slow", "fast"]


async def test_concurrent_writers_with_late_commits_no_gap_no_duplicate(client, alice):
    """Writers hold transactions open for random times (some write before their event, some roll
    back) while a reader follows next_after: it gets every committed event once, in id order."""
    writers, per_writer = 8, 300
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=writers, max_size=writers)
    committed: list[str] = []
    done = asyncio.Event()

    async def writer(w: int) -> None:
        rng = random.Random(w)
        async with pool.acquire() as connection:
            for n in range(per_writer):
                name = f"w{w}-{n}"
                transaction = connection.transaction()
                await transaction.start()
                if rng.random() < 0.3:
                    # A transaction id taken long before its event's id is drawn.
                    await connection.execute("SELECT pg_current_xact_id()")
                    await asyncio.sleep(rng.random() * 0.01)
                await connection.execute("INSERT INTO label (owner, name) VALUES ($1, $2)", alice.id, name)
                await asyncio.sleep(rng.random() * 0.01)
                if rng.random() < 0.1:
                    await transaction.rollback()
                else:
                    await transaction.commit()
                    committed.append(name)

    async def reader() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        after = 0
        while True:
            finished = done.is_set()
            page = await feed(client, alice, after)
            got += page["items"]
            after = page["next_after"]
            if finished and len(page["items"]) < 100:
                return got
            await asyncio.sleep(0.005)

    try:
        read = asyncio.create_task(reader())
        await asyncio.gather(*(writer(w) for w in range(writers)))
        done.set()
        got = await read
    finally:
        await pool.close()
    ids = [e["id"] for e in got]
    assert len(committed) > 2000
    assert len(ids) == len(set(ids)), "an event was served twice"
    assert ids == sorted(ids)
    assert sorted(e["object"]["name"] for e in got) == sorted(committed), "an event was skipped"


async def test_members_of_the_project_a_task_left_see_that_it_went_and_nothing_more(client, alice, bob):
    h = alice.headers
    old = (await client.post("/api/v1/projects", json={"name": "Old"}, headers=h)).json()
    new = (await client.post("/api/v1/projects", json={"name": "New"}, headers=h)).json()
    await join(client, alice, old["id"], bob, "viewer")
    parent = (await client.post("/api/v1/tasks", json={"title": "parent", "project_id": old["id"]}, headers=h)).json()
    child = (await client.post("/api/v1/tasks", json={"title": "child", "parent_id": parent["id"]}, headers=h)).json()
    position = (await feed(client, bob))["next_after"]

    moved = await client.patch(
        f"/api/v1/tasks/{parent['id']}", json={"project_id": new["id"], "title": "secret"}, headers=h
    )
    assert moved.status_code == 200, moved.text
    await client.patch(f"/api/v1/tasks/{parent['id']}", json={"title": "more secret"}, headers=h)
    departures = (await feed(client, bob, position))["items"]
    went = {"project_id": [old["id"], new["id"]]}
    assert [(e["type"], e["project_id"], e["object"], e["changes"]) for e in departures] == [
        ("task.updated", old["id"], {"id": parent["id"], "project_id": new["id"]}, went),
        ("task.updated", old["id"], {"id": child["id"], "project_id": new["id"]}, went),
    ]
    # Alice, a member of both, sees the whole events (the move and the title), then the later change.
    mine = (await feed(client, alice, position))["items"]
    assert [e["object"]["title"] for e in mine] == ["secret", "child", "more secret"]
    assert mine[0]["changes"] == {"project_id": [old["id"], new["id"]], "title": ["parent", "secret"]}


async def test_a_deleted_projects_members_then_see_its_deletion(client, alice, bob, register):
    carol = await register()
    project = (await client.post("/api/v1/projects", json={"name": "Doomed"}, headers=alice.headers)).json()
    await join(client, alice, project["id"], bob, "editor")
    await client.post("/api/v1/tasks", json={"title": "t", "project_id": project["id"]}, headers=bob.headers)
    position = (await feed(client, bob))["next_after"]
    assert (await client.delete(f"/api/v1/projects/{project['id']}", headers=alice.headers)).status_code == 204
    for user in (alice, bob):
        [event] = (await feed(client, user, position))["items"]
        assert (event["type"], event["project_id"], event["object"]) == (
            "project.deleted",
            project["id"],
            {"id": project["id"]},
        )
        assert event["actor_id"] == alice.id
    assert (await feed(client, carol, 0))["items"] == []


async def test_a_creation_with_assignees_is_one_created_event_with_its_final_state(client, alice):
    position = (await feed(client, alice))["next_after"]
    label = (await client.post("/api/v1/labels", json={"name": "L"}, headers=alice.headers)).json()
    body = {"title": "T", "label_ids": [label["id"]], "assignee_ids": [alice.id]}
    created = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    # A stale If-Match writes nothing, so no event either.
    stale = await client.patch(
        f"/api/v1/tasks/{created.json()['id']}", json={"title": "x"}, headers={**alice.headers, "If-Match": '"9"'}
    )
    assert stale.status_code == 412
    events = (await feed(client, alice, position))["items"]
    assert [e["type"] for e in events] == ["label.created", "task.created"]
    assert events[1]["object"] == created.json()
    assert events[1]["object"]["assignee_ids"] == [alice.id]
    assert events[1]["object"]["labels"] == [{"id": label["id"], "name": "L", "color": None}]


async def test_the_actor_is_who_made_the_change(client, alice, bob, register):
    carol = await register()
    project = (await client.post("/api/v1/projects", json={"name": "P"}, headers=alice.headers)).json()
    await join(client, alice, project["id"], bob, "commenter")
    await join(client, alice, project["id"], carol, "viewer")
    task = (
        await client.post("/api/v1/tasks", json={"title": "t", "project_id": project["id"]}, headers=alice.headers)
    ).json()
    comment = (
        await client.post(f"/api/v1/tasks/{task['id']}/comments", json={"body": "b"}, headers=bob.headers)
    ).json()
    position = (await feed(client, alice))["next_after"]
    assert (
        await client.patch(f"/api/v1/comments/{comment['id']}", json={"body": "c"}, headers=bob.headers)
    ).status_code == 200
    assert (await client.delete(f"/api/v1/comments/{comment['id']}", headers=alice.headers)).status_code == 204
    assert (
        await client.delete(f"{PROJECTS}/{project['id']}/members/{carol.id}", headers=carol.headers)
    ).status_code == 204
    assert (
        await client.delete(f"{PROJECTS}/{project['id']}/members/{bob.id}", headers=alice.headers)
    ).status_code == 204
    events = (await feed(client, alice, position))["items"]
    assert [(e["type"], e["actor_id"]) for e in events] == [
        ("comment.updated", bob.id),
        ("comment.deleted", alice.id),
        ("member.removed", carol.id),
        ("member.removed", alice.id),
    ]


async def test_event_ids_are_the_transaction_id_and_the_place_in_it(client, alice):
    from app.tables import EVENTS_PER_TRANSACTION

    items = [{"title": f"t{n}"} for n in range(3)]
    assert (await client.post("/api/v1/tasks/bulk", json={"tasks": items}, headers=alice.headers)).status_code == 201
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        rows = await connection.fetch("SELECT id, txid::text::bigint AS txid FROM event ORDER BY id")
    finally:
        await connection.close()
    assert [(r["txid"], r["id"] % EVENTS_PER_TRANSACTION) for r in rows] == [(rows[0]["txid"], n) for n in range(3)]
    assert all(r["id"] // EVENTS_PER_TRANSACTION == r["txid"] for r in rows)
