"""The benchmark's baseline: the task endpoints as a small Litestar app on raw asyncpg + msgspec.

    DATABASE_URL=... uvicorn bench.raw_app:app --workers 1 --loop uvloop --http httptools

It serves what bench/run.py measures, with the same contract and the same work per request as
taskapi, so ``taskapi / raw`` shows what the ORM, the DTO layer and the service structure cost:

- the same bearer-token check: PyJWT HS256 with TASKAPI_SECRET_KEY (``exp`` and ``sub`` required),
  then one lookup of the user's ``token_generation``; 401 with ``WWW-Authenticate: Bearer``;
- access decided inside every statement, as SPEC "Collaboration" says: a task is seen by its
  project's members, an inbox task by its owner (anyone else: 404); creating and changing need
  editor+ in the project (a member below it: 403 naming the role). Lists merge the caller's
  inbox and one LATERAL branch per membership, each reading ``limit + offset`` rows in the
  list's order from its own index range; a ``project_id`` filter is one membership probe. Writes
  name the caller as the event log's actor (``taskapi.actor``) in the same statement;
- the same validation limits (title 1..500, description <= 20 000, status and priority enums,
  zoned datetimes, label_ids <= 100, limit 1..100, offset >= 0, unknown body fields refused);
- the same shapes: the task object with ``labels`` sorted by name, offset pages with ``total``
  (exact up to 10 000 matches, null beyond; not counted when the page ends the list), keyset
  pages with ``next_cursor`` (the same signed cursor format, so one cursor works on both);
- writes are one statement each (labels checked and linked in the same statement); changing a
  task's project or parent checks editor+ in the new project and the cycle, but does not move
  subtasks (the benchmark does not move tasks).

It serves its own explicit list of task fields (``TaskOut``; the statements select exactly those
columns), so a column added to taskapi changes nothing here: bench/run.py compares only the fields
this app serves.

Endpoints: GET/POST /api/v1/tasks, GET/PATCH /api/v1/tasks/{task_id}, GET /health. List filters:
project_id, status, priority, label_id, due_before, due_after; sort as taskapi.
This is a benchmark fixture, not part of the product: no ORM, nothing shared with app/ beyond
the development secret's default value and the database schema.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import asyncpg
import jwt
import msgspec
from litestar import Litestar, Request, Response, get, patch, post
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
from litestar.params import HeaderParameter, PathParameter, QueryParameter

from app.settings import get_settings

# The secret taskapi itself signs with (TASKAPI_SECRET_KEY, which bench/run.py sets for both apps).
SECRET = get_settings().secret_key
MAX_ID = 2_147_483_647
INT32 = msgspec.Meta(ge=-2_147_483_648, le=MAX_ID)

pool: asyncpg.Pool | None = None

# --------------------------------------------------------------------------------------------
# Shapes

Status = Literal["todo", "in_progress", "done"]
Priority = Literal[0, 1, 2, 3, 4]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Description = Annotated[str, msgspec.Meta(max_length=20_000)]
ZonedTime = Annotated[dt.datetime, msgspec.Meta(tz=True)]
RefId = Annotated[int, INT32]
LabelIds = Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(max_length=100)]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class TaskOut(msgspec.Struct):
    """The task fields this app serves, in the order its statements select them."""

    id: int
    created_by: int
    project_id: int | None
    parent_id: int | None
    title: str
    description: str
    status: str
    priority: int
    due_at: dt.datetime | None
    completed_at: dt.datetime | None
    position: int
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    labels: msgspec.Raw  # already JSON, built by PostgreSQL
    assignee_ids: list[int]


class OffsetPage(msgspec.Struct):
    items: list[TaskOut]
    total: int | None
    limit: int
    offset: int


class CursorPage(msgspec.Struct):
    items: list[TaskOut]
    next_cursor: str | None
    limit: int


class TaskCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: Title
    description: Description = ""
    status: Status = "todo"
    priority: Priority = 0
    due_at: ZonedTime | None = None
    position: Annotated[int, INT32] = 0
    project_id: RefId | None = None
    parent_id: RefId | None = None
    label_ids: LabelIds = msgspec.field(default_factory=list)


class TaskPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    title: Title | Unset = UNSET
    description: Description | Unset = UNSET
    status: Status | Unset = UNSET
    priority: Priority | Unset = UNSET
    due_at: ZonedTime | Unset | None = UNSET
    position: Annotated[int, INT32] | Unset = UNSET
    project_id: RefId | Unset | None = UNSET
    parent_id: RefId | Unset | None = UNSET
    label_ids: LabelIds | Unset = UNSET


COLUMN = {"project_id": "project", "parent_id": "parent"}

# --------------------------------------------------------------------------------------------
# SQL

# Exactly TaskOut's columns, in its order (labels and assignees come last, built per row).
EXTRA_FIELDS = ("labels", "assignee_ids")
COLUMNS = ", ".join(f"t.{COLUMN.get(name, name)}" for name in TaskOut.__struct_fields__ if name not in EXTRA_FIELDS)
LABELS_OF_T = (
    "COALESCE((SELECT json_agg(json_build_object('id', l.id, 'name', l.name, 'color', l.color)"
    " ORDER BY l.name, l.id) FROM task_label tl JOIN label l ON l.id = tl.label WHERE tl.task = t.id),"
    " '[]'::json)"
)


ASSIGNEES_OF_T = "ARRAY(SELECT a.assignee FROM task_assignee a WHERE a.task = t.id ORDER BY a.assignee)"
EXTRAS_OF_T = f"{LABELS_OF_T}, {ASSIGNEES_OF_T}"
WRITERS = "('editor', 'admin', 'owner')"


def visible(user: str) -> str:
    """The task ``t`` is ``user``'s inbox task or in a project they are a member of (one probe)."""
    return (
        f"((t.project IS NULL AND t.owner = {user})"
        f" OR EXISTS (SELECT 1 FROM project_member m WHERE m.project = t.project AND m.member = {user}))"
    )


