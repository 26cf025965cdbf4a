"""Tasks: filters, sorting, offset and keyset pages, subtasks, labels, bulk writes.

Every statement is built with Piccolo once per shape (which filters are given, the sort, the
page kind) and bound per call (app/services/query.py); who may see or change a task is decided
by app/services/access.py inside each statement. Every list answer costs a fixed number of
statements whatever the page size: the page with its labels, and its count (offset pages only,
and only when the page does not reach the list's end).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec
from piccolo.custom_types import Combinable
from piccolo.query import SelectRaw
from piccolo.querystring import QueryString

from app.errors import (
    BadParameterError,
    ConflictError,
    ForbiddenError,
    InvalidFieldError,
    NotFoundError,
    PreconditionFailedError,
)
from app.services import access, sql
from app.services.common import from_row, utcnow
from app.services.idempotency import Idempotency, run_once
from app.services.listing import (
    Sort,
    after_clause,
    after_values,
    apply_order,
    decode_cursor,
    encode_cursor,
    order_sql,
    parse_sort,
    scope_fingerprint,
)
from app.services.query import Param, Statement, on_one_connection, querystring, transaction
from app.tables import Label, ProjectRole, Task, TaskAssignee, TaskLabel, TaskStatus, sortable

SORTABLE = sortable(Task)
DEFAULT_SORT = "-created_at"
# SPEC "Lists at scale": an offset page's total is exact up to here, null beyond (page by cursor).
EXACT_TOTAL_MAX = 10_000
MAX_BULK = 100
# q: at most this many words, and this many of them (the longest) as trigram index conditions.
MAX_SEARCH_WORDS = 40
INDEXED_SEARCH_WORDS = 4
MAX_SEARCH_LENGTH = 1000

# Constraint name -> the body field a client must fix.
FK_FIELDS = {
    "task_project_same_owner": ("project_id", "project"),
    "task_project_fkey": ("project_id", "project"),
    "task_parent_same_owner": ("parent_id", "parent"),
    "task_parent_fkey": ("parent_id", "parent"),
    "task_parent_same_project": ("parent_id", "parent"),
}

DONE = TaskStatus.done.value
NOW = Param("now")


@dataclass(frozen=True)
class TaskFilters:
    """The list filters of GET /api/v1/tasks; all combine with AND. Each is defined in FILTERS."""

    project_id: int | None = None
    inbox: bool | None = None
    parent_id: int | None = None
    status: Sequence[str] = ()
    priority: Sequence[int] = ()
    label_id: Sequence[int] = ()
    assignee_id: Sequence[int] = ()
    unassigned: bool | None = None
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
        for name in ("status", "priority", "label_id", "assignee_id"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        for name in ("due_before", "due_after"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                # A naive time has no single instant: PostgreSQL would read it in the session zone.
                raise BadParameterError(name, "a datetime needs a zone (Z or +hh:mm)")


# How each list filter narrows the tasks: the one place a filter is defined. Each gets the
# filter's value (a boolean filter picks its condition by it) and the parameter its value is
# bound to; BOUND says what is bound when it is not the value itself.
FILTERS: dict[str, Callable[[Any, Param], Combinable]] = {
    "project_id": lambda _, p: Task.project == p,
    "inbox": lambda on, _: Task.project.is_null() if on else Task.project.is_not_null(),
    "parent_id": lambda _, p: Task.parent == p,
    "status": lambda _, p: sql.any_of(Task.status, p),
    "priority": lambda _, p: sql.any_of(Task.priority, p),
    "label_id": lambda _, p: Task.id.is_in(TaskLabel.select(TaskLabel.task).where(sql.any_of(TaskLabel.label, p))),
    "assignee_id": lambda _, p: Task.id.is_in(
        TaskAssignee.select(TaskAssignee.task).where(sql.any_of(TaskAssignee.assignee, p))
    ),
    "unassigned": lambda on, _: (Task.id.not_in if on else Task.id.is_in)(TaskAssignee.select(TaskAssignee.task)),
    "due_before": lambda _, p: Task.due_at < p,
    "due_after": lambda _, p: Task.due_at > p,
    "overdue": lambda on, now: (
        (Task.due_at < now) & (Task.status != DONE)
        if on
        else (Task.due_at.is_null() | (Task.due_at >= now) | (Task.status == DONE))
    ),
}
BOUND: dict[str, Callable[[Any], Any]] = {"overdue": lambda _: utcnow()}

# A list statement's shape: (filter, its boolean value or None) per given filter, and the
# search's (indexed words, whether more words follow).
Shape = tuple[tuple[tuple[str, Any], ...], tuple[int, bool]]


@dataclass
class TaskPage:
    # The statement's rows (asyncpg Records keyed by column, with labels and assignee_ids), which
    # TaskReadDTO encodes as they are: a Task instance per row would cost more than the encoding.
    items: list[asyncpg.Record]
    total: int | None
    next_cursor: str | None


def _shape(f: TaskFilters) -> Shape:
    given = []
    for name in FILTERS:
        value = getattr(f, name)
        if value is not None and value != ():
            given.append((name, value if isinstance(value, bool) else None))
    indexed = min(len(f.words), INDEXED_SEARCH_WORDS)
    return tuple(given), (indexed, len(f.words) > indexed)


def _values(user_id: int, f: TaskFilters, shape: Shape) -> dict[str, Any]:
    values: dict[str, Any] = {"user": user_id}
    for name, _ in shape[0]:
        value = getattr(f, name)
        values[name] = BOUND[name](value) if name in BOUND else list(value) if isinstance(value, tuple) else value
    values.update(sql.search_values(f.words, INDEXED_SEARCH_WORDS))
    return values


def _filters(shape: Shape) -> Combinable | None:
    """The list's filters (access apart), as one condition."""
    conditions = [FILTERS[name](choice, Param(name)) for name, choice in shape[0]]
    conditions += sql.search_conditions(*shape[1])
    condition = conditions[0] if conditions else None
    for more in conditions[1:]:
        condition = condition & more  # type: ignore[operator]
    return condition


