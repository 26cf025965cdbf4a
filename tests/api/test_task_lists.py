"""GET /api/v1/tasks: filters, sorting, offset pages, keyset (cursor) pages and query cost.

Choices where SPEC.md is silent (made by the implementation, pinned here):
- ``due_before`` / ``due_after`` are strict bounds, and a task without ``due_at`` matches neither.
- ``inbox=false`` means "has a project".
- The ``id`` tie-breaker follows the direction of the first sort key.
- Changing ``limit`` in the middle of a cursor walk is allowed (the cursor pins sort, filters, user).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
from typing import Any

import pytest

from app.services.tasks import MAX_SEARCH_LENGTH
from app.tables import Task, sortable, value_type

TASKS = "/api/v1/tasks"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
# Read from the table, so a field declared sortable is checked here without a test change.
SORT_FIELDS = list(sortable(Task))
TIMESTAMPS = {name for name, column in sortable(Task).items() if value_type(column) is dt.datetime}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _at(days: float) -> str:
    return _iso(NOW + dt.timedelta(days=days))


async def _bulk(client, user, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post(f"{TASKS}/bulk", json={"tasks": items}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()["items"]


async def _label(client, user, name: str) -> int:
    response = await client.post("/api/v1/labels", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _project(client, user, name: str) -> int:
    response = await client.post("/api/v1/projects", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _list(client, user, params: Any = None, status: int = 200) -> dict[str, Any]:
    response = await client.get(TASKS, params=params, headers=user.headers)
    assert response.status_code == status, response.text
    return response.json()


async def _ids(client, user, params: Any = None) -> list[int]:
    params = [*(params or []), ("limit", "100")]
    return [t["id"] for t in (await _list(client, user, params))["items"]]


def _value(task: dict[str, Any], field: str) -> Any:
    value = task[field]
    if field in TIMESTAMPS and value is not None:
        return dt.datetime.fromisoformat(value)
    return value


def _expected(tasks: list[dict[str, Any]], sort: str) -> list[int]:
    """The order SPEC asks for, computed independently of the server."""
    keys: list[tuple[str, bool]] = []
    for part in sort.split(","):
        keys.append((part.lstrip("-"), part.startswith("-")))
        if keys[-1][0] == "id":
            break
    if "id" not in {name for name, _ in keys}:
        keys.append(("id", keys[0][1]))

    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        for name, descending in keys:
            va, vb = _value(a, name), _value(b, name)
            if va == vb:
                continue
            if va is None:  # NULLs last in both directions
                return 1
            if vb is None:
                return -1
            result = -1 if va < vb else 1
            return -result if descending else result
        return 0

    return [t["id"] for t in sorted(tasks, key=functools.cmp_to_key(compare))]


async def _walk(client, user, params: list[tuple[str, str]], limit: int) -> list[int]:
    """Every id of a keyset walk; checks the envelope of each page."""
    first = await _list(client, user, [*params, ("paginate", "cursor"), ("limit", str(limit))])
    pages = [first]
    while pages[-1]["next_cursor"] is not None:
        assert len(pages) < 200, "the walk does not end"
        pages.append(await _list(client, user, [*params, ("cursor", pages[-1]["next_cursor"]), ("limit", str(limit))]))
    for page in pages:
        assert set(page) == {"items", "next_cursor", "limit"}
        assert page["limit"] == limit
        assert len(page["items"]) <= limit
    for page in pages[:-1]:
        assert len(page["items"]) == limit
    return [t["id"] for page in pages for t in page["items"]]


# --------------------------------------------------------------------------------------------
# A data set with ties, NULL due dates, several projects, labels and statuses.


@pytest.fixture
async def sortable(client, alice) -> list[dict[str, Any]]:
    items = [
        {"title": "same", "priority": 2, "position": 3, "due_at": _at(1)},
        {"title": "same", "priority": 2, "position": 3},
        {"title": "alpha", "priority": 0, "position": 1, "due_at": _at(1)},
        {"title": "zulu", "priority": 4, "position": -2, "due_at": _at(-3)},
        {"title": "same", "priority": 4, "position": 3},
        {"title": "mike", "priority": 1, "position": 7, "due_at": _at(10)},
        {"title": "bravo", "priority": 2, "position": 0, "due_at": _at(-3)},
        {"title": "same", "priority": 0, "position": 1},
        {"title": "echo", "priority": 3, "position": 3, "due_at": _at(1)},
        {"title": "alpha", "priority": 2, "position": 5},
        {"title": "kilo", "priority": 1, "position": 0, "due_at": _at(2)},
    ]
    # One item per request so created_at strictly increases with id, like real traffic.
    created = [(await _bulk(client, alice, [item]))[0] for item in items]
    # Make updated_at differ from the creation order.
    for task in (created[2], created[7], created[0]):
        response = await client.patch(f"{TASKS}/{task['id']}", json={"description": "edited"}, headers=alice.headers)
        assert response.status_code == 200
    return (await _list(client, alice, {"limit": 100}))["items"]


ALL_SORTS = [f for f in SORT_FIELDS] + [f"-{f}" for f in SORT_FIELDS]
MULTI_SORTS = [
    "priority,title",
    "-priority,title",
    "title,-priority",
    "-title,position",
    "due_at,-priority",
    "-due_at,title",
    "priority,-due_at",
    "position,due_at,title",
    "-position,-due_at,-title",
    "title,id",
    "-title,-id",
    "title,due_at,-id",
]


async def test_default_sort_is_newest_first(client, alice, sortable):
    body = await _list(client, alice, {"limit": 100})
    assert [t["id"] for t in body["items"]] == _expected(sortable, "-created_at")
    assert [t["id"] for t in body["items"]] == sorted((t["id"] for t in sortable), reverse=True)
    assert body["items"] == (await _list(client, alice, {"limit": 100, "sort": "-created_at"}))["items"]


async def test_every_sort_is_total_and_matches_spec(client, alice, sortable):
    # One data set for all sorts (a loop, not parametrize: building the data set is the slow part).
    for sort in ALL_SORTS + MULTI_SORTS:
        assert await _ids(client, alice, [("sort", sort)]) == _expected(sortable, sort), sort


async def test_keys_that_cannot_change_the_order_are_ignored_but_still_checked(client, alice, sortable):
    # A repeated key, or a key after the unique id, orders nothing: accepted (as the documented
    # pattern allows), yet an unknown field anywhere is still a 400 naming sort.
    assert await _ids(client, alice, [("sort", "title,-title")]) == _expected(sortable, "title")
    assert await _ids(client, alice, [("sort", "-id,title")]) == _expected(sortable, "-id")
    body = await _list(client, alice, {"sort": "id,bogus"}, status=400)
    assert body["errors"][0]["field"] == "sort"
    assert "bogus" in body["detail"]


async def test_tasks_without_due_at_sort_last_in_both_directions(client, alice, sortable):
    for sort in ("due_at", "-due_at", "due_at,-title", "-due_at,-id"):
        items = (await _list(client, alice, {"sort": sort, "limit": 100}))["items"]
        dues = [t["due_at"] for t in items]
        assert dues[-4:] == [None] * 4, sort
        assert None not in dues[:-4], sort


async def test_title_ties_are_broken_by_id(client, alice, sortable):
    same = [t["id"] for t in sortable if t["title"] == "same"]
    ascending = [i for i in await _ids(client, alice, [("sort", "title")]) if i in same]
    descending = [i for i in await _ids(client, alice, [("sort", "-title")]) if i in same]
    assert ascending == sorted(same)
    assert descending == sorted(same, reverse=True)


async def test_cursor_walk_equals_offset_order_for_every_sort(client, alice, sortable):
    for sort in ["", *ALL_SORTS, *MULTI_SORTS]:
        params = [("sort", sort)] if sort else []
        expected = await _ids(client, alice, params)
        assert len(expected) == len(sortable)
        # limit 1 puts a page boundary between every pair, including inside ties and NULL runs.
        assert await _walk(client, alice, params, limit=1) == expected, sort
        assert await _walk(client, alice, params, limit=4) == expected, sort


async def test_offset_pages_concatenate_to_the_full_order(client, alice, sortable):
    for sort in ("due_at", "-title", "priority,-due_at"):
        full = await _ids(client, alice, [("sort", sort)])
        pages: list[int] = []
        for offset in range(0, len(full), 3):
            body = await _list(client, alice, {"sort": sort, "limit": 3, "offset": offset})
            assert body["total"] == len(full)
            pages += [t["id"] for t in body["items"]]
        assert pages == full


async def test_cursor_walk_with_filters(client, alice, sortable):
    params = [("priority", "2"), ("priority", "4"), ("sort", "-due_at")]
    expected = await _ids(client, alice, params)
    assert len(expected) == 6
    assert await _walk(client, alice, params, limit=2) == expected


async def test_cursor_walk_is_stable_under_inserts(client, alice, sortable):
    first = await _list(client, alice, {"paginate": "cursor", "limit": 5})
    await _bulk(client, alice, [{"title": "newer"}])  # newest: sorts before the cursor
    rest = await _list(client, alice, {"cursor": first["next_cursor"], "limit": 100})
    walked = [t["id"] for t in first["items"] + rest["items"]]
    assert walked == _expected(sortable, "-created_at")
    assert rest["next_cursor"] is None


async def test_cursor_limit_may_change_mid_walk(client, alice, sortable):
    first = await _list(client, alice, {"paginate": "cursor", "limit": 2, "sort": "title"})
    rest = await _list(client, alice, {"cursor": first["next_cursor"], "limit": 100, "sort": "title"})
    assert [t["id"] for t in first["items"] + rest["items"]] == _expected(sortable, "title")


async def test_cursor_first_page_of_an_empty_list(client, alice):
    body = await _list(client, alice, {"paginate": "cursor"})
    assert body == {"items": [], "next_cursor": None, "limit": 20}


async def test_cursor_last_page_exactly_full_has_no_next(client, alice):
    await _bulk(client, alice, [{"title": f"t{i}"} for i in range(4)])
    first = await _list(client, alice, {"paginate": "cursor", "limit": 2})
    second = await _list(client, alice, {"cursor": first["next_cursor"], "limit": 2})
    assert len(second["items"]) == 2
    assert second["next_cursor"] is None


async def test_paginate_offset_is_the_offset_envelope(client, alice, sortable):
    body = await _list(client, alice, {"paginate": "offset", "limit": 2, "offset": 1})
    assert set(body) == {"items", "total", "limit", "offset"}
    assert (body["total"], body["limit"], body["offset"]) == (len(sortable), 2, 1)


# --------------------------------------------------------------------------------------------
# Bad cursors


def _cursor_errors(response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "cursor" in {e["field"] for e in response.json()["errors"]}


def _tamper(cursor: str) -> list[str]:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    variants = []
    for position in (0, len(raw) // 2, len(raw) - 2):
        changed = bytearray(raw)
        changed[position] ^= 0x01
        variants.append(base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("="))
    # A forged payload with the signature of another one.
    variants.append(base64.urlsafe_b64encode(bytes(raw[:16]) + b'["id","x",[1]]').decode().rstrip("="))
    return variants


async def test_tampered_or_garbage_cursor_is_400(client, alice, sortable):
    cursor = (await _list(client, alice, {"paginate": "cursor", "limit": 2}))["next_cursor"]
    assert cursor
    for bad in [*_tamper(cursor), "", "!!!", "abc", cursor[:-3], cursor + "AAAA", "x" * 2001]:
        _cursor_errors(await client.get(TASKS, params={"cursor": bad}, headers=alice.headers))


async def test_cursor_with_another_sort_is_400(client, alice, sortable):
    cursor = (await _list(client, alice, {"paginate": "cursor", "limit": 2, "sort": "title"}))["next_cursor"]
    for sort in ("-title", "priority", "title,priority", "-created_at"):
        response = await client.get(TASKS, params={"cursor": cursor, "sort": sort}, headers=alice.headers)
        _cursor_errors(response)
    # Without sort= the default (-created_at) applies, which is another sort too.
    _cursor_errors(await client.get(TASKS, params={"cursor": cursor}, headers=alice.headers))


async def test_cursor_with_other_filters_is_400(client, alice, sortable):
    cursor = (await _list(client, alice, {"paginate": "cursor", "limit": 2, "status": "todo"}))["next_cursor"]
    for params in (
        {},
        {"status": "done"},
        {"status": ["todo", "done"]},
        {"status": "todo", "priority": 2},
        {"status": "todo", "q": "same"},
    ):
        response = await client.get(TASKS, params={**params, "cursor": cursor}, headers=alice.headers)
        _cursor_errors(response)
    ok = await client.get(TASKS, params={"cursor": cursor, "status": "todo"}, headers=alice.headers)
    assert ok.status_code == 200


async def test_cursor_of_another_user_is_400(client, alice, bob, sortable):
    cursor = (await _list(client, alice, {"paginate": "cursor", "limit": 2}))["next_cursor"]
    _cursor_errors(await client.get(TASKS, params={"cursor": cursor}, headers=bob.headers))


# --------------------------------------------------------------------------------------------
# Offset pagination


async def test_offset_envelope_and_totals(client, alice, bob):
    await _bulk(client, alice, [{"title": f"t{i}", "priority": i % 2} for i in range(25)])
    await _bulk(client, bob, [{"title": "bob's"}])
    first = await _list(client, alice)
    assert set(first) == {"items", "total", "limit", "offset"}
    assert (len(first["items"]), first["total"], first["limit"], first["offset"]) == (20, 25, 20, 0)
    second = await _list(client, alice, {"offset": 20})
    assert (len(second["items"]), second["total"], second["offset"]) == (5, 25, 20)
    assert not {t["id"] for t in first["items"]} & {t["id"] for t in second["items"]}
    beyond = await _list(client, alice, {"offset": 500})
    assert (beyond["items"], beyond["total"]) == ([], 25)
    filtered = await _list(client, alice, {"priority": 1, "limit": 5})
    assert (len(filtered["items"]), filtered["total"], filtered["limit"]) == (5, 12, 5)
    assert len((await _list(client, alice, {"limit": 100}))["items"]) == 25
    assert len((await _list(client, alice, {"limit": 1}))["items"]) == 1


BAD_QUERY_VALUES = [
    ("limit", "0"),
    ("limit", "101"),
    ("limit", "-1"),
    ("limit", "ten"),
    ("offset", "-1"),
    ("offset", "x"),
    ("offset", "99999999999"),
    ("status", "blocked"),
    ("priority", "5"),
    ("priority", "-1"),
    ("priority", "high"),
    ("label_id", "0"),
    ("label_id", "abc"),
    ("project_id", "0"),
    ("project_id", "99999999999"),
    ("parent_id", "-4"),
    ("inbox", "maybe"),
    ("overdue", "sometimes"),
    ("due_before", "yesterday"),
    ("due_after", "2030-13-01T00:00:00Z"),
    ("due_before", "2030-01-01T00:00:00"),
    ("sort", "colour"),
    ("sort", "-owner"),
    ("sort", ","),
    ("paginate", "pages"),
    ("q", "w" * (MAX_SEARCH_LENGTH + 1)),
]


async def test_out_of_range_query_values_are_400_naming_the_parameter(client, alice):
    await _bulk(client, alice, [{"title": "exists"}])
    wrong = []
    for param, value in BAD_QUERY_VALUES:
        response = await client.get(TASKS, params={param: value}, headers=alice.headers)
        body = response.json()
        named = {e["field"] for e in body.get("errors", [])}
        problem = response.headers["content-type"].startswith("application/problem+json")
        if response.status_code != 400 or body.get("status") != 400 or param not in named or not problem:
            wrong.append((param, value, response.status_code, body))
    assert wrong == []


# --------------------------------------------------------------------------------------------
# Filters


@pytest.fixture
async def world(client, alice, bob) -> dict[str, Any]:
    """Alice's tasks across two projects and the inbox, with labels, statuses and due dates."""
    home = await _project(client, alice, "Home")
    work = await _project(client, alice, "Work")
    red, green, blue = [await _label(client, alice, n) for n in ("red", "green", "blue")]
    specs: dict[str, dict[str, Any]] = {
        "milk": {"title": "Buy Milk", "description": "from the STORE", "project_id": home, "label_ids": [red]},
        "report": {
            "title": "Write report",
            "status": "in_progress",
            "priority": 3,
            "project_id": work,
            "due_at": _at(-2),
            "label_ids": [red, green],
        },
        "late_done": {"title": "Pay rent", "status": "done", "project_id": home, "due_at": _at(-1)},
        "late_todo": {"title": "Call mom", "priority": 4, "due_at": _at(-5), "label_ids": [blue]},
        "future": {"title": "Plan trip", "priority": 1, "due_at": _at(30), "label_ids": [green]},
        "percent": {"title": "100% done", "description": "", "priority": 2},
        "plain": {"title": "100 done", "description": "nothing special", "priority": 2, "project_id": work},
        "under": {"title": "snake_case name", "status": "done"},
        "nounder": {"title": "snakeXcase name", "due_at": _at(3)},
        "backslash": {"title": "path c:\\temp", "project_id": work},
    }
    made = {name: (await _bulk(client, alice, [spec]))[0] for name, spec in specs.items()}
    child = (await _bulk(client, alice, [{"title": "milk subtask", "parent_id": made["milk"]["id"]}]))[0]
    made["child"] = child
    # Bob's look-alikes must never show up in Alice's lists.
    await _bulk(client, bob, [{"title": "Buy Milk", "priority": 4, "due_at": _at(-5)}])
    ids = {name: task["id"] for name, task in made.items()}
    return {"ids": ids, "home": home, "work": work, "red": red, "green": green, "blue": blue}


