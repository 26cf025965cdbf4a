"""Tasks: filters, sorting, offset and keyset pages, subtasks, labels, bulk writes.

Every list answer costs a fixed number of statements whatever the page size: the page with its
labels, and its count (offset pages only, and only when the page does not reach the list's end).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec
from piccolo.querystring import QueryString

from app.db import get_engine
from app.errors import BadParameterError, InvalidFieldError, NotFoundError
from app.services.common import check_unchanged, delete_owned, from_row, raise_missing_or_stale, utcnow
from app.services.idempotency import Idempotency, run_once
from app.services.listing import (
    after_clause,
    decode_cursor,
    encode_cursor,
    order_sql,
    parse_sort,
    scope_fingerprint,
)
from app.tables import Task, TaskLabel, TaskStatus

SORTABLE = {
    "created_at": Task.created_at,
    "updated_at": Task.updated_at,
    "due_at": Task.due_at,
    "priority": Task.priority,
    "title": Task.title,
    "position": Task.position,
    "id": Task.id,
}
SORT_TYPES: dict[str, type] = {
    "created_at": dt.datetime,
    "updated_at": dt.datetime,
    "due_at": dt.datetime,
    "priority": int,
    "title": str,
    "position": int,
    "id": int,
}
DEFAULT_SORT = "-created_at"
# SPEC "Lists at scale": an offset page's total is exact up to here, null beyond (page by cursor).
EXACT_TOTAL_MAX = 10_000
MAX_BULK = 100
# q: at most this many words, and this many of them (the longest) as trigram index conditions.
MAX_SEARCH_WORDS = 40
INDEXED_SEARCH_WORDS = 4
MAX_SEARCH_LENGTH = 1000
# What q searches: title and description as one lower-cased text. Words hold no whitespace, so a
# word is in it iff it is in the title or the description. The trigram index of the migration
# "trigram search index" is on exactly this expression; the planner uses it only if they match.
SEARCH_TEXT = """lower("task"."title" || ' ' || "task"."description")"""

# Constraint name -> the body field a client must fix.
FK_FIELDS = {
    "task_project_same_owner": ("project_id", "project"),
    "task_project_fkey": ("project_id", "project"),
    "task_parent_same_owner": ("parent_id", "parent"),
    "task_parent_fkey": ("parent_id", "parent"),
}


@dataclass(frozen=True)
class TaskFilters:
    """The list filters of GET /api/v1/tasks; all combine with AND."""

    project_id: int | None = None
    inbox: bool | None = None
    parent_id: int | None = None
    status: Sequence[str] = ()
    priority: Sequence[int] = ()
    label_id: Sequence[int] = ()
    due_before: dt.datetime | None = None
    due_after: dt.datetime | None = None
    overdue: bool | None = None
    q: str | None = None
    words: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        # Repeated words add nothing but cost.
        object.__setattr__(self, "words", tuple(dict.fromkeys((self.q or "").split())))
        if len(self.words) > MAX_SEARCH_WORDS:
            raise BadParameterError("q", f"at most {MAX_SEARCH_WORDS} words")
        # OR-sets: order and repeats carry no meaning, so a cursor survives them.
        for name in ("status", "priority", "label_id"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        for name in ("due_before", "due_after"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                # A naive time has no single instant: PostgreSQL would read it in the session zone.
                raise BadParameterError(name, "a datetime needs a zone (Z or +hh:mm)")


@dataclass
class TaskPage:
    items: list[Task]
    total: int | None
    next_cursor: str | None


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(user_id: int, f: TaskFilters) -> QueryString:
    """The list's WHERE: SQL fragments in one QueryString (Piccolo numbers the ``$n``).

    Written as text, like the rest of the list statement: composing it from Piccolo columns per
    request is slow (a ForeignKey column calls dir() on attribute access; UPSTREAM.md). Every
    value is a bound parameter.
    """
    sql = ['"task"."owner" = {}']
    args: list[Any] = [user_id]

    def add(fragment: str, *values: Any) -> None:
        sql.append(fragment)
        args.extend(values)

    if f.project_id is not None:
        add('"task"."project" = {}', f.project_id)
    if f.inbox is True:
        add('"task"."project" IS NULL')
    elif f.inbox is False:
        add('"task"."project" IS NOT NULL')
    if f.parent_id is not None:
        add('"task"."parent" = {}', f.parent_id)
    if f.status:
        add('"task"."status" = ANY({}::varchar[])', list(f.status))
    if f.priority:
        add('"task"."priority" = ANY({}::integer[])', list(f.priority))
    if f.label_id:
        add('"task"."id" IN (SELECT tl.task FROM task_label tl WHERE tl.label = ANY({}::integer[]))', list(f.label_id))
    if f.due_before is not None:
        add('"task"."due_at" < {}', f.due_before)
    if f.due_after is not None:
        add('"task"."due_at" > {}', f.due_after)
    if f.overdue is True:
        add(""""task"."due_at" < {} AND "task"."status" <> 'done'""", utcnow())
    elif f.overdue is False:
        add("""("task"."due_at" IS NULL OR "task"."due_at" >= {} OR "task"."status" = 'done')""", utcnow())
    for fragment, patterns in _search(f.words):
        add(fragment, *patterns)
    return QueryString(" AND ".join(sql), *args)


def _search(words: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """The WHERE fragments of ``q``: every word must be in SEARCH_TEXT.

    The longest words each get a LIKE the trigram index can serve (they narrow the most); the
    rest share one LIKE ALL, which lower-cases a row's text once instead of once per word (the
    index never serves LIKE ALL). Patterns are lower-cased by PostgreSQL, as the text is.
    """
    patterns = [f"%{_escape_like(word)}%" for word in sorted(words, key=len, reverse=True)]
    for pattern in patterns[:INDEXED_SEARCH_WORDS]:
        yield f"{SEARCH_TEXT} LIKE lower({{}})", [pattern]
    if rest := patterns[INDEXED_SEARCH_WORDS:]:
        yield f"{SEARCH_TEXT} LIKE ALL (ARRAY[{', '.join('lower({})' for _ in rest)}])", rest


# Fixed statements on the hot paths: building the equivalent Piccolo join (TaskLabel.label.name,
# ...) on every request costs more CPU than running it (each ForeignKey attribute access copies
# columns and calls dir()).
LABELS_OF_TASKS = (
    "SELECT tl.task, l.id, l.name, l.color FROM task_label tl JOIN label l ON l.id = tl.label"
    " WHERE tl.task = ANY({}::integer[]) ORDER BY l.name, l.id"
)
LINK_LABELS = (
    "WITH linked AS (INSERT INTO task_label (task, label) SELECT {}, l.id FROM label l"
    " WHERE l.owner = {} AND l.id = ANY({}::integer[]) RETURNING label)"
    " SELECT l.id, l.name, l.color FROM linked JOIN label l ON l.id = linked.label ORDER BY l.name, l.id"
)


async def attach_labels(tasks: list[Task]) -> list[Task]:
    """Set ``labels`` ([{id, name, color}] sorted by name, then id) on every task: one query."""
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if tasks:
        for row in await TaskLabel.raw(LABELS_OF_TASKS, [t.id for t in tasks]):
            by_task[row["task"]].append({"id": row["id"], "name": row["name"], "color": row["color"]})
    for task in tasks:
        task.labels = by_task.get(task.id, [])  # type: ignore[attr-defined]
    return tasks


# Reads carry the labels in the same statement as the tasks, as a JSON column: a page or one
# task is one round trip. GET /tasks/{id}, the most frequent request, is one fixed statement,
# as Piccolo would rebuild the SELECT on every call.
COLUMNS = [c._meta.db_column_name for c in Task._meta.columns]
# A task's labels as the API shows them (sorted by name, then id), as a JSON array.
LABELS_JSON = (
    "COALESCE((SELECT json_agg(json_build_object('id', l.id, 'name', l.name, 'color', l.color)"
    " ORDER BY l.name, l.id) FROM task_label tl JOIN label l ON l.id = tl.label WHERE tl.task = {task}.id), '[]')"
)
PAGE_COLUMNS = ", ".join([*(f'"task"."{c}"' for c in COLUMNS), LABELS_JSON.format(task='"task"') + " AS labels"])
GET_TASK = "SELECT {columns}, {labels} AS labels FROM task t WHERE t.id = $1 AND t.owner = $2".format(
    columns=", ".join(f't."{c}"' for c in COLUMNS), labels=LABELS_JSON.format(task="t")
)


def _statement(template: str, where: QueryString, *args: Any) -> tuple[str, list[Any]]:
    """``template`` with the list's WHERE in its first ``{}``, compiled to ``$n`` SQL and values."""
    sql, values = QueryString(template, where, *args).compile_string(engine_type="postgres")
    return sql, values