def _and(first: Combinable, second: Combinable | None) -> Combinable:
    return first if second is None else first & second


@lru_cache(maxsize=1024)
def _page_statement(shape: Shape, keys: tuple[Sort, ...], kind: str, nulls: tuple[bool, ...] | None) -> Statement:
    """A page: ``first`` (offset 0, or a keyset page), or ``deep`` (offset > 0).

    Each scope of the tasks the user can see (access.list_scopes) reads at most ``window`` rows
    (limit + offset) in the page's order from its own index range; the merged rows are then
    limited and offset, and labels built for the page's rows only.
    """
    filters = _filters(shape)
    if nulls is not None:
        filters = _and(after_clause(Task, list(keys), nulls), filters)
    order = order_sql(Task, list(keys))
    given = dict(shape[0])
    scopes = access.list_scopes("project_id" in given, given.get("inbox"))
    # Where most rows read are dropped (past the first page, or merging every project's first
    # rows), the branches read bare ids and sort keys (index-only) and the page's rows come by id.
    narrow = kind == "deep" or any(scope.per_project for scope in scopes)
    columns = list(Task._meta.columns)
    if narrow:
        sort_columns = {Task._meta.get_column_by_name(k.field) for k in keys}
        columns = [Task.id, *(c for c in Task._meta.columns if c in sort_columns and c is not Task.id)]
    branches = []
    for scope in scopes:
        branch = apply_order(Task.select(*columns).where(_and(scope.condition, filters)), Task, list(keys))
        limited = QueryString("{} LIMIT {}", querystring(branch), Param("window"))
        branches.append(sql.for_each_project(limited) if scope.per_project else limited)
    if narrow:
        return Statement(sql.rows_by_id(sql.merged(branches, order, columns='"task"."id"'), order))
    return Statement(sql.rows_of(sql.merged(branches, order), order))


ONE = SelectRaw("1")