def _names(world: dict[str, Any], ids: list[int]) -> set[str]:
    by_id = {v: k for k, v in world["ids"].items()}
    assert len(set(ids)) == len(ids), "a task listed twice"
    return {by_id[i] for i in ids}


async def test_no_filter_lists_only_own_tasks(client, alice, world):
    assert _names(world, await _ids(client, alice)) == set(world["ids"])


async def test_filter_project_id(client, alice, world):
    # A subtask lives in its parent's project.
    home = {"milk", "late_done", "child"}
    assert _names(world, await _ids(client, alice, [("project_id", world["home"])])) == home
    assert _names(world, await _ids(client, alice, [("project_id", world["work"])])) == {
        "report",
        "plain",
        "backslash",
    }
    assert await _ids(client, alice, [("project_id", 999_999)]) == []


async def test_filter_inbox(client, alice, world):
    inbox = {"late_todo", "future", "percent", "under", "nounder"}
    assert _names(world, await _ids(client, alice, [("inbox", "true")])) == inbox
    assert _names(world, await _ids(client, alice, [("inbox", "false")])) == set(world["ids"]) - inbox


async def test_filter_parent_id(client, alice, world):
    assert _names(world, await _ids(client, alice, [("parent_id", world["ids"]["milk"])])) == {"child"}
    assert await _ids(client, alice, [("parent_id", world["ids"]["report"])]) == []


