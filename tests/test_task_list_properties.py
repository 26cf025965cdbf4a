"""Property tests for GET /api/v1/tasks: any data, any filters, any allowed sort.

Walking every page (offset pages with a random limit, and keyset pages through ``next_cursor``)
must give exactly the tasks the filters select, in exactly the requested order. The expected
answer is computed here in Python from the objects the API returned on create: ties are broken
by id in the direction of the first key, tasks without ``due_at`` sort last both ways, and
titles use only ASCII lowercase letters and digits, which PostgreSQL's C and en_US collations
order the way Python compares strings.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.tables import Task, nulls_last, sortable, value_type

STATUSES = ["todo", "in_progress", "done"]
# The sortable fields and which sort NULLs last, read from the table.
FIELDS = list(sortable(Task))
NULLS_LAST = {name for name, column in sortable(Task).items() if nulls_last(column)}
TIMESTAMPS = {column._meta.name for column in Task._meta.columns if value_type(column) is dt.datetime}
N_PROJECTS = 2
N_LABELS = 3
TEXT = "ab01"  # a small alphabet, so titles tie and q words hit
UTC = dt.UTC
DUES = [
    dt.datetime(2001, 1, 1, tzinfo=UTC),
    dt.datetime(2001, 1, 1, 12, 30, tzinfo=UTC),
    dt.datetime(2099, 6, 1, tzinfo=UTC),
    dt.datetime(2099, 6, 1, 0, 0, 0, 500000, tzinfo=UTC),
]
# Bounds equal to due dates check that due_before/due_after are strict.
DUE_BOUNDS = [*DUES, dt.datetime(1999, 1, 1, tzinfo=UTC), dt.datetime(2050, 1, 1, tzinfo=UTC)]

task_data = st.fixed_dictionaries(
    {
        "title": st.text(TEXT, min_size=1, max_size=3),
        "description": st.text(TEXT, max_size=3),
        "status": st.sampled_from(STATUSES),
        "priority": st.integers(0, 4),
        "due_at": st.one_of(st.none(), st.sampled_from(DUES)),
        "project": st.one_of(st.none(), st.integers(0, N_PROJECTS - 1)),
        "labels": st.sets(st.integers(0, N_LABELS - 1), max_size=N_LABELS),
        "position": st.integers(-2, 2),
        "parent": st.one_of(st.none(), st.integers(0, 3)),
    }
)

FILTERS = {
    "project": st.integers(0, N_PROJECTS - 1),
    "inbox": st.booleans(),
    "parent": st.integers(0, 3),
    "status": st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3),
    "priority": st.lists(st.integers(0, 4), min_size=1, max_size=3),
    "label": st.lists(st.integers(0, N_LABELS - 1), min_size=1, max_size=2),
    "due_before": st.sampled_from(DUE_BOUNDS),
    "due_after": st.sampled_from(DUE_BOUNDS),
    "overdue": st.booleans(),
    # Mixed case: matching is case-insensitive.
    "q": st.lists(st.text(TEXT + "AB", min_size=1, max_size=2), min_size=1, max_size=2).map(" ".join),
}


@st.composite
def filters_data(draw: st.DrawFn) -> dict[str, Any]:
    """Up to two filters at a time: more would select nothing from a small data set."""
    names = draw(st.lists(st.sampled_from(sorted(FILTERS)), max_size=2, unique=True))
    return {name: draw(FILTERS[name]) for name in names}


sort_data = st.one_of(
    st.none(),
    st.lists(st.tuples(st.sampled_from(FIELDS), st.booleans()), min_size=1, max_size=3, unique_by=lambda k: k[0]),
)


def _time(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _sort_param(sort: list[tuple[str, bool]] | None) -> str | None:
    if sort is None:
        return None
    return ",".join(("-" if descending else "") + field for field, descending in sort)


def _effective_keys(sort: list[tuple[str, bool]] | None) -> list[tuple[str, bool]]:
    """The documented order: the keys up to ``id``, then ``id`` in the first key's direction."""
    keys: list[tuple[str, bool]] = []
    for field, descending in sort or [("created_at", True)]:
        keys.append((field, descending))
        if field == "id":
            return keys
    return [*keys, ("id", keys[0][1])]