@lru_cache(maxsize=512)
def _count_statement(shape: Shape) -> Statement:
    # One project: the membership probe, so the project's index ranges serve the count alone.
    parts = (access.member_of(Task.project),) if "project_id" in dict(shape[0]) else access.counted_parts()
    filters = _filters(shape)
    # No column selected: an index that holds the conditions' columns answers without the table.
    return Statement(sql.capped_count([querystring(Task.select(ONE).where(_and(p, filters))) for p in parts]))


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
    """A page of the tasks the user can see.

    With ``use_cursor`` (or a ``cursor``), the page is found by keyset (no count, no offset) and
    carries ``next_cursor``; otherwise it is an offset page with ``total``.
    """
    keys = parse_sort(sort, SORTABLE, DEFAULT_SORT)
    shape = _shape(filters)
    values = _values(user_id, filters, shape)
    if use_cursor or cursor is not None:
        scope = scope_fingerprint(user_id, filters)
        nulls = None
        if cursor is not None:
            after = decode_cursor(cursor, keys, scope, Task)
            nulls = tuple(v is None for v in after)
            values.update(after_values(after))
        with _search_cost(filters):
            page = _page_statement(shape, tuple(keys), "first", nulls)
            rows = await page.fetch(**values, limit=limit + 1, offset=0, window=limit + 1)
        has_more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(keys, scope, [rows[-1][k.field] for k in keys]) if has_more and rows else None
        return TaskPage(items=rows, total=None, next_cursor=next_cursor)
    page = _page_statement(shape, tuple(keys), "deep" if offset else "first", None)

    async def page_and_total(connection: asyncpg.Connection) -> tuple[list[asyncpg.Record], int]:
        rows = await page.fetch_on(connection, **values, limit=limit, offset=offset, window=limit + offset)
        if len(rows) < limit and (rows or offset == 0):
            return rows, offset + len(rows)  # this page ends the list: nothing left to count
        # Counting stops past EXACT_TOTAL_MAX, so a page's cost does not grow with the list.
        counted = await _count_statement(shape).fetch_on(connection, **values, count_max=EXACT_TOTAL_MAX + 1)
        return rows, counted[0]["count"]

    with _search_cost(filters):
        rows, total = await on_one_connection(page_and_total, read_only=True)
    return TaskPage(items=rows, total=total if total <= EXACT_TOTAL_MAX else None, next_cursor=None)


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


# Reads carry the labels and assignees in the same statement as the tasks.
EXTRAS = SelectRaw(sql.EXTRAS)
GET_TASK = Statement(
    Task.select(*Task._meta.columns, EXTRAS).where((Task.id == Param("id")) & access.tasks(access.READ))
)
GET_TASKS = Statement(
    Task.select(*Task._meta.columns, EXTRAS).where(sql.any_of(Task.id, Param("ids")) & access.tasks(access.READ))
)
# A task the user can see: its version and project, and the user's role there.
SEEN = Statement(
    Task.select(Task.id, Task.version, Task.project, sql.role_in_project('"task"."project"')).where(
        sql.any_of(Task.id, Param("ids")) & access.tasks(access.READ)
    )
)


async def get_task(user_id: int, task_id: int) -> Task:
    row = await GET_TASK.fetch_one(id=task_id, user=user_id)
    if row is None:
        raise NotFoundError("Task", task_id)
    return _task(row)


def _task(record: Any) -> Task:
    """A task from a row with ``labels`` (JSON text from sql.labels_json) and ``assignee_ids``."""
    return from_row(Task, dict(record))


async def _why_not(user_id: int, task_ids: list[int], least: ProjectRole, *, stale: bool = True) -> None:
    """After a write matched fewer tasks than asked: 404 for the first the user cannot see, 403
    when their role is below ``least``, else 412 (the version moved; ``stale``) or 409 (their
    access changed between the write and this read: nothing was written, a retry may pass)."""
    seen = {r["id"]: r for r in await SEEN.fetch(ids=task_ids, user=user_id)}
    for task_id in task_ids:
        row = seen.get(task_id)
        if row is None:
            raise NotFoundError("Task", task_id)
        if row["project"] is not None and not access.may(row["role"], least):
            raise ForbiddenError("Project", row["project"], least.value, row["role"])
    if stale:
        raise PreconditionFailedError("Task", seen[task_ids[0]]["version"])
    raise ConflictError("Access to the task changed while this request ran; nothing was written; retry")