async def test_filter_status_repeated_is_or(client, alice, world):
    done = {"late_done", "under"}
    assert _names(world, await _ids(client, alice, [("status", "done")])) == done
    both = await _ids(client, alice, [("status", "done"), ("status", "in_progress")])
    assert _names(world, both) == done | {"report"}
    same_twice = await _ids(client, alice, [("status", "done"), ("status", "done")])
    assert _names(world, same_twice) == done


async def test_filter_priority_repeated_is_or(client, alice, world):
    assert _names(world, await _ids(client, alice, [("priority", "2")])) == {"percent", "plain"}
    either = await _ids(client, alice, [("priority", "4"), ("priority", "3"), ("priority", "1")])
    assert _names(world, either) == {"late_todo", "report", "future"}
    zero = {"milk", "late_done", "under", "nounder", "backslash", "child"}
    assert _names(world, await _ids(client, alice, [("priority", "0")])) == zero


async def test_filter_label_id_repeated_is_any(client, alice, world):
    assert _names(world, await _ids(client, alice, [("label_id", world["red"])])) == {"milk", "report"}
    any_of = await _ids(client, alice, [("label_id", world["red"]), ("label_id", world["green"])])
    assert _names(world, any_of) == {"milk", "report", "future"}  # report has both, listed once
    assert await _ids(client, alice, [("label_id", 999_999)]) == []