def editable(user: str) -> str:
    """``visible`` with editor+ in the project; names ``user`` as the event log's actor."""
    return (
        f"((t.project IS NULL AND t.owner = {user}) OR EXISTS (SELECT 1 FROM project_member m"
        f" WHERE m.project = t.project AND m.member = {user} AND m.role IN {WRITERS}))"
        f" AND set_config('taskapi.actor', {user}::text, true) IS NOT NULL"
    )


def labels_of_ids(ids: str) -> str:
    """The labels of ``ids`` (already checked by the statement) as the task shows them."""
    return (
        "COALESCE((SELECT json_agg(json_build_object('id', l.id, 'name', l.name, 'color', l.color)"
        f" ORDER BY l.name, l.id) FROM label l WHERE l.id = ANY({ids})), '[]'::json)"
    )


GET_ONE = f"SELECT {COLUMNS}, {EXTRAS_OF_T} FROM task t WHERE t.id = $1 AND {visible('$2')}"
TOKEN_GENERATION = "SELECT token_generation FROM app_user WHERE id = $1"
ROLE = "SELECT role FROM project_member WHERE project = $1 AND member = $2"
# A task the user can see: its version, project and the user's role there (after a failed write).
SEEN = (
    "SELECT t.version, t.project, (SELECT m.role FROM project_member m WHERE m.project = t.project"
    f" AND m.member = $2) AS role FROM task t WHERE t.id = $1 AND {visible('$2')}"
)