def _compare(keys: list[tuple[str, bool]], a: dict[str, Any], b: dict[str, Any]) -> int:
    for field, descending in keys:
        left, right = a[field], b[field]
        if field in NULLS_LAST:
            if left is None and right is None:
                continue
            if left is None or right is None:
                return 1 if left is None else -1  # NULLs last, whichever the direction
        if left == right:
            continue
        result = -1 if left < right else 1
        return -result if descending else result
    return 0


def _expected(
    tasks: list[dict[str, Any]], flt: dict[str, Any], ids: dict[str, list[int]], now: dt.datetime
) -> list[dict[str, Any]]:
    def selected(t: dict[str, Any]) -> bool:
        checks = [
            "project" not in flt or t["project_id"] == ids["projects"][flt["project"]],
            "inbox" not in flt or (t["project_id"] is None) == flt["inbox"],
            "parent" not in flt or (ids["roots"] and t["parent_id"] == ids["roots"][flt["parent"] % len(ids["roots"])]),
            "status" not in flt or t["status"] in flt["status"],
            "priority" not in flt or t["priority"] in flt["priority"],
            "label" not in flt or bool({ids["labels"][i] for i in flt["label"]} & t["label_set"]),
            "due_before" not in flt or (t["due_at"] is not None and t["due_at"] < flt["due_before"]),
            "due_after" not in flt or (t["due_at"] is not None and t["due_at"] > flt["due_after"]),
            "q" not in flt
            or all(w.lower() in t["title"].lower() or w.lower() in t["description"].lower() for w in flt["q"].split()),
        ]
        if "overdue" in flt:
            overdue = t["due_at"] is not None and t["due_at"] < now and t["status"] != "done"
            checks.append(overdue == flt["overdue"])
        return all(checks)

    return [t for t in tasks if selected(t)]


def _query(flt: dict[str, Any], ids: dict[str, list[int]], sort: str | None) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    if "project" in flt:
        params.append(("project_id", str(ids["projects"][flt["project"]])))
    if "inbox" in flt:
        params.append(("inbox", str(flt["inbox"]).lower()))
    if "parent" in flt:
        # With no parent tasks at all, name an id that is nobody's parent.
        roots = ids["roots"]
        params.append(("parent_id", str(roots[flt["parent"] % len(roots)] if roots else 2_000_000_000)))
    params += [("status", s) for s in flt.get("status", [])]
    params += [("priority", str(p)) for p in flt.get("priority", [])]
    params += [("label_id", str(ids["labels"][i])) for i in flt.get("label", [])]
    for name in ("due_before", "due_after"):
        if name in flt:
            params.append((name, flt[name].isoformat()))
    if "overdue" in flt:
        params.append(("overdue", str(flt["overdue"]).lower()))
    if "q" in flt:
        params.append(("q", flt["q"]))
    if sort is not None:
        params.append(("sort", sort))
    return params


async def _reset() -> None:
    from app.db import get_engine

    await get_engine().run_ddl(
        "TRUNCATE project, label, task, task_label, comment, idempotency_key RESTART IDENTITY CASCADE"
    )