async def test_filter_due_before_and_after(client, alice, world):
    past = {"report", "late_done", "late_todo"}
    assert _names(world, await _ids(client, alice, [("due_before", _iso(NOW))])) == past
    assert _names(world, await _ids(client, alice, [("due_after", _iso(NOW))])) == {"future", "nounder"}
    window = [("due_after", _at(-3)), ("due_before", _at(5))]
    assert _names(world, await _ids(client, alice, window)) == {"report", "late_done", "nounder"}
    # Any zone is accepted; the instant is what counts.
    shifted = (NOW + dt.timedelta(days=-3)).astimezone(dt.timezone(dt.timedelta(hours=-7))).isoformat()
    shifted_window = [("due_after", shifted), ("due_before", _at(5))]
    assert _names(world, await _ids(client, alice, shifted_window)) == {"report", "late_done", "nounder"}


async def test_due_bounds_are_strict(client, alice, world):
    future_due = _at(30)
    assert "future" not in _names(world, await _ids(client, alice, [("due_before", future_due)]))
    assert "future" not in _names(world, await _ids(client, alice, [("due_after", future_due)]))


async def test_filter_overdue(client, alice, world):
    # Due in the past and not done: late_done is excluded, tasks without due_at too.
    assert _names(world, await _ids(client, alice, [("overdue", "true")])) == {"report", "late_todo"}