# One statement: every label is the user's, the project one they may edit (or none), the parent
# one they can see in the same project; insert the task only if so and link the labels.
CREATE = f"""
WITH ok AS (
    SELECT (SELECT count(*) FROM label WHERE owner = $1 AND id = ANY($10::int[])) = cardinality($10::int[])
       AND ($2::int IS NULL OR EXISTS (SELECT 1 FROM project_member m
                                       WHERE m.project = $2 AND m.member = $1 AND m.role IN {WRITERS}))
       AND ($3::int IS NULL OR EXISTS (SELECT 1 FROM task p WHERE p.id = $3 AND p.project IS NOT DISTINCT FROM $2::int
                                       AND (p.project IS NOT NULL OR p.owner = $1))) AS allowed
), t AS (
    INSERT INTO task (owner, created_by, project, parent, title, description, status, priority, due_at, completed_at,
                      position)
    SELECT $1, $1, $2::int, $3::int, $4::varchar, $5::varchar, $6::varchar, $7::int, $8::timestamptz,
           CASE WHEN $6::varchar = 'done' THEN now() END, $9::int
    FROM ok WHERE ok.allowed
    RETURNING *
), links AS (
    INSERT INTO task_label (task, label) SELECT t.id, x FROM t, unnest($10::int[]) x
)
SELECT {COLUMNS}, {labels_of_ids("$10::int[]")}, '{{}}'::int[] FROM t
"""

SORTABLE = ("created_at", "updated_at", "due_at", "priority", "title", "position", "id")
EXACT_TOTAL_MAX = 10_000  # SPEC "Lists at scale": total is exact up to here, null beyond
SORT_TYPES: dict[str, type] = {"created_at": dt.datetime, "updated_at": dt.datetime, "due_at": dt.datetime}
NULLS_LAST = {"due_at"}
FK_FIELDS = {
    "task_project_fkey": "project_id",
    "task_parent_fkey": "parent_id",
    "task_parent_same_project": "parent_id",
}


def db() -> asyncpg.Pool:
    assert pool is not None
    return pool


# --------------------------------------------------------------------------------------------
# Errors and auth