async def _create_data(
    client: httpx.AsyncClient, headers: dict[str, str], data: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    ids: dict[str, list[int]] = {"projects": [], "labels": [], "roots": []}
    for n in range(N_PROJECTS):
        response = await client.post("/api/v1/projects", json={"name": f"p{n}"}, headers=headers)
        assert response.status_code == 201
        ids["projects"].append(response.json()["id"])
    for n in range(N_LABELS):
        response = await client.post("/api/v1/labels", json={"name": f"l{n}"}, headers=headers)
        assert response.status_code == 201
        ids["labels"].append(response.json()["id"])

    def body(item: dict[str, Any], parent_id: int | None) -> dict[str, Any]:
        return {
            "title": item["title"],
            "description": item["description"],
            "status": item["status"],
            "priority": item["priority"],
            "due_at": None if item["due_at"] is None else item["due_at"].isoformat(),
            "project_id": None if item["project"] is None else ids["projects"][item["project"]],
            "label_ids": [ids["labels"][i] for i in sorted(item["labels"])],
            "position": item["position"],
            "parent_id": parent_id,
        }

    created: list[dict[str, Any]] = []
    # Roots first (one bulk create, so they share a transaction and may tie on timestamps), then
    # the subtasks, each under one of the roots.
    roots = [item for item in data if item["parent"] is None]
    children = [item for item in data if item["parent"] is not None]
    if roots:
        response = await client.post(
            "/api/v1/tasks/bulk", json={"tasks": [body(i, None) for i in roots]}, headers=headers
        )
        assert response.status_code == 201, response.text
        created += response.json()["items"]
        ids["roots"] = [t["id"] for t in created[: min(4, len(created))]]
    if children:
        parents = ids["roots"]
        # A subtask lives in its parent's project: given no project, it takes the parent's.
        bodies = [
            body({**i, "project": None}, parents[i["parent"] % len(parents)] if parents else None) for i in children
        ]
        response = await client.post("/api/v1/tasks/bulk", json={"tasks": bodies}, headers=headers)
        assert response.status_code == 201, response.text
        created += response.json()["items"]
    for task in created:
        for field in TIMESTAMPS:
            task[field] = _time(task[field])
        task["label_set"] = {label["id"] for label in task["labels"]}
    return created, ids


async def _walk_offset(
    client: httpx.AsyncClient, headers: dict[str, str], params: list[tuple[str, str]], limit: int, total: int
) -> list[int]:
    seen: list[int] = []
    offset = 0
    while True:
        response = await client.get(
            "/api/v1/tasks", params=[*params, ("limit", str(limit)), ("offset", str(offset))], headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == total
        assert (page["limit"], page["offset"]) == (limit, offset)
        assert len(page["items"]) == max(0, min(limit, total - offset))
        seen += [item["id"] for item in page["items"]]
        offset += limit
        if offset >= total:
            return seen


async def _walk_cursor(
    client: httpx.AsyncClient, headers: dict[str, str], params: list[tuple[str, str]], limit: int, total: int
) -> list[int]:
    seen: list[int] = []
    extra = [("paginate", "cursor")]
    for _ in range(total + 2):
        response = await client.get("/api/v1/tasks", params=[*params, ("limit", str(limit)), *extra], headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert "total" not in page
        assert page["limit"] == limit
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            return seen
        assert len(page["items"]) == limit  # only a full page has a next one
        extra = [("cursor", page["next_cursor"])]
    raise AssertionError(f"cursor walk did not end after {total + 2} pages: {seen}")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.lists(task_data, min_size=4, max_size=20),
    flt=filters_data(),
    sort=sort_data,
    offset_limit=st.integers(1, 6),
    cursor_limit=st.integers(1, 6),
)
async def test_every_page_walk_returns_exactly_the_filtered_set_in_order(
    client, alice, data, flt, sort, offset_limit, cursor_limit
):
    await _reset()
    tasks, ids = await _create_data(client, alice.headers, data)
    assert len(tasks) == len(data)

    keys = _effective_keys(sort)
    params = _query(flt, ids, _sort_param(sort))
    expected = sorted(
        _expected(tasks, flt, ids, dt.datetime.now(UTC)), key=functools.cmp_to_key(functools.partial(_compare, keys))
    )
    expected_ids = [t["id"] for t in expected]

    by_offset = await _walk_offset(client, alice.headers, params, offset_limit, len(expected))
    assert by_offset == expected_ids, (params, keys)
    by_cursor = await _walk_cursor(client, alice.headers, params, cursor_limit, len(expected))
    assert by_cursor == expected_ids, (params, keys)