async def list_tasks(
    user_id: int,
    filters: TaskFilters,
    *,
    sort: str | None,
    limit: int,
    offset: int,
    cursor: str | None = None,
    use_cursor: bool = False,
) -> TaskPage:
    """A page of the user's tasks.

    With ``use_cursor`` (or a ``cursor``), the page is found by keyset (no count, no offset) and
    carries ``next_cursor``; otherwise it is an offset page with ``total``.
    """
    keys = parse_sort(sort, SORTABLE, DEFAULT_SORT)
    where = _where(user_id, filters)
    keyset = use_cursor or cursor is not None
    scope = scope_fingerprint(user_id, filters) if keyset else ""
    if cursor is not None:
        values = decode_cursor(cursor, keys, scope, [SORT_TYPES[k.field] for k in keys])
        where = QueryString("{} AND {}", where, after_clause(Task, keys, values).querystring)
    # Only the WHERE is built per request; the rest is SQL text fixed per sort. The page's
    # labels come in the same statement (a JSON column), so a page is one round trip.
    order = order_sql(Task, keys)
    engine = get_engine()
    if keyset:
        with _search_cost(filters):
            (rows,) = await engine.fetch_many(
                _statement(f"SELECT {PAGE_COLUMNS} FROM task WHERE {{}} ORDER BY {order} LIMIT {{}}", where, limit + 1)
            )
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(keys, scope, [rows[-1][k.field] for k in keys]) if has_more and rows else None
        return TaskPage(items=[_task_with_labels(r) for r in rows], total=None, next_cursor=next_cursor)
    # Labels are built for the page's rows only (a select-list subquery under OFFSET would run
    # for every skipped row). Past the first page the skipped rows are bare ids, cheaper to sort
    # and skip than whole rows; on the first page, fetching by id again would only add work.
    if offset == 0:
        page = (
            f"SELECT {PAGE_COLUMNS} FROM (SELECT * FROM task WHERE {{}} ORDER BY {order} LIMIT {{}} OFFSET {{}}) task"
        )
    else:
        page = (
            f'SELECT {PAGE_COLUMNS} FROM task WHERE "task"."id" IN (SELECT "task"."id" FROM task WHERE {{}}'
            f" ORDER BY {order} LIMIT {{}} OFFSET {{}})"
        )
    with _search_cost(filters):
        sql, values = _statement(f"{page} ORDER BY {order}", where, limit, offset)
        rows = await engine.fetch(sql, *values)
        if len(rows) < limit and (rows or offset == 0):
            total = offset + len(rows)  # this page ends the list: nothing left to count
        else:
            # Counting stops past EXACT_TOTAL_MAX, so a page's cost does not grow with the list.
            sql, values = _statement(
                "SELECT count(*) AS count FROM (SELECT 1 FROM task WHERE {} LIMIT {}) n", where, EXACT_TOTAL_MAX + 1
            )
            total = (await engine.fetch(sql, *values))[0]["count"]
    return TaskPage(
        items=[_task_with_labels(r) for r in rows], total=total if total <= EXACT_TOTAL_MAX else None, next_cursor=None
    )