# --------------------------------------------------------------------------------------------
# Writes


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


# What an omitted column gets on create (the DTO fills them too; bulk items and services rely on it).
DEFAULTS = {
    c._meta.name: _plain(c.get_default_value())
    for c in sql.INSERTED
    if c._meta.name not in {"owner", "created_by", "created_at", "updated_at"} and not c._meta.required
}


@lru_cache(maxsize=256)
def _update_statement(fields: tuple[str, ...], check_version: bool, many: bool = False) -> Statement:
    """``UPDATE task`` of ``fields`` (parameters by field name, ``now``), version +1, status rule.

    One task (``id``) returns it with labels and assignees; ``many`` (``ids``) the rows only.
    """
    values: dict[Any, Any] = {Task._meta.get_column_by_name(name): Param(name) for name in fields}
    if "status" in fields:
        values[Task.completed_at] = sql.completed_at(Param("status"), '"completed_at"', NOW)
    values[Task.version] = Task.version + 1
    values[Task.updated_at] = NOW
    where = (sql.any_of(Task.id, Param("ids")) if many else Task.id == Param("id")) & access.tasks(access.EDIT)
    if check_version:
        where = where & (Task.version == Param("version"))
    update = querystring(Task.update(values, use_auto_update=False).where(where).returning(*Task._meta.columns))
    return Statement(update if many else sql.returning_extras(update))


_DELETABLE = (Task.id == Param("id")) & access.tasks(access.EDIT)
DELETE = {
    False: Statement(Task.delete().where(_DELETABLE).returning(Task.id)),
    True: Statement(Task.delete().where(_DELETABLE & (Task.version == Param("version"))).returning(Task.id)),
}
UNLINK_LABELS = Statement(
    TaskLabel.delete().where((TaskLabel.task == Param("task")) & sql.none_of(TaskLabel.label, Param("label_ids")))
)
UNASSIGN = Statement(
    TaskAssignee.delete().where(
        (TaskAssignee.task == Param("task")) & sql.none_of(TaskAssignee.assignee, Param("assignee_ids"))
    )
)
OWN_LABELS = Statement(
    Label.select(Label.id).where((Label.owner == Param("user")) & sql.any_of(Label.id, Param("ids")))
)
# The project of a parent the user can see (a subtask is created in its parent's project).
PARENT = Statement(Task.select(Task.project).where((Task.id == Param("id")) & access.tasks(access.READ)))


def _fk_error(exc: asyncpg.ForeignKeyViolationError, data: dict[str, Any], index: int | None) -> InvalidFieldError:
    field_name, key = FK_FIELDS.get(exc.constraint_name or "", ("body", ""))
    if exc.constraint_name == "task_parent_same_project":
        return _invalid(field_name, "a subtask lives in its parent's project", index)
    message = f"{key} {data.get(key)} does not exist" if key else "references an object that does not exist"
    return _invalid(field_name, message, index)


def _invalid(field_name: str, message: str, index: int | None) -> InvalidFieldError:
    if index is None:
        return InvalidFieldError(field_name, message)
    return InvalidFieldError(f"tasks[{index}].{field_name}", message, index=index)


async def _set_labels(user_id: int, task_id: int, label_ids: list[int], index: int | None = None) -> None:
    """Make the task's label set exactly ``label_ids``: the user's own labels, and any already on
    the task (labels stay personal, but a task shows every label its members attached)."""
    wanted = list(dict.fromkeys(label_ids))
    allowed = {r["id"] for r in await sql.LINK_LABELS.fetch(task=task_id, label_ids=wanted, user=user_id)}
    if missing := sorted(set(wanted) - allowed):
        raise _invalid("label_ids", f"labels {missing} do not exist", index)
    await UNLINK_LABELS.fetch(task=task_id, label_ids=wanted)