def problem(
    status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None, **headers: str
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Response(
        msgspec.json.encode(body), status_code=status, media_type="application/problem+json", headers=headers or None
    )


def http_error(request: Request, exc: HTTPException) -> Response:
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [{"field": e.get("key", "body"), "message": e.get("message", "")} for e in exc.extra]
    return problem(exc.status_code, "Error", exc.detail, errors, **headers)


class FieldError(Exception):
    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


def field_error(request: Request, exc: FieldError) -> Response:
    title = {400: "Bad Request", 404: "Not Found", 412: "Precondition Failed", 422: "Unprocessable Content"}
    errors = [{"field": exc.field, "message": exc.message}]
    return problem(exc.status, title.get(exc.status, "Error"), f"{exc.field}: {exc.message}", errors)


class Forbidden(Exception):
    """A member whose role is below the one the action needs."""

    def __init__(self, project: int, role: str) -> None:
        super().__init__(role)
        self.project, self.role = project, role


def forbidden(request: Request, exc: Forbidden) -> Response:
    detail = f"This needs the editor role in project {exc.project}; you are {exc.role}"
    body = {"type": "about:blank", "title": "Forbidden", "status": 403, "detail": detail, "required_role": "editor"}
    return Response(msgspec.json.encode(body), status_code=403, media_type="application/problem+json")


async def provide_user_id(request: Request) -> int:
    """The bearer-token check taskapi does: signature, exp and sub, then the token generation."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException("Missing, malformed, expired or revoked credentials")
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            options={"verify_aud": False, "verify_iss": False, "require": ["exp", "sub"]},
        )
        user_id = int(claims["sub"])
        generation = int(claims.get("gen", -1))
    except (jwt.PyJWTError, TypeError, ValueError, KeyError, AttributeError):
        raise NotAuthorizedException("Missing, malformed, expired or revoked credentials") from None
    current = await db().fetchval(TOKEN_GENERATION, user_id)
    if current is None or current != generation:
        raise NotAuthorizedException("Missing, malformed, expired or revoked credentials")
    return user_id


async def require_json_body(request: Request) -> None:
    if request.method in {"POST", "PATCH"} and request.headers.get("content-length", "0") not in {"0", ""}:
        media_type = request.content_type[0]
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise HTTPException(status_code=415, detail=f"Content-Type must be application/json, not {media_type!r}")


# --------------------------------------------------------------------------------------------
# Sorting and cursors (the same ordering and cursor format as app/services/listing.py)


def parse_sort(raw: str | None) -> list[tuple[str, bool]]:
    keys: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for raw_part in (raw or "-created_at").split(","):
        part = raw_part.strip()
        descending = part.startswith("-")
        name = part[1:] if descending else part
        if name not in SORTABLE:
            raise FieldError(400, "sort", f"unknown sort field {name!r}; allowed: {', '.join(SORTABLE)}")
        if name in seen:
            raise FieldError(400, "sort", f"sort field {name!r} given twice")
        seen.add(name)
        keys.append((name, descending))
        if name == "id":
            break
    if "id" not in seen:
        keys.append(("id", keys[0][1]))
    return keys


def order_terms(keys: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    terms: list[tuple[str, bool]] = []
    for name, descending in keys:
        if name in NULLS_LAST:
            terms.append((f"(t.{name} IS NULL)", False))
        terms.append((f"t.{name}", descending))
    return terms


def term_values(keys: list[tuple[str, bool]], values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for (name, _), value in zip(keys, values, strict=True):
        if name in NULLS_LAST:
            out.append(value is None)
        out.append(value)
    return out


def after_clause(keys: list[tuple[str, bool]], values: list[Any], args: list[Any]) -> str:
    """Rows strictly after ``values``: a row comparison when it is exact, else the OR expansion."""

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    terms = order_terms(keys)
    tvalues = term_values(keys, values)
    directions = {d for _, d in terms}
    if len(directions) == 1 and None not in tvalues:
        op = "<" if directions.pop() else ">"
        return f"(({', '.join(e for e, _ in terms)}) {op} ({', '.join(param(v) for v in tvalues)}))"
    ors: list[str] = []
    for i, (expr, descending) in enumerate(terms):
        if tvalues[i] is None:
            continue
        ands = [f"{prev} = {param(v)}" for (prev, _), v in zip(terms[:i], tvalues[:i], strict=True) if v is not None]
        ands.append(f"{expr} {'<' if descending else '>'} {param(tvalues[i])}")
        ors.append("(" + " AND ".join(ands) + ")")
    if not ors:
        return "FALSE"
    first, first_desc = terms[0]
    return f"({first} {'<=' if first_desc else '>='} {param(tvalues[0])} AND ({' OR '.join(ors)}))"


def sort_text(keys: list[tuple[str, bool]]) -> str:
    return ",".join(("-" if d else "") + n for n, d in keys)


def signature(body: bytes) -> bytes:
    return hmac.new(SECRET.encode(), b"cursor:" + body, hashlib.sha256).digest()[:16]


CURSOR_VERSION = 1


def scope(user_id: int, filters: dict[str, Any]) -> str:
    given = {k: v for k, v in filters.items() if v is not None and v != []}  # only the filters given
    return hashlib.sha256(msgspec.json.encode([user_id, given], order="sorted")).hexdigest()[:16]


def encode_cursor(keys: list[tuple[str, bool]], scope_: str, values: list[Any]) -> str:
    body = msgspec.json.encode([CURSOR_VERSION, sort_text(keys), scope_, values])
    return base64.urlsafe_b64encode(signature(body) + body).decode().rstrip("=")


def decode_cursor(cursor: str, keys: list[tuple[str, bool]], scope_: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise FieldError(400, "cursor", "malformed cursor") from None
    sig, body = raw[:16], raw[16:]
    if len(sig) != 16 or not hmac.compare_digest(sig, signature(body)):
        raise FieldError(400, "cursor", "invalid cursor (tampered or issued by another server)")
    try:
        version, sort, scope_in, values = msgspec.json.decode(body, type=tuple[int, str, str, list[Any]])
    except msgspec.DecodeError:
        raise FieldError(400, "cursor", "malformed cursor") from None
    if version != CURSOR_VERSION:
        raise FieldError(400, "cursor", "cursor from an older version; start again")
    if sort != sort_text(keys) or scope_in != scope_ or len(values) != len(keys):
        raise FieldError(400, "cursor", "cursor was issued for a different sort, filter or user")
    return [
        dt.datetime.fromisoformat(v) if v is not None and SORT_TYPES.get(name) is dt.datetime else v
        for (name, _), v in zip(keys, values, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Handlers


def task_out(row: asyncpg.Record) -> TaskOut:
    return TaskOut(*row)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(obj), status_code=status, media_type="application/json", headers=headers)


QueryId = Annotated[int | None, QueryParameter(ge=1, le=MAX_ID)]
QueryTime = Annotated[dt.datetime | None, QueryParameter()]
TaskId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
IfMatch = Annotated[str | None, HeaderParameter(name="If-Match", max_length=100)]


@get("/api/v1/tasks")
async def list_tasks(
    user_id: int,
    project_id: QueryId = None,
    status: Annotated[list[Status] | None, QueryParameter()] = None,
    priority: Annotated[list[Annotated[int, msgspec.Meta(ge=0, le=4)]] | None, QueryParameter()] = None,
    label_id: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]] | None, QueryParameter()] = None,
    due_before: QueryTime = None,
    due_after: QueryTime = None,
    sort: Annotated[str | None, QueryParameter(max_length=200)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    offset: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0,
    cursor: Annotated[str | None, QueryParameter(max_length=2000)] = None,
    paginate: Annotated[Literal["offset", "cursor"] | None, QueryParameter()] = None,
) -> Response:
    keys = parse_sort(sort)
    args: list[Any] = [user_id]
    where: list[str] = []
    if status:
        args.append(sorted(set(status)))
        where.append(f"t.status = ANY(${len(args)}::varchar[])")
    if priority:
        args.append(sorted(set(priority)))
        where.append(f"t.priority = ANY(${len(args)}::int[])")
    if label_id:
        args.append(sorted(set(label_id)))
        where.append(f"t.id IN (SELECT task FROM task_label WHERE label = ANY(${len(args)}::int[]))")
    if due_before is not None:
        args.append(due_before)
        where.append(f"t.due_at < ${len(args)}")
    if due_after is not None:
        args.append(due_after)
        where.append(f"t.due_at > ${len(args)}")
    keyset = paginate == "cursor" or cursor is not None
    scope_ = ""
    if keyset:
        filters = {
            "project_id": project_id, "status": sorted(set(status or [])), "priority": sorted(set(priority or [])),
            "label_id": sorted(set(label_id or [])), "due_before": due_before, "due_after": due_after,
        }  # fmt: skip
        scope_ = scope(user_id, filters)
        if cursor is not None:
            where.append(after_clause(keys, decode_cursor(cursor, keys, scope_), args))
    order = ", ".join(f"{e} {'DESC' if d else 'ASC'}" for e, d in order_terms(keys))
    # The tasks the user can see, as scopes each read in the list's order from its own index range.
    if project_id is not None:
        args.append(project_id)
        p = f"${len(args)}"
        # Not correlated with t: one membership probe for the whole statement.
        access = f"t.project = {p} AND EXISTS (SELECT 1 FROM project_member m WHERE m.project = {p} AND m.member = $1)"
        scopes = [(access, False)]
        counted = [access]
    else:
        scopes = [("t.project IS NULL AND t.owner = $1", False), ("t.project = m.project", True)]
        # Counting needs no order: the user's inbox, then their projects (as one array), each
        # read from an index alone.
        counted = [
            "t.project IS NULL AND t.owner = $1",
            "t.project = ANY(ARRAY(SELECT m.project FROM project_member m WHERE m.member = $1))",
        ]

    def union(cols: str, n: str) -> str:
        """Each scope's first ``n`` rows in the list's order, as one UNION ALL."""
        parts = []
        for condition, per_project in scopes:
            branch = f"SELECT {cols} FROM task t WHERE {' AND '.join([condition, *where])} ORDER BY {order} LIMIT {n}"
            if per_project:
                branch = f"SELECT x.* FROM project_member m CROSS JOIN LATERAL ({branch}) x WHERE m.member = $1"
            parts.append(f"({branch})")
        return " UNION ALL ".join(parts)

    def merged(cols: str, n: str, tail: str) -> str:
        return f"SELECT {cols.replace('t.', '')} FROM ({union(cols, n)}) t ORDER BY {order} {tail}"

    def page_sql(window: str, tail: str, narrow: bool) -> str:
        """The page's rows with labels; ``narrow``: the scopes' rows as bare ids and sort keys,
        then the page by id (past the first page, or merging every project's first rows)."""
        if narrow:
            sort_columns = ", ".join(dict.fromkeys(["t.id", *(f"t.{name}" for name, _ in keys)]))
            ids = f"SELECT id FROM ({merged(sort_columns, window, tail)}) p"
            return f"SELECT {COLUMNS}, {EXTRAS_OF_T} FROM task t WHERE t.id IN ({ids}) ORDER BY {order}"
        return f"SELECT {COLUMNS}, {EXTRAS_OF_T} FROM ({merged('t.*', window, tail)}) t ORDER BY {order}"

    if not keyset:
        filter_args = list(args)
        args += [limit, offset, limit + offset]
        n_limit, n_offset, window = (f"${len(args) - i}" for i in (2, 1, 0))
        sql = page_sql(window, f"LIMIT {n_limit} OFFSET {n_offset}", bool(offset) or project_id is None)
        async with db().acquire() as conn:
            rows = await conn.fetch(sql, *args)
            if len(rows) < limit and (rows or offset == 0):
                total = offset + len(rows)  # this page ends the list: nothing left to count
            else:
                filter_args.append(EXACT_TOTAL_MAX + 1)
                cap = f"${len(filter_args)}"
                parts = " UNION ALL ".join(f"(SELECT 1 FROM task t WHERE {' AND '.join([c, *where])})" for c in counted)
                matches = f"{parts} LIMIT {cap}"
                total = await conn.fetchval(f"SELECT count(*) FROM ({matches}) n", *filter_args)
        return json_response(
            OffsetPage(
                items=[task_out(r) for r in rows],
                total=total if total <= EXACT_TOTAL_MAX else None,
                limit=limit,
                offset=offset,
            )
        )
    args.append(limit + 1)
    rows = await db().fetch(page_sql(f"${len(args)}", f"LIMIT ${len(args)}", project_id is None), *args)
    items = [task_out(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = encode_cursor(keys, scope_, [getattr(last, name) for name, _ in keys])
    return json_response(CursorPage(items=items, next_cursor=next_cursor, limit=limit))


@get("/api/v1/tasks/{task_id:int}")
async def get_task(user_id: int, task_id: TaskId) -> Response:
    row = await db().fetchrow(GET_ONE, task_id, user_id)
    if row is None:
        raise FieldError(404, "task_id", f"Task {task_id} does not exist")
    return json_response(task_out(row), headers={"ETag": f'"{row["version"]}"'})


def fk_error(exc: asyncpg.ForeignKeyViolationError) -> FieldError:
    field = FK_FIELDS.get(exc.constraint_name or "", "body")
    return FieldError(422, field, "does not exist")


async def missing_labels(conn: asyncpg.Connection, user_id: int, label_ids: list[int], task_id: int = 0) -> list[int]:
    found = await conn.fetch(
        "SELECT id FROM label l WHERE id = ANY($2::int[])"
        " AND (owner = $1 OR EXISTS (SELECT 1 FROM task_label k WHERE k.task = $3 AND k.label = l.id))",
        user_id,
        label_ids,
        task_id,
    )
    return sorted(set(label_ids) - {r[0] for r in found})


async def why_not_project(conn: asyncpg.Connection, user_id: int, project_id: int) -> None:
    """422 when the user cannot see the project, 403 when they may not add tasks to it."""
    role = await conn.fetchval(ROLE, project_id, user_id)
    if role is None:
        raise FieldError(422, "project_id", f"project {project_id} does not exist")
    if role not in {"editor", "admin", "owner"}:
        raise Forbidden(project_id, role)


@post("/api/v1/tasks", status_code=201)
async def create_task(user_id: int, data: TaskCreate) -> Response:
    label_ids = list(dict.fromkeys(data.label_ids))
    args = (
        user_id, data.project_id, data.parent_id, data.title, data.description, data.status, data.priority,
        data.due_at, data.position, label_ids,
    )  # fmt: skip
    async with db().acquire() as conn:
        try:
            row = await conn.fetchrow(CREATE, *args)
        except asyncpg.ForeignKeyViolationError as exc:
            raise fk_error(exc) from None
        if row is None:
            if data.project_id is not None:
                await why_not_project(conn, user_id, data.project_id)
            if data.parent_id is not None:
                raise FieldError(422, "parent_id", "a visible task in the same project expected")
            raise FieldError(422, "label_ids", f"labels {await missing_labels(conn, user_id, label_ids)} do not exist")
    return json_response(task_out(row), 201, {"Location": f"/api/v1/tasks/{row['id']}", "ETag": f'"{row["version"]}"'})


@patch("/api/v1/tasks/{task_id:int}")
async def update_task(user_id: int, task_id: TaskId, data: TaskPatch, if_match: IfMatch = None) -> Response:
    args: list[Any] = [task_id, user_id]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    sets: list[str] = []
    condition = f"t.id = $1 AND {editable('$2')}"
    for name in data.__struct_fields__:
        value = getattr(data, name)
        if value is UNSET or name == "label_ids":
            continue
        sets.append(f"{COLUMN.get(name, name)} = {param(value)}")
        if name == "status":
            sets.append(
                f"completed_at = CASE WHEN ${len(args)}::varchar = 'done' THEN COALESCE(completed_at, now()) END"
            )
        if name == "project_id" and value is None:
            sets.append("owner = $2")  # a task moved to the inbox lands in the mover's
        elif name == "project_id":
            condition += (
                f" AND EXISTS (SELECT 1 FROM project_member m WHERE m.project = ${len(args)} AND m.member = $2"
                f" AND m.role IN {WRITERS})"
            )
    sets += ["version = t.version + 1", "updated_at = now()"]
    if if_match is not None and if_match.strip() != "*":
        digits = if_match.strip().removeprefix("W/").strip('"')
        if not digits.isdigit():
            raise FieldError(400, "If-Match", 'expected an ETag like "3"')
        condition += f" AND t.version = {param(int(digits))}"
    label_ids = None if data.label_ids is UNSET else list(dict.fromkeys(data.label_ids))
    if label_ids is None:
        sql = f"UPDATE task t SET {', '.join(sets)} WHERE {condition} RETURNING {COLUMNS}, {EXTRAS_OF_T}"
    else:
        # The user's own labels, and labels already on the task (attached by another member).
        labels = param(label_ids) + "::int[]"
        sql = f"""
        WITH ok AS (
            SELECT (SELECT count(*) FROM label l WHERE l.id = ANY({labels}) AND (l.owner = $2
                    OR EXISTS (SELECT 1 FROM task_label k WHERE k.task = $1 AND k.label = l.id)))
                   = cardinality({labels}) AS labels_ok
        ), t AS (
            UPDATE task t SET {", ".join(sets)} FROM ok WHERE ok.labels_ok AND {condition} RETURNING t.*
        ), unlink AS (
            DELETE FROM task_label WHERE task IN (SELECT id FROM t) AND label <> ALL({labels})
        ), link AS (
            INSERT INTO task_label (task, label) SELECT t.id, x FROM t, unnest({labels}) x ON CONFLICT DO NOTHING
        )
        SELECT {COLUMNS}, {labels_of_ids(labels)}, {ASSIGNEES_OF_T} FROM t
        """
    async with db().acquire() as conn:
        try:
            if isinstance(data.parent_id, int):
                # Re-parenting: serialised and refused when it would close a cycle, as taskapi does.
                if data.parent_id == task_id:
                    raise FieldError(422, "parent_id", "a task cannot be its own parent")
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('task-tree', 0))")
                    cycle = await conn.fetchval(
                        "WITH RECURSIVE a(id, parent) AS (SELECT id, parent FROM task WHERE id = $1"
                        " UNION SELECT t.id, t.parent FROM task t JOIN a ON t.id = a.parent)"
                        " SELECT 1 FROM a WHERE id = $2 LIMIT 1",
                        data.parent_id,
                        task_id,
                    )
                    if cycle:
                        raise FieldError(422, "parent_id", "a task cannot become its own ancestor")
                    row = await conn.fetchrow(sql, *args)
            else:
                row = await conn.fetchrow(sql, *args)
        except asyncpg.ForeignKeyViolationError as exc:
            raise fk_error(exc) from None
        if row is None:
            seen = await conn.fetchrow(SEEN, task_id, user_id)
            if seen is None:
                raise FieldError(404, "task_id", f"Task {task_id} does not exist")
            if seen["project"] is not None and seen["role"] not in {"editor", "admin", "owner"}:
                raise Forbidden(seen["project"], seen["role"])
            if isinstance(data.project_id, int):
                await why_not_project(conn, user_id, data.project_id)
            if label_ids and (missing := await missing_labels(conn, user_id, label_ids, task_id)):
                raise FieldError(422, "label_ids", f"labels {missing} do not exist")
            raise FieldError(412, "If-Match", f"Task has changed: its current version is {seen['version']}")
    return json_response(task_out(row), headers={"ETag": f'"{row["version"]}"'})


@get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def _raw_json(text: str) -> msgspec.Raw:
    return msgspec.Raw(text.encode())


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json columns (the labels) pass through as already-encoded JSON.
    await conn.set_type_codec("json", schema="pg_catalog", encoder=str, decoder=_raw_json, format="text")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset: no SET, LISTEN or session locks here (asyncpg still rolls back)."""


@contextlib.asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    global pool  # noqa: PLW0603 - one pool per process, set by the lifespan
    statement_timeout_ms = int(os.environ.get("DB_STATEMENT_TIMEOUT_MS", "4000"))
    pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"],
        min_size=int(os.environ.get("DB_POOL_MIN_SIZE", "1")),
        max_size=int(os.environ.get("DB_POOL_MAX_SIZE", "10")),
        max_inactive_connection_lifetime=60.0,
        timeout=float(os.environ.get("DB_CONNECT_TIMEOUT", "2")),
        command_timeout=statement_timeout_ms / 1000 + 1,
        server_settings={
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": "30000",
            "application_name": "taskapi-raw-bench",
            "timezone": "UTC",
        },
        init=_init_connection,
        reset=_keep_session,  # as taskapi's pool (app/db.py): no reset query on release
    )
    try:
        yield
    finally:
        await pool.close()


app = Litestar(
    route_handlers=[list_tasks, get_task, create_task, update_task, health],
    dependencies={"user_id": Provide(provide_user_id)},
    before_request=require_json_body,
    exception_handlers={HTTPException: http_error, FieldError: field_error, Forbidden: forbidden},
    lifespan=[lifespan],
    openapi_config=None,
    request_max_body_size=1024 * 1024,
    debug=False,
)