@contextmanager
def _search_cost(filters: TaskFilters) -> Iterator[None]:
    """A list statement the server cancelled (its statement timeout) while searching is a 400 on
    ``q``, which the client can narrow, not an outage to retry (503)."""
    try:
        yield
    except asyncpg.QueryCanceledError:
        if not filters.words:
            raise
        raise BadParameterError("q", "too costly; use fewer or longer words") from None


async def get_task(user_id: int, task_id: int) -> Task:
    rows = await get_engine().fetch(GET_TASK, task_id, user_id)
    if not rows:
        raise NotFoundError("Task", task_id)
    return _task_with_labels(rows[0])


def _task_with_labels(record: Any) -> Task:
    """A task from a row whose ``labels`` column is the JSON array built by LABELS_JSON."""
    row = dict(record)
    row["labels"] = msgspec.json.decode(row["labels"])  # an attribute beside the columns
    return from_row(Task, row)


# Writes on the hot path are one statement each, as in a hand-written service (Piccolo would
# rebuild each INSERT/UPDATE on every request, and labels would cost extra round trips). The SQL
# is derived from the Task table once and cached by asyncpg as a prepared statement.
# Every column but those the database fills (id, and version from its default), with the SQL
# type each parameter is cast to, read from the table.
_INSERTED = tuple(c._meta.db_column_name for c in Task._meta.columns if c._meta.name not in {"id", "version"})
_CASTS = {c._meta.db_column_name: c.column_type.split("(")[0].lower() for c in Task._meta.columns}
_RETURNING = ", ".join(f'"{c}"' for c in COLUMNS)
_INSERTED_LIST = ", ".join(f'"{c}"' for c in _INSERTED)
# Labels are checked, the task inserted and linked, and the answer returned in one statement;
# when a label is not the user's, nothing is inserted (no rows come back).
CREATE_TASK_SQL = (
    "WITH wanted AS (SELECT l.id, l.name, l.color FROM label l"
    f" WHERE l.owner = $1 AND l.id = ANY(${len(_INSERTED) + 1}::integer[])),"
    f" t AS (INSERT INTO task ({_INSERTED_LIST})"
    f" SELECT {', '.join(f'${i}::{_CASTS[c]}' for i, c in enumerate(_INSERTED, start=1))}"
    f" WHERE (SELECT count(*) FROM wanted) = ${len(_INSERTED) + 2} RETURNING *),"
    " linked AS (INSERT INTO task_label (task, label) SELECT t.id, w.id FROM t, wanted w)"
    f" SELECT {_RETURNING}, COALESCE((SELECT json_agg(json_build_object('id', w.id, 'name', w.name,"
    " 'color', w.color) ORDER BY w.name, w.id) FROM wanted w), '[]') AS labels FROM t"
)