async def _set_assignees(task_id: int, assignee_ids: list[int], index: int | None = None) -> None:
    """Make the task's assignees exactly ``assignee_ids``: members of its project (inbox: its owner)."""
    wanted = list(dict.fromkeys(assignee_ids))
    allowed = {r["id"] for r in await sql.ASSIGN.fetch(task=task_id, assignee_ids=wanted)}
    if outsiders := sorted(set(wanted) - allowed):
        raise _invalid(
            "assignee_ids", f"users {outsiders} cannot be assigned: not members of the task's project", index
        )
    await UNASSIGN.fetch(task=task_id, assignee_ids=wanted)


async def _check_no_cycle(task_id: int, parent_id: int) -> None:
    """422 if ``parent_id`` is the task itself or one of its descendants."""
    if parent_id == task_id:
        raise InvalidFieldError("parent_id", "a task cannot be its own parent")
    if await sql.IS_ANCESTOR.fetch(parent=parent_id, task=task_id):
        raise InvalidFieldError("parent_id", "a task cannot become its own ancestor")


async def _lock_tree() -> None:
    # Serialises re-parenting and moves, so two concurrent ones cannot close a cycle together.
    await sql.LOCK.fetch(key="task-tree", space=0)


async def _check_project(user_id: int, project_id: int, index: int | None = None) -> None:
    """The user may put tasks in the project (editor+): 422 if they cannot see it, else 403."""
    role = await access.role_in(user_id, project_id)
    if role is None:
        raise _invalid("project_id", f"project {project_id} does not exist", index)
    if not access.may(role, access.EDIT):
        raise ForbiddenError("Project", project_id, access.EDIT.value, role)


async def _insert_task(user_id: int, data: dict[str, Any], index: int | None = None) -> Task:
    """Insert one task with its labels (one statement; assignees add one); the result carries
    ``labels`` and ``assignee_ids``. A subtask is created in its parent's project."""
    wanted = list(dict.fromkeys(data.get("label_ids") or []))
    now = utcnow()
    values = {
        **DEFAULTS,
        **data,
        "owner": user_id,
        "created_by": user_id,
        "created_at": now,
        "updated_at": now,
        "now": now,
        "label_ids": wanted,
        "label_count": len(wanted),
    }
    parent = values.get("parent")
    if parent is not None and values.get("project") is None:
        row = await PARENT.fetch_one(id=parent, user=user_id)
        values["project"] = row["project"] if row else None
    try:
        rows = await sql.CREATE_TASK.fetch(**values)
    except asyncpg.ForeignKeyViolationError as exc:
        raise _fk_error(exc, data, index) from None
    if not rows:  # a reference the user may not use: nothing was inserted
        await _why_not_created(user_id, values, index)
    task = _task(rows[0])
    if assignees := data.get("assignee_ids"):
        await _set_assignees(task.id, assignees, index)
        task.assignee_ids = sorted(set(assignees))  # type: ignore[attr-defined]
    return task


async def _why_not_created(user_id: int, values: dict[str, Any], index: int | None) -> None:
    if values.get("project") is not None:
        await _check_project(user_id, values["project"], index)
    if (parent := values.get("parent")) is not None:
        row = await PARENT.fetch_one(id=parent, user=user_id)
        if row is None:
            raise _invalid("parent_id", f"parent {parent} does not exist", index)
        raise _invalid("parent_id", "a subtask lives in its parent's project", index)
    found = await OWN_LABELS.fetch(user=user_id, ids=values["label_ids"])
    if missing := sorted(set(values["label_ids"]) - {r["id"] for r in found}):
        raise _invalid("label_ids", f"labels {missing} do not exist", index)
    raise ConflictError("Access to the project changed while this request ran; nothing was written; retry")


EXTRA = ("labels", "assignee_ids")
# Read from each instance's __dict__: looking a column up through the table class is slow (UPSTREAM.md).
SNAPSHOT_KEYS = (*(c._meta.name for c in Task._meta.columns), *EXTRA)


def _snapshot(tasks: list[Task]) -> list[dict[str, Any]]:
    return [{k: t.__dict__[k] for k in SNAPSHOT_KEYS} for t in tasks]