Q_CASES = [
    ("milk", {"milk", "child"}),
    ("MILK", {"milk", "child"}),
    ("buy milk", {"milk"}),
    ("milk store", {"milk"}),  # one word in the title, the other in the description
    ("store", {"milk"}),
    ("milk nothing", set()),
    ("  report   WRITE ", {"report"}),
    ("100%", {"percent"}),
    ("%", {"percent"}),
    ("0% d", {"percent"}),
    ("snake_case", {"under"}),
    ("_", {"under"}),
    ("e_c", {"under"}),
    ("c:\\temp", {"backslash"}),
    ("\\", {"backslash"}),
    ("special", {"plain"}),
]


async def test_filter_q_all_words_case_insensitive_and_literal(client, alice, world):
    for q, expected in Q_CASES:
        assert _names(world, await _ids(client, alice, [("q", q)])) == expected, q


async def test_filters_combine_with_and(client, alice, world):
    params = [("project_id", world["work"]), ("status", "in_progress"), ("status", "todo"), ("priority", "3")]
    assert _names(world, await _ids(client, alice, params)) == {"report"}
    params = [("label_id", world["red"]), ("label_id", world["blue"]), ("overdue", "true"), ("q", "call")]
    assert _names(world, await _ids(client, alice, params)) == {"late_todo"}
    params = [("inbox", "true"), ("priority", "2"), ("q", "done")]
    assert _names(world, await _ids(client, alice, params)) == {"percent"}
    params = [("project_id", world["home"]), ("due_before", _iso(NOW)), ("status", "done"), ("q", "rent")]
    assert _names(world, await _ids(client, alice, params)) == {"late_done"}
    params = [("parent_id", world["ids"]["milk"]), ("q", "subtask"), ("inbox", "false")]
    assert _names(world, await _ids(client, alice, params)) == {"child"}
    params = [("project_id", world["home"]), ("inbox", "true")]
    assert await _ids(client, alice, params) == []