@lru_cache(maxsize=256)
def _update_sql(fields: tuple[str, ...], check_version: bool, many: bool = False) -> str:
    """``UPDATE task ... RETURNING`` the task with its labels; $1 id, $2 owner, $3 now, then fields.

    ``many``: $1 is an array of ids (bulk PATCH), and the labels are left to the caller.
    """
    sets = []
    for number, name in enumerate(fields, start=4):
        column = Task._meta.get_column_by_name(name)._meta.db_column_name
        sets.append(f'"{column}" = ${number}')
        if name == "status":
            sets.append(
                f"\"completed_at\" = CASE WHEN ${number}::varchar = 'done'"
                ' THEN COALESCE("completed_at", $3) ELSE NULL END'
            )
    sets += ['"version" = "version" + 1', '"updated_at" = $3']
    where = ("id = ANY($1::integer[])" if many else "id = $1") + " AND owner = $2"
    if check_version:
        where += f" AND version = ${len(fields) + 4}"
    returning = _RETURNING if many else f"{_RETURNING}, {LABELS_JSON.format(task='task')} AS labels"
    return f"UPDATE task SET {', '.join(sets)} WHERE {where} RETURNING {returning}"


# --------------------------------------------------------------------------------------------
# Writes


def _fk_error(exc: asyncpg.ForeignKeyViolationError, data: dict[str, Any], index: int | None) -> InvalidFieldError:
    field_name, key = FK_FIELDS.get(exc.constraint_name or "", ("body", ""))
    message = f"{key} {data.get(key)} does not exist" if key else "references an object that does not exist"
    return _invalid(field_name, message, index)