async def create_task(
    user_id: int, data: dict[str, Any], *, idempotency: Idempotency | None = None
) -> tuple[Task, bool]:
    """Create one task (with its labels and assignees) in one transaction. Returns (task, replayed)."""

    async def create() -> list[dict[str, Any]]:
        # One statement is atomic by itself; assignees add a second.
        async with transaction() if data.get("assignee_ids") else contextlib.nullcontext():
            task = await _insert_task(user_id, data)
        return _snapshot([task])

    rows, replayed = await run_once(user_id, idempotency, create)
    if replayed:
        await _may_replay(user_id, rows)
    return _restore(rows)[0], replayed


async def _may_replay(user_id: int, rows: list[dict[str, Any]]) -> None:
    """A replayed create answers only someone who could make it now: a member who lost the
    project's editor role gets what a new create would (422 or 403), not the stored answer."""
    for index, project in enumerate(r["project"] for r in rows):
        if project is not None:
            await _check_project(user_id, project, index if len(rows) > 1 else None)


async def create_tasks(
    user_id: int, items: list[dict[str, Any]], *, idempotency: Idempotency | None = None
) -> tuple[list[Task], bool]:
    """Create up to 100 tasks, all or nothing; an error names the failing item's index."""

    async def create() -> list[dict[str, Any]]:
        async with transaction():
            tasks = [await _insert_task(user_id, item, index) for index, item in enumerate(items)]
        return _snapshot(tasks)

    rows, replayed = await run_once(user_id, idempotency, create)
    if replayed:
        await _may_replay(user_id, rows)
    return _restore(rows), replayed


def _restore(rows: list[dict[str, Any]]) -> list[Task]:
    tasks = []
    for row in rows:
        extras = {k: row.pop(k, []) for k in EXTRA}
        if not isinstance(extras["labels"], str):  # stored before labels were kept as JSON text
            extras["labels"] = msgspec.json.encode(extras["labels"]).decode()
        task = from_row(Task, row)
        task.__dict__.update(extras)
        tasks.append(task)
    return tasks


async def update_task(user_id: int, task_id: int, changes: dict[str, Any], *, expected_version: int | None) -> Task:
    """Apply a partial change. Status drives ``completed_at``; ``label_ids`` and ``assignee_ids``
    replace their sets; a new ``project`` takes the subtasks along (editor+ in both projects).

    The access check, the version check and the write are one UPDATE, so concurrent writers with
    the same If-Match see exactly one success.
    """
    if not changes:
        # Writes nothing and keeps the version, but answers 404 / 403 / 412 as a write would.
        task = await get_task(user_id, task_id)
        if task.project is not None and not access.may(await access.role_in(user_id, task.project), access.EDIT):
            await _why_not(user_id, [task_id], access.EDIT)
        if expected_version is not None and task.version != expected_version:
            raise PreconditionFailedError("Task", task.version)
        return task
    fields = _fields(user_id, changes)
    if fields.keys().isdisjoint(TREE_FIELDS) and changes.keys().isdisjoint(EXTRA_WRITES):
        return await _update_one(user_id, task_id, fields, expected_version)
    async with transaction():
        await _change_tree(user_id, [task_id], changes)
        task = await _update_one(user_id, task_id, fields, expected_version)
        await _change_sets(user_id, task_id, changes)
        try:
            await sql.CHECK_SUBTREE.fetch()
        except asyncpg.ForeignKeyViolationError as exc:
            raise _fk_error(exc, changes, None) from None
        # Read back what changed after the UPDATE: sets, and assignees a move dropped.
        if not changes.keys().isdisjoint(EXTRA_WRITES | {"project"}):
            task = await get_task(user_id, task_id)
    return task