async def test_filtered_totals(client, alice, world):
    body = await _list(client, alice, [("status", "done"), ("status", "todo"), ("limit", "2")])
    assert body["total"] == 10
    assert len(body["items"]) == 2


async def test_listed_tasks_carry_their_labels_sorted_by_name(client, alice, world):
    items = (await _list(client, alice, {"limit": 100}))["items"]
    report = next(t for t in items if t["id"] == world["ids"]["report"])
    assert [lbl["name"] for lbl in report["labels"]] == ["green", "red"]
    assert set(report["labels"][0]) == {"id", "name", "color"}
    milk = next(t for t in items if t["id"] == world["ids"]["milk"])
    assert [lbl["name"] for lbl in milk["labels"]] == ["red"]


# --------------------------------------------------------------------------------------------
# Query cost


async def _count(client, user, query_counter, url: str, params: Any = None) -> tuple[int, dict[str, Any]]:
    query_counter["n"] = 0
    query_counter["active"] = True
    try:
        response = await client.get(url, params=params, headers=user.headers)
    finally:
        query_counter["active"] = False
    assert response.status_code == 200, response.text
    return query_counter["n"], response.json()


async def test_list_costs_a_fixed_number_of_queries(client, alice, query_counter):
    labels = [await _label(client, alice, f"l{i}") for i in range(3)]
    for chunk in range(2):
        await _bulk(
            client,
            alice,
            [{"title": f"t{chunk}-{i}", "label_ids": labels[i % 2 : i % 2 + 2]} for i in range(100)],
        )
    await _bulk(client, alice, [{"title": "last", "label_ids": labels}])

    offset_costs = []
    cursor_first_costs = []
    cursor_next_costs = []
    for limit in (1, 20, 100):
        cost, body = await _count(client, alice, query_counter, TASKS, {"limit": limit, "sort": "title"})
        assert len(body["items"]) == limit
        assert all(len(t["labels"]) >= 2 for t in body["items"])
        offset_costs.append(cost)

        cost, first = await _count(
            client, alice, query_counter, TASKS, {"limit": limit, "sort": "title", "paginate": "cursor"}
        )
        assert len(first["items"]) == limit
        cursor_first_costs.append(cost)

        cost, second = await _count(
            client, alice, query_counter, TASKS, {"limit": limit, "sort": "title", "cursor": first["next_cursor"]}
        )
        assert len(second["items"]) == limit
        assert all(len(t["labels"]) >= 2 for t in second["items"])
        cursor_next_costs.append(cost)

    assert len(set(offset_costs)) == 1, offset_costs
    assert len(set(cursor_first_costs)) == 1, cursor_first_costs
    assert len(set(cursor_next_costs)) == 1, cursor_next_costs
    # Page, count and labels (plus whatever authentication costs); never per row.
    assert 0 < offset_costs[0] <= 5
    # A keyset page skips the count.
    assert cursor_first_costs[0] == cursor_next_costs[0] == offset_costs[0] - 1