def _invalid(field_name: str, message: str, index: int | None) -> InvalidFieldError:
    if index is None:
        return InvalidFieldError(field_name, message)
    return InvalidFieldError(f"tasks[{index}].{field_name}", message, index=index)


async def _replace_labels(
    user_id: int, task_id: int, label_ids: list[int], index: int | None = None, *, new_task: bool = False
) -> list[dict[str, Any]]:
    """Make the task's label set exactly ``label_ids``; every id must be the user's label.

    Returns the labels as the API shows them (sorted by name, then id). ``new_task``: the task was
    created in this transaction, so it has no links to delete yet.
    """
    wanted = list(dict.fromkeys(label_ids))
    if not new_task:
        await TaskLabel.delete().where(TaskLabel.task == task_id)
    if not wanted:
        return []
    linked = await TaskLabel.raw(LINK_LABELS, task_id, user_id, wanted)
    if len(linked) != len(wanted):
        missing = sorted(set(wanted) - {r["id"] for r in linked})
        raise _invalid("label_ids", f"labels {missing} do not exist", index)
    return [{"id": r["id"], "name": r["name"], "color": r["color"]} for r in linked]


async def _check_no_cycle(user_id: int, task_id: int, parent_id: int) -> None:
    """422 if ``parent_id`` is the task itself or one of its descendants."""
    if parent_id == task_id:
        raise InvalidFieldError("parent_id", "a task cannot be its own parent")
    rows = await Task.raw(
        "WITH RECURSIVE ancestors(id, parent) AS ("
        " SELECT id, parent FROM task WHERE id = {} AND owner = {}"
        " UNION SELECT t.id, t.parent FROM task t JOIN ancestors a ON t.id = a.parent"
        ") SELECT 1 AS hit FROM ancestors WHERE id = {} LIMIT 1",
        parent_id,
        user_id,
        task_id,
    )
    if rows:
        raise InvalidFieldError("parent_id", "a task cannot become its own ancestor")


async def _lock_tree(user_id: int) -> None:
    # Serialises re-parenting per user, so two concurrent moves cannot close a cycle together.
    await Task.raw("SELECT pg_advisory_xact_lock(hashtextextended('task-tree', {}))", user_id)


async def _insert_task(user_id: int, data: dict[str, Any], index: int | None = None) -> Task:
    """Insert one task with its labels (one statement); the result carries ``labels``."""
    wanted = list(dict.fromkeys(data.get("label_ids") or []))
    now = utcnow()
    values = {
        "owner": user_id,
        "project": data.get("project"),
        "parent": data.get("parent"),
        "title": data["title"],
        "description": data.get("description", ""),
        "status": data.get("status", TaskStatus.todo.value),
        "priority": data.get("priority", 0),
        "due_at": data.get("due_at"),
        "completed_at": now if data.get("status") == TaskStatus.done.value else None,
        "position": data.get("position", 0),
        "created_at": now,
        "updated_at": now,
    }
    engine = get_engine()
    try:
        rows = await engine.fetch(CREATE_TASK_SQL, *(values[c] for c in _INSERTED), wanted, len(wanted))
    except asyncpg.ForeignKeyViolationError as exc:
        raise _fk_error(exc, data, index) from None
    if not rows:  # some label is not the user's: nothing was inserted
        found = await engine.fetch("SELECT id FROM label WHERE owner = $1 AND id = ANY($2::integer[])", user_id, wanted)
        missing = sorted(set(wanted) - {r["id"] for r in found})
        raise _invalid("label_ids", f"labels {missing} do not exist", index)
    return _task_with_labels(rows[0])


def _snapshot(tasks: list[Task]) -> list[dict[str, Any]]:
    return [{**{c._meta.name: getattr(t, c._meta.name) for c in Task._meta.columns}, "labels": t.labels} for t in tasks]  # type: ignore[attr-defined]


async def create_task(
    user_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Task, bool]:
    """Create one task (with its labels) in one transaction. Returns (task, replayed)."""

    async def create() -> list[dict[str, Any]]:
        return _snapshot([await _insert_task(user_id, data)])  # one statement: atomic by itself

    rows, replayed = await run_once(user_id, idempotency, create)
    return _restore(rows)[0], replayed