def _fields(user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """The task columns a change writes; a task moved to the inbox lands in the mover's."""
    fields = {k: v for k, v in changes.items() if k not in EXTRA_WRITES}
    if "project" in fields and fields["project"] is None:
        fields["owner"] = user_id
    return fields


# Writes that are not columns of the task, and columns whose change moves tasks in the tree.
EXTRA_WRITES = frozenset({"label_ids", "assignee_ids"})
TREE_FIELDS = frozenset({"project", "parent"})


async def _change_tree(user_id: int, task_ids: list[int], changes: dict[str, Any]) -> None:
    """Checks for a new parent or project, before the tasks' own UPDATE."""
    if changes.keys().isdisjoint(TREE_FIELDS):
        return
    await sql.DEFER_SUBTREE_CHECK.fetch()
    await _lock_tree()
    if (parent := changes.get("parent")) is not None:
        # Visibility first: the cycle walk must not tell the shape of a tree the user cannot see.
        if await PARENT.fetch_one(id=parent, user=user_id) is None:
            raise InvalidFieldError("parent_id", f"parent {parent} does not exist")
        for task_id in task_ids:
            await _check_no_cycle(task_id, parent)
    if (project := changes.get("project")) is not None:
        await _check_project(user_id, project)


async def _change_sets(user_id: int, task_id: int, changes: dict[str, Any]) -> None:
    """After a task's UPDATE: its subtasks follow a new project; labels and assignees replaced."""
    if "project" in changes:
        moved = [
            r["id"]
            for r in await sql.MOVE_SUBTASKS.fetch(task=task_id, project=changes["project"], user=user_id, now=utcnow())
        ]
        await sql.UNASSIGN_OUTSIDERS.fetch(ids=[task_id, *moved])
    if "label_ids" in changes:
        await _set_labels(user_id, task_id, changes["label_ids"])
    if "assignee_ids" in changes:
        await _set_assignees(task_id, changes["assignee_ids"])


async def _update_one(user_id: int, task_id: int, fields: dict[str, Any], expected_version: int | None) -> Task:
    statement = _update_statement(tuple(fields), expected_version is not None)
    try:
        rows = await statement.fetch(**fields, id=task_id, user=user_id, now=utcnow(), version=expected_version)
    except asyncpg.ForeignKeyViolationError as exc:
        raise _fk_error(exc, fields, None) from None
    if not rows:
        await _why_not(user_id, [task_id], access.EDIT, stale=expected_version is not None)
    return _task(rows[0])


async def update_tasks(user_id: int, ids: list[int], changes: dict[str, Any]) -> list[Task]:
    """Apply the same partial change to several tasks, all or nothing; the caller's role is
    checked on every one (404 names an id they cannot see, 403 one they may not change)."""
    wanted = list(dict.fromkeys(ids))
    async with transaction():
        await _change_tree(user_id, wanted, changes)
        fields = _fields(user_id, changes)
        try:
            # An empty change writes nothing and keeps versions.
            statement = _update_statement(tuple(fields), False, many=True) if changes else GET_TASKS
            rows = await statement.fetch(**fields, ids=wanted, user=user_id, now=utcnow())
        except asyncpg.ForeignKeyViolationError as exc:
            raise _fk_error(exc, changes, None) from None
        if len(rows) < len(wanted):
            await _why_not(user_id, wanted, access.EDIT if changes else access.READ, stale=False)
        for task_id in wanted:
            await _change_sets(user_id, task_id, changes)
        try:
            await sql.CHECK_SUBTREE.fetch()
        except asyncpg.ForeignKeyViolationError as exc:
            raise _fk_error(exc, changes, None) from None
        by_id = {r["id"]: r for r in await GET_TASKS.fetch(ids=wanted, user=user_id)}
        if unseen := [i for i in wanted if i not in by_id]:
            # Access lost while this ran (a committed removal): the change is undone, as a 404 says.
            raise NotFoundError("Task", unseen[0])
    return [_task(by_id[i]) for i in wanted]


async def delete_task(user_id: int, task_id: int, *, expected_version: int | None) -> None:
    """Delete a task; its subtasks and comments go with it (ON DELETE CASCADE)."""
    checked = expected_version is not None
    if not await DELETE[checked].fetch(id=task_id, user=user_id, version=expected_version):
        await _why_not(user_id, [task_id], access.EDIT, stale=checked)