async def test_get_one_task_costs_the_same_whatever_its_labels(client, alice, query_counter):
    labels = [await _label(client, alice, f"l{i}") for i in range(10)]
    bare, one, many = await _bulk(
        client,
        alice,
        [{"title": "bare"}, {"title": "one", "label_ids": labels[:1]}, {"title": "many", "label_ids": labels}],
    )
    costs = []
    for task, count in ((bare, 0), (one, 1), (many, 10)):
        cost, body = await _count(client, alice, query_counter, f"{TASKS}/{task['id']}")
        assert len(body["labels"]) == count
        costs.append(cost)
    assert len(set(costs)) == 1, costs
    assert 0 < costs[0] <= 4


async def test_cursor_survives_reordered_repeated_filter_values(client, alice):
    for i in range(3):
        status = "todo" if i % 2 else "done"
        assert (
            await client.post("/api/v1/tasks", json={"title": f"t{i}", "status": status}, headers=alice.headers)
        ).status_code == 201
    first = await client.get("/api/v1/tasks?status=todo&status=done&limit=1&paginate=cursor", headers=alice.headers)
    assert first.status_code == 200
    cursor = first.json()["next_cursor"]
    second = await client.get(
        f"/api/v1/tasks?status=done&status=todo&status=done&limit=1&cursor={cursor}", headers=alice.headers
    )
    assert second.status_code == 200
    assert second.json()["items"][0]["id"] != first.json()["items"][0]["id"]


async def test_offset_total_is_exact_up_to_the_cap_and_null_beyond(client, alice):
    # SPEC "Lists at scale": counting stops past EXACT_TOTAL_MAX, so a page never pays for the whole list.
    from app.db import get_engine
    from app.services.tasks import EXACT_TOTAL_MAX

    insert = (
        "INSERT INTO task (owner, created_by, title, priority)"
        " SELECT $1, $1, 'bulk ' || n, $2 FROM generate_series(1, $3) n"
    )
    await get_engine().fetch(insert, alice.id, 1, EXACT_TOTAL_MAX)
    body = await _list(client, alice, {"limit": 5})
    assert (body["total"], len(body["items"])) == (EXACT_TOTAL_MAX, 5)

    await get_engine().fetch(insert, alice.id, 2, 1)
    body = await _list(client, alice, {"limit": 5, "offset": 10})
    assert body["total"] is None
    assert (len(body["items"]), body["offset"], body["limit"]) == (5, 10, 5)
    # A filter that narrows the list below the cap gets its exact total back.
    assert (await _list(client, alice, {"priority": 2}))["total"] == 1
    # Cursor pages never count.
    assert "total" not in await _list(client, alice, {"paginate": "cursor"})


async def test_a_page_that_ends_the_list_skips_the_count_and_keeps_total_exact(client, alice, query_counter):
    await _bulk(client, alice, [{"title": f"t{i}"} for i in range(7)])
    # Extra statements beyond a page that ends the list: none, or the one count.
    cases = [({"limit": 5, "offset": 5}, 0), ({"limit": 7}, 1), ({"limit": 5}, 1), ({"offset": 50}, 1)]
    base, _ = await _count(client, alice, query_counter, TASKS, {"limit": 20})
    for params, extra in cases:
        cost, body = await _count(client, alice, query_counter, TASKS, params)
        assert body["total"] == 7, params
        assert cost == base + extra, params