async def create_tasks(
    user_id: int, items: list[dict[str, Any]], *, idempotency: Idempotency | None = None
) -> tuple[list[Task], bool]:
    """Create up to 100 tasks, all or nothing; an error names the failing item's index."""

    async def create() -> list[dict[str, Any]]:
        async with get_engine().transaction():
            tasks = [await _insert_task(user_id, item, index) for index, item in enumerate(items)]
        return _snapshot(tasks)

    rows, replayed = await run_once(user_id, idempotency, create)
    return _restore(rows), replayed


def _restore(rows: list[dict[str, Any]]) -> list[Task]:
    tasks = []
    for row in rows:
        labels = row.pop("labels", [])
        task = from_row(Task, row)
        task.labels = labels  # type: ignore[attr-defined]
        tasks.append(task)
    return tasks


async def update_task(user_id: int, task_id: int, changes: dict[str, Any], *, expected_version: int | None) -> Task:
    """Apply a partial change. Status drives ``completed_at``; ``label_ids`` replaces the set.

    The version check and the write are one UPDATE, so concurrent writers with the same
    If-Match see exactly one success.
    """
    if not changes:
        task = await check_unchanged(Task, "Task", owner_id=user_id, obj_id=task_id, expected_version=expected_version)
        return (await attach_labels([task]))[0]
    fields = {k: v for k, v in changes.items() if k != "label_ids"}
    if "label_ids" not in changes and changes.get("parent") is None:
        return await _update_one(user_id, task_id, fields, expected_version)
    async with get_engine().transaction():
        if changes.get("parent") is not None:
            await _lock_tree(user_id)
            await _check_no_cycle(user_id, task_id, changes["parent"])
        task = await _update_one(user_id, task_id, fields, expected_version)
        if "label_ids" in changes:
            task.labels = await _replace_labels(user_id, task_id, changes["label_ids"])  # type: ignore[attr-defined]
    return task


async def _update_one(user_id: int, task_id: int, fields: dict[str, Any], expected_version: int | None) -> Task:
    sql = _update_sql(tuple(fields), expected_version is not None)
    args = [task_id, user_id, utcnow(), *fields.values()]
    if expected_version is not None:
        args.append(expected_version)
    try:
        rows = await get_engine().fetch(sql, *args)
    except asyncpg.ForeignKeyViolationError as exc:
        raise _fk_error(exc, fields, None) from None
    if not rows:
        await raise_missing_or_stale(Task, "Task", user_id, task_id)
    return _task_with_labels(rows[0])


async def update_tasks(user_id: int, ids: list[int], changes: dict[str, Any]) -> list[Task]:
    """Apply the same partial change to several tasks, all or nothing; 404 names a foreign id."""
    wanted = list(dict.fromkeys(ids))
    async with get_engine().transaction():
        if changes.get("parent") is not None:
            await _lock_tree(user_id)
            for task_id in wanted:
                await _check_no_cycle(user_id, task_id, changes["parent"])
        fields = {k: v for k, v in changes.items() if k != "label_ids"}
        try:
            rows = (
                await get_engine().fetch(
                    _update_sql(tuple(fields), False, many=True), wanted, user_id, utcnow(), *fields.values()
                )
                if changes  # an empty change writes nothing and keeps versions
                else await Task.select(*Task._meta.columns).where(Task.id.is_in(wanted) & (Task.owner == user_id))
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise _fk_error(exc, changes, None) from None
        found = {r["id"] for r in rows}
        if missing := [i for i in wanted if i not in found]:
            raise NotFoundError("Task", missing[0])
        if "label_ids" in changes:
            for task_id in wanted:
                await _replace_labels(user_id, task_id, changes["label_ids"])
    by_id = {r["id"]: r for r in rows}
    return await attach_labels([from_row(Task, dict(by_id[i])) for i in wanted])


async def delete_task(user_id: int, task_id: int, *, expected_version: int | None) -> None:
    """Delete a task; its subtasks and comments go with it (ON DELETE CASCADE)."""
    await delete_owned(Task, "Task", owner_id=user_id, obj_id=task_id, expected_version=expected_version)
