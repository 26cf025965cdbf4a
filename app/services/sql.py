"""The only hand-written SQL: what Piccolo's query builder cannot express.

- a task's labels as one JSON column (a correlated ``json_agg``), so a page is one round trip;
- creating a task with its labels in one statement (data-modifying CTEs);
- linking labels and returning them (a data-modifying CTE);
- the ancestor walk of the cycle check (``WITH RECURSIVE``);
- an INSERT written only when conditions hold (``insert_where``: Piccolo's insert takes no WHERE),
  and extra expressions in a write's RETURNING (``returning_also``);
- advisory locks, and the rate-limit counter's UPSERT (app/ratelimit.py).

Column lists, casts and the label shape are still read from the tables (app/tables.py), and every
statement is a ``Statement`` with named parameters (app/services/query.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from piccolo.columns import Column
from piccolo.columns.combination import WhereRaw
from piccolo.query import SelectRaw
from piccolo.querystring import QueryString
from piccolo.table import Table

from app.services.access import EDIT, MEMBERSHIP_PROJECT, USER, roles_from
from app.services.query import Param, Statement, column_sql
from app.tables import EVENTS_PER_TRANSACTION, LABEL_BRIEF, LABEL_ORDER, RateLimit, Task, TaskStatus


def _names(columns: tuple[object, ...]) -> list[str]:
    return [c._meta.db_column_name for c in columns]  # type: ignore[attr-defined]


def label_objects(alias: str) -> str:
    """``json_agg`` of labels (alias ``alias``) as the API shows them: LABEL_BRIEF, LABEL_ORDER."""
    fields = ", ".join(f"'{c._meta.name}', {alias}.\"{c._meta.db_column_name}\"" for c in LABEL_BRIEF)
    order = ", ".join(f'{alias}."{name}"' for name in _names(LABEL_ORDER))
    return f"COALESCE(json_agg(json_build_object({fields}) ORDER BY {order}), '[]')"


def labels_json(task_id: str) -> str:
    """A task's labels as one JSON array column, for the task whose id is the SQL ``task_id``."""
    return f"(SELECT {label_objects('l')} FROM task_label tl JOIN label l ON l.id = tl.label WHERE tl.task = {task_id})"


def assignees_array(task_id: str) -> str:
    """A task's assignees' ids, ascending, as one integer[] column."""
    return f"ARRAY(SELECT a.assignee FROM task_assignee a WHERE a.task = {task_id} ORDER BY a.assignee)"


def role_in_project(project: str) -> SelectRaw:
    """A select expression: ``user``'s role in the SQL ``project`` (null: not a member)."""
    return SelectRaw(
        f"(SELECT m.role FROM project_member m WHERE m.project = {project} AND m.member = {{}}) AS role", USER
    )


def completed_at(status: Param, previous: str, now: Param) -> QueryString:
    """The one rule for ``completed_at``: set when status becomes done, kept while done, else null."""
    done = TaskStatus.done.value
    return QueryString(
        f"CASE WHEN {{}}::varchar = '{done}' THEN COALESCE({previous}, {{}}::timestamptz) ELSE NULL END", status, now
    )


def any_of(column: Column, values: Param) -> WhereRaw:
    """``column`` is one of the array ``values`` (one parameter, whatever the number of values)."""
    return WhereRaw(f"{column_sql(column)} = ANY({{}}::{_cast(column)}[])", values)


def none_of(column: Column, values: Param) -> WhereRaw:
    """``column`` is none of the array ``values``."""
    return WhereRaw(f"NOT ({column_sql(column)} = ANY({{}}::{_cast(column)}[]))", values)


# What q searches: title and description as one lower-cased text. Words hold no whitespace, so a
# word is in it iff it is in the title or the description. The trigram index of the migration
# "trigram search index" is on exactly this expression; the planner uses it only if they match.
SEARCH_TEXT = """lower("task"."title" || ' ' || "task"."description")"""


def search_conditions(indexed: int, more: bool) -> list[WhereRaw]:
    """Every word of ``q`` must be in SEARCH_TEXT.

    The longest words each get a LIKE the trigram index can serve (they narrow the most); the
    rest share one LIKE ALL, which lower-cases a row's text once instead of once per word (the
    index never serves LIKE ALL). Patterns are lower-cased by PostgreSQL, as the text is.
    """
    found = [WhereRaw(f"{SEARCH_TEXT} LIKE lower({{}})", Param(f"q{i}")) for i in range(indexed)]
    if more:
        found.append(
            WhereRaw(f"{SEARCH_TEXT} LIKE ALL (ARRAY(SELECT lower(w) FROM unnest({{}}::text[]) w))", Param("q_more"))
        )
    return found


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_values(words: Sequence[str], indexed: int) -> dict[str, Any]:
    """The parameters of ``search_conditions`` for ``words``, longest first."""
    patterns = [f"%{_escape_like(word)}%" for word in sorted(words, key=len, reverse=True)]
    values: dict[str, Any] = {f"q{i}": pattern for i, pattern in enumerate(patterns[:indexed])}
    if patterns[indexed:]:
        values["q_more"] = patterns[indexed:]
    return values


EDITORS = ", ".join(f"'{role}'" for role in roles_from(EDIT))
COLUMNS = _names(tuple(Task._meta.columns))
TASK_ID = '"task"."id"'
EXTRAS = f"{labels_json(TASK_ID)} AS labels, {assignees_array(TASK_ID)} AS assignee_ids"
PAGE_COLUMNS = ", ".join([*(f'"task"."{c}"' for c in COLUMNS), EXTRAS])


def limited(query: QueryString, *, offset: bool) -> QueryString:
    """``query`` with a bound LIMIT (and OFFSET): Piccolo's ``limit`` takes only a literal."""
    if offset:
        return QueryString("{} LIMIT {} OFFSET {}", query, Param("limit"), Param("offset"))
    return QueryString("{} LIMIT {}", query, Param("limit"))


def for_each_project(branch: QueryString) -> QueryString:
    """``branch`` (which refers to MEMBERSHIP_PROJECT) run for each of ``user``'s projects."""
    alias = MEMBERSHIP_PROJECT.split(".")[0]
    return QueryString(
        f"SELECT t.* FROM project_member {alias} CROSS JOIN LATERAL ({{}}) t WHERE {alias}.member = {{}}", branch, USER
    )


def merged(branches: list[QueryString], order: str, *, columns: str = "*") -> QueryString:
    """The branches' rows as one list in ``order``, limited and offset (each branch is in order)."""
    union = " UNION ALL ".join("({})" for _ in branches)
    return QueryString(
        f"SELECT {columns} FROM ({union}) task ORDER BY {order} LIMIT {{}} OFFSET {{}}",
        *branches,
        Param("limit"),
        Param("offset"),
    )


def rows_of(tasks: QueryString, order: str) -> QueryString:
    """The tasks a limited subquery selects, with their labels (built for those rows only)."""
    return QueryString(f"SELECT {PAGE_COLUMNS} FROM ({{}}) task ORDER BY {order}", tasks)


def rows_by_id(ids: QueryString, order: str) -> QueryString:
    """The tasks whose ids a limited subquery selects, with their labels."""
    return QueryString(f'SELECT {PAGE_COLUMNS} FROM task WHERE "task"."id" IN ({{}}) ORDER BY {order}', ids)


def capped_count(parts: list[QueryString]) -> QueryString:
    """How many rows the parts have together, counting no further than ``count_max``: read one
    after the other (UNION ALL), each from its own index, and no part once the count is reached."""
    union = " UNION ALL ".join("({})" for _ in parts)
    return QueryString(f"SELECT count(*) AS count FROM ({union} LIMIT {{}}) n", *parts, Param("count_max"))


def returning_extras(update: QueryString) -> QueryString:
    """An ``UPDATE task ... RETURNING`` that also returns the task's labels and assignees."""
    return QueryString(f"{{}}, {EXTRAS}", update)


# Every column but those the database fills (id, version) and the one the status rule derives.
INSERTED = tuple(
    c for c in Task._meta.columns if c._meta.name not in {"id", "version", "completed_at"} and not c._meta.primary_key
)


def _cast(column: Column) -> str:
    """The SQL type a parameter for ``column`` is cast to (a serial's values are integers)."""
    kind: str = column.column_type.split("(")[0].lower()
    array = "[]" if column.column_type.endswith("[]") else ""  # VARCHAR(100)[]
    return {"serial": "integer", "bigserial": "bigint"}.get(kind, kind) + array


def returning_also(write: QueryString, *extra: QueryString) -> QueryString:
    """A write's ``RETURNING`` list with more expressions (e.g. ``role_in_project``)."""
    return QueryString("{}" + ", {}" * len(extra), write, *extra)


def insert_where(
    table: type[Table], columns: Sequence[Column], *, holds: Sequence[QueryString], fails: Sequence[QueryString] = ()
) -> QueryString:
    """``INSERT INTO table (columns) SELECT <one parameter per column, by name> WHERE ... RETURNING *``:
    the row is written only when every ``holds`` is true and every ``fails`` false (each a
    one-value query such as Piccolo's ``exists()``), checked in the same statement. Piccolo's
    insert takes no condition."""
    names = ", ".join(f'"{c._meta.db_column_name}"' for c in columns)
    values = ", ".join("{}::" + _cast(c) for c in columns)
    conditions = " AND ".join(["({})"] * len(holds) + ["NOT ({})"] * len(fails))
    return QueryString(
        f'INSERT INTO "{table._meta.tablename}" ({names}) SELECT {values} WHERE {conditions} RETURNING *',
        *(Param(c._meta.name) for c in columns),
        *holds,
        *fails,
    )


# Labels are checked, the task inserted and linked, and the answer returned in one statement;
# when a label is not the user's, nothing is inserted (no rows come back). Parameters: one per
# inserted column (by name), ``now``, ``label_ids`` and ``label_count``.
CREATE_TASK = Statement(
    QueryString(
        "WITH wanted AS (SELECT l.* FROM label l WHERE l.owner = {} AND l.id = ANY({}::integer[])),"
        f" t AS (INSERT INTO task ({', '.join(_names(INSERTED))}, completed_at)"
        f" SELECT {', '.join('{}::' + _cast(c) for c in INSERTED)}, {{}}"
        " WHERE (SELECT count(*) FROM wanted) = {}"
        # The project: none (the inbox), or one where the creator may edit; the parent: one the
        # creator can see, in the same project.
        " AND ({}::integer IS NULL OR EXISTS (SELECT 1 FROM project_member m"
        f" WHERE m.project = {{}} AND m.member = {{}} AND m.role IN ({EDITORS})))"
        " AND ({}::integer IS NULL OR EXISTS (SELECT 1 FROM task p WHERE p.id = {}"
        " AND p.project IS NOT DISTINCT FROM {}::integer AND (p.project IS NOT NULL OR p.owner = {})))"
        " RETURNING *),"
        " linked AS (INSERT INTO task_label (task, label) SELECT t.id, w.id FROM t, wanted w)"
        f" SELECT {', '.join(f't.{c}' for c in COLUMNS)}, (SELECT {label_objects('w')} FROM wanted w) AS labels,"
        " '{{}}'::integer[] AS assignee_ids FROM t",
        Param("owner"),
        Param("label_ids"),
        *(Param(c._meta.name) for c in INSERTED),
        completed_at(Param("status"), "NULL", Param("now")),
        Param("label_count"),
        Param("project"),
        Param("project"),
        Param("owner"),
        Param("parent"),
        Param("parent"),
        Param("project"),
        Param("owner"),
    )
)

# Links the labels of ``label_ids`` the user may attach (their own, and those already on the
# task), keeping links that exist; returns the ids that may be attached.
LINK_LABELS = Statement(
    QueryString(
        "WITH allowed AS (SELECT l.id FROM label l WHERE l.id = ANY({}::integer[]) AND (l.owner = {}"
        " OR EXISTS (SELECT 1 FROM task_label k WHERE k.task = {} AND k.label = l.id))),"
        " linked AS (INSERT INTO task_label (task, label) SELECT {}, id FROM allowed ON CONFLICT DO NOTHING)"
        " SELECT id FROM allowed",
        Param("label_ids"),
        USER,
        Param("task"),
        Param("task"),
    )
)

# Assigns the users of ``assignee_ids`` who may be assignees (members of the task's project; for
# an inbox task its owner), keeping assignments that exist; returns those who may.
ASSIGN = Statement(
    QueryString(
        "WITH allowed AS (SELECT u.id FROM task t, unnest({}::integer[]) u(id) WHERE t.id = {}"
        " AND ((t.project IS NULL AND u.id = t.owner) OR EXISTS (SELECT 1 FROM project_member m"
        # The lock holds a concurrent removal until this commits, so its unassigning sees this.
        " WHERE m.project = t.project AND m.member = u.id FOR KEY SHARE))),"
        " assigned AS (INSERT INTO task_assignee (task, assignee) SELECT {}, id FROM allowed ON CONFLICT DO NOTHING)"
        " SELECT id FROM allowed",
        Param("assignee_ids"),
        Param("task"),
        Param("task"),
    )
)

# Moves a task's subtasks, at every depth, to ``project``; in the inbox they are the mover's.
# Assignees who are not members there are unassigned. Returns the moved ids.
MOVE_SUBTASKS = Statement(
    QueryString(
        "WITH RECURSIVE sub(id) AS (SELECT t.id FROM task t WHERE t.parent = {}"
        " UNION SELECT t.id FROM task t JOIN sub ON t.parent = sub.id)"
        " UPDATE task SET project = {}::integer, owner = CASE WHEN {}::integer IS NULL THEN {} ELSE task.owner END,"
        " version = task.version + 1, updated_at = {}"  # a moved subtask changed (SPEC: version +1)
        " FROM sub WHERE task.id = sub.id RETURNING task.id",
        Param("task"),
        Param("project"),
        Param("project"),
        USER,
        Param("now"),
    )
)
UNASSIGN_OUTSIDERS = Statement(
    QueryString(
        "DELETE FROM task_assignee a USING task t WHERE a.task = t.id AND t.id = ANY({}::integer[])"
        " AND NOT ((t.project IS NULL AND a.assignee = t.owner)"
        # Locked as in ASSIGN: a removal committing beside this then sees the assignments it keeps.
        " OR EXISTS (SELECT 1 FROM project_member m WHERE m.project = t.project AND m.member = a.assignee"
        " FOR KEY SHARE))",
        Param("ids"),
    )
)

# The one deferred check of a write that moves tasks: a subtask lives in its parent's project.
DEFER_SUBTREE_CHECK = Statement(QueryString("SET CONSTRAINTS task_parent_same_project DEFERRED"))
CHECK_SUBTREE = Statement(QueryString("SET CONSTRAINTS task_parent_same_project IMMEDIATE"))


# Whether ``task`` is ``parent`` or one of its ancestors (so ``parent`` may not become its parent).
IS_ANCESTOR = Statement(
    QueryString(
        "WITH RECURSIVE ancestors(id, parent) AS ("
        " SELECT id, parent FROM task WHERE id = {}"
        " UNION SELECT t.id, t.parent FROM task t JOIN ancestors a ON t.id = a.parent"
        ") SELECT 1 AS hit FROM ancestors WHERE id = {} LIMIT 1",
        Param("parent"),
        Param("task"),
    )
)

# Transaction-scoped advisory locks: taken with the transaction, released at its end.
LOCK = Statement(
    QueryString("SELECT pg_advisory_xact_lock(hashtextextended({}, {})) AS ok", Param("key"), Param("space"))
)
TRY_LOCK = Statement(
    QueryString("SELECT pg_try_advisory_xact_lock(hashtextextended({}, {})) AS ok", Param("key"), Param("space"))
)

PING = Statement(QueryString("SELECT 1 AS ok"))


# A rate-limit grant in one statement (app/ratelimit.py PostgresStore): a new window when the old
# one has ended, else ``least(amount, quota - used)``; ``granted`` keeps what this statement took,
# because RETURNING sees only the new row.
RATE_TAKE = Statement(
    QueryString(
        "WITH arg AS (SELECT {}::text AS key, {}::int AS amount, {}::int AS quota, {}::float8 AS window_s)"
        f" INSERT INTO {RateLimit._meta.tablename} AS r (key, used, granted, reset_at)"
        " SELECT key, least(amount, quota), least(amount, quota), clock_timestamp() + make_interval(secs => window_s)"
        " FROM arg"
        " ON CONFLICT (key) DO UPDATE SET"
        " granted = CASE WHEN r.reset_at <= clock_timestamp() THEN excluded.granted"
        " ELSE greatest(0, least(excluded.granted, {}::int - r.used)) END,"
        " used = CASE WHEN r.reset_at <= clock_timestamp() THEN excluded.used"
        " ELSE r.used + greatest(0, least(excluded.granted, {}::int - r.used)) END,"
        " reset_at = CASE WHEN r.reset_at <= clock_timestamp() THEN excluded.reset_at ELSE r.reset_at END"
        " RETURNING granted, used, extract(epoch FROM reset_at - clock_timestamp())::float8 AS reset_in",
        Param("key"),
        Param("amount"),
        Param("quota"),
        Param("window"),
        Param("quota"),
        Param("quota"),
    )
)
_WINDOW_OPEN = WhereRaw(f"{column_sql(RateLimit.reset_at)} > clock_timestamp()")
RATE_GIVE_BACK = Statement(
    RateLimit.update({RateLimit.used: QueryString("greatest(used - {}::int, 0)", Param("amount"))}).where(
        (RateLimit.key == Param("key")) & _WINDOW_OPEN
    )
)
RATE_PURGE = Statement(
    RateLimit.delete().where(WhereRaw(f"{column_sql(RateLimit.reset_at)} < clock_timestamp() - interval '1 minute'"))
)


# --------------------------------------------------------------------------------------------
# Webhook deliveries (app/services/webhooks.py, app/webhooks_worker.py)

_SENDABLE = "('pending', 'sending')"  # a 'sending' row whose lease (next_attempt_at) ended is due again

# The same message again, as a new delivery: only to the owner's enabled webhook, and for a
# project's event only while the owner is still a member there.
REDELIVER = Statement(
    QueryString(
        "INSERT INTO webhook_delivery (webhook, event_id, project_id, type, message_id, payload, redelivery_of,"
        " next_attempt_at, created_at)"
        " SELECT d.webhook, d.event_id, d.project_id, d.type, d.message_id, d.payload, d.id, now(), now()"
        " FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook"
        " WHERE d.id = {} AND d.webhook = {} AND w.owner = {} AND w.enabled"
        " AND (d.project_id IS NULL OR EXISTS (SELECT 1 FROM project_member m"
        " WHERE m.project = d.project_id AND m.member = w.owner))"
        " RETURNING *",
        Param("id"),
        Param("webhook"),
        USER,
    )
)

# A worker's claim: up to ``room`` due deliveries of enabled webhooks, oldest due first, at most
# ``per_webhook`` of one webhook (less what this worker already sends to it: ``busy`` / ``busy_room``),
# skipping rows another worker holds. Each becomes 'sending' with a lease until now + ``lease``.
CLAIM_DELIVERIES = Statement(
    QueryString(
        "WITH room AS (SELECT * FROM unnest({}::integer[], {}::integer[]) AS r(webhook, room)),"
        " due AS (SELECT d.id, d.webhook, d.next_attempt_at FROM webhook_delivery d"
        f" WHERE d.status IN {_SENDABLE} AND d.next_attempt_at <= now()"
        " AND EXISTS (SELECT 1 FROM webhook w WHERE w.id = d.webhook AND w.enabled)"
        " AND NOT EXISTS (SELECT 1 FROM room WHERE room.webhook = d.webhook AND room.room <= 0)"
        " ORDER BY d.next_attempt_at, d.id LIMIT {} FOR UPDATE OF d SKIP LOCKED),"
        " ranked AS (SELECT due.*, row_number() OVER (PARTITION BY due.webhook ORDER BY due.next_attempt_at, due.id)"
        " AS n FROM due),"
        " chosen AS (SELECT ranked.id FROM ranked LEFT JOIN room USING (webhook)"
        " WHERE ranked.n <= coalesce(room.room, {}) ORDER BY ranked.next_attempt_at, ranked.id LIMIT {})"
        " UPDATE webhook_delivery d SET status = 'sending', attempts = d.attempts + 1, last_attempt_at = now(),"
        " next_attempt_at = now() + make_interval(secs => {}::float8)"
        " FROM chosen, webhook w WHERE d.id = chosen.id AND w.id = d.webhook"
        " RETURNING d.id, d.webhook, d.message_id, d.payload::text AS payload, d.attempts,"
        " extract(epoch FROM now() - d.created_at)::float8 AS age, w.url, w.secret_salt, w.secret_key_id",
        Param("busy"),
        Param("busy_room"),
        Param("scan"),
        Param("per_webhook"),
        Param("room"),
        Param("lease"),
    )
)

# Outcomes, written only by the claim that is still current (same attempt, still 'sending'): a
# worker whose lease ran out and whose delivery was claimed again records nothing. Each also
# appends the attempt to ``history`` (the last 25).
_CURRENT_CLAIM = "WHERE id = {} AND attempts = {} AND status = 'sending'"
_HISTORY = (
    "history = (CASE WHEN jsonb_array_length(history) >= 25 THEN history - 0 ELSE history END)"
    " || jsonb_build_array(jsonb_build_object('attempt', attempts,"
    " 'at', to_char(last_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
    " 'status_code', {}::integer, 'error', left({}::text, 500), 'response_ms', {}::integer))"
)
RECORD_DELIVERED = Statement(
    QueryString(
        "UPDATE webhook_delivery SET status = 'delivered', delivered_at = now(), last_status_code = {},"
        f" last_error = NULL, last_response_ms = {{}}, {_HISTORY} {_CURRENT_CLAIM}",
        Param("code"),
        Param("ms"),
        Param("code"),
        None,
        Param("ms"),
        Param("id"),
        Param("attempts"),
    )
)
# ``delay`` null: no more retries ('failed').
RECORD_FAILED = Statement(
    QueryString(
        "UPDATE webhook_delivery SET status = CASE WHEN {}::float8 IS NULL THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = CASE WHEN {}::float8 IS NULL THEN next_attempt_at"
        " ELSE now() + make_interval(secs => {}::float8) END,"
        f" last_status_code = {{}}, last_error = left({{}}, 500), last_response_ms = {{}}, {_HISTORY}"
        f" {_CURRENT_CLAIM}",
        Param("delay"),
        Param("delay"),
        Param("delay"),
        Param("code"),
        Param("error"),
        Param("ms"),
        Param("code"),
        Param("error"),
        Param("ms"),
        Param("id"),
        Param("attempts"),
    )
)
# 410 Gone: the delivery failed, the webhook is disabled and nothing else queued for it is sent.
RECORD_GONE = Statement(
    QueryString(
        "WITH this AS (UPDATE webhook_delivery SET status = 'failed', last_status_code = 410, last_error = {},"
        f" last_response_ms = {{}}, {_HISTORY} {_CURRENT_CLAIM} RETURNING webhook),"
        " off AS (UPDATE webhook SET enabled = false, disabled_reason = {}, updated_at = now(),"
        " version = version + 1 WHERE id IN (SELECT webhook FROM this) AND enabled RETURNING id)"
        " UPDATE webhook_delivery d SET status = 'cancelled', last_error = {}"
        f" FROM off WHERE d.webhook = off.id AND d.id <> {{}} AND d.status IN {_SENDABLE}",
        Param("error"),
        Param("ms"),
        410,
        Param("error"),
        Param("ms"),
        Param("id"),
        Param("attempts"),
        Param("reason"),
        Param("reason"),
        Param("id"),
    )
)
# A stopping worker hands back what it had claimed but not sent.
RELEASE_CLAIMS = Statement(
    QueryString(
        "UPDATE webhook_delivery SET status = 'pending', next_attempt_at = now(), attempts = attempts - 1"
        " WHERE id = ANY({}::bigint[]) AND status = 'sending'",
        Param("ids"),
    )
)
PURGE_DELIVERIES = Statement(
    QueryString(
        "DELETE FROM webhook_delivery WHERE created_at < now() - make_interval(days => {}::integer)"
        " AND status IN ('delivered', 'failed', 'cancelled')",
        Param("days"),
    )
)


# --------------------------------------------------------------------------------------------
# The event log (app/services/events.py, app/events.py; written by the migration "event log")

# Every event id below this is settled: ids are txid * EVENTS_PER_TRANSACTION + n, so no smaller
# id can still appear once every transaction below that txid has ended as the snapshot sees it:
# the snapshot's oldest running transaction bounds it, except that a transaction still running
# in another database of the server (which cannot write here) does not hold the feed back. A
# transaction the snapshot saw running and that has ended since counts as running: it might
# have been ours. (Other roles' sessions show no backend_xid without pg_read_all_stats: theirs
# count too.)
EVENTS_SETTLED = (
    "((SELECT least(pg_snapshot_xmax(s)::text::bigint, (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) x"
    " WHERE x::text::bigint % 4294967296 NOT IN (SELECT a.backend_xid::text::bigint"
    " FROM pg_stat_get_activity(NULL) a WHERE a.backend_xid IS NOT NULL"
    " AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))))"
    f" FROM pg_current_snapshot() s) * {EVENTS_PER_TRANSACTION})"
)
# An event as the API shows it, as one JSON text (json keeps this key order).
EVENT_JSON = (
    "json_build_object('id', e.id, 'type', e.type, 'occurred_at', event_time(e.occurred_at),"
    " 'actor_id', e.actor_id, 'project_id', e.project_id, 'object', e.object, 'changes', e.changes)::text"
)

# A task's event as the members of the project it left see it (they can no longer see the task):
# that it went, where to, and nothing else.
DEPARTURE_JSON = (
    "json_build_object('id', e.id, 'type', e.type, 'occurred_at', event_time(e.occurred_at),"
    " 'actor_id', e.actor_id, 'project_id', e.moved_from,"
    " 'object', CASE WHEN e.type LIKE '%.deleted' THEN json_build_object('id', e.object_id)"
    " ELSE json_build_object('id', e.object_id, 'project_id', e.project_id) END,"
    " 'changes', CASE WHEN e.type LIKE '%.deleted' THEN NULL"
    " ELSE json_build_object('project_id', json_build_array(e.moved_from, e.project_id)) END)::text"
)

# A page of the feed: the settled events after ``after`` of the user's projects and their own
# (inbox, labels, their removal), a deleted project's to its members then (``audience``), and
# the departures of tasks from their projects, each source
# read in id order from its index, at most ``limit`` from each. ``upto`` (the settled bound) and
# ``purged`` come on every row, also on the one row (with a null event) of an empty page.
_FROM_EACH = "AND e.id > {}::bigint AND e.id < b.upto ORDER BY e.id LIMIT {}::integer) x"
EVENT_FEED = Statement(
    QueryString(
        f"WITH b AS (SELECT {EVENTS_SETTLED} AS upto,"
        " (SELECT purged_through FROM event_retention) AS purged,"
        " ARRAY(SELECT project FROM project_member WHERE member = {}) AS projects),"
        " ids AS (SELECT x.id FROM b, unnest(b.projects) p,"
        f" LATERAL (SELECT e.id FROM event e WHERE e.project_id = p {_FROM_EACH}"
        f" UNION SELECT x.id FROM b, LATERAL (SELECT e.id FROM event e WHERE e.owner_id = {{}} {_FROM_EACH}"
        " UNION SELECT x.id FROM b, unnest(b.projects) p,"
        f" LATERAL (SELECT e.id FROM event e WHERE e.moved_from = p {_FROM_EACH}"
        f" UNION SELECT x.id FROM b, LATERAL (SELECT e.id FROM event e WHERE e.audience @> ARRAY[{{}}::integer]"
        f" {_FROM_EACH}),"
        " page AS (SELECT id FROM ids ORDER BY id LIMIT {}::integer)"
        " SELECT b.upto, b.purged, e.id,"
        f" CASE WHEN e.owner_id = {{}} OR e.project_id = ANY(b.projects) OR {{}} = ANY(e.audience) THEN {EVENT_JSON}"
        f" ELSE {DEPARTURE_JSON} END"
        " AS event FROM b LEFT JOIN (page JOIN event e USING (id)) ON true ORDER BY e.id",
        USER,
        Param("after"),
        Param("limit"),
        USER,
        Param("after"),
        Param("limit"),
        Param("after"),
        Param("limit"),
        USER,
        Param("after"),
        Param("limit"),
        Param("limit"),
        USER,
        USER,
    )
)
EVENT_PURGED = Statement(QueryString("SELECT purged_through FROM event_retention"))
EVENTS_NOW = Statement(QueryString(f"SELECT {EVENTS_SETTLED} - 1 AS position"))

# One task's events, newest first; every row carries the total.
TASK_ACTIVITY = Statement(
    QueryString(
        f"SELECT count(*) OVER () AS total, {EVENT_JSON} AS event FROM event e"
        " WHERE e.object_type = 'task' AND e.object_id = {} ORDER BY e.id DESC LIMIT {} OFFSET {}",
        Param("task"),
        Param("limit"),
        Param("offset"),
    )
)
TASK_ACTIVITY_COUNT = Statement(
    QueryString("SELECT count(*) AS total FROM event WHERE object_type = 'task' AND object_id = {}", Param("task"))
)

# The events a process's hub has not fetched yet (all users'), and the settled bound; ``newest``
# says whether committed events wait behind a transaction still running.
EVENTS_SINCE = Statement(
    QueryString(
        f"WITH b AS (SELECT {EVENTS_SETTLED} AS upto, (SELECT max(id) FROM event) AS newest)"
        " SELECT b.upto, b.newest, e.id, e.type, e.project_id, e.owner_id, e.moved_from, e.audience, e.actor_id,"
        f" {EVENT_JSON} AS event, CASE WHEN e.moved_from IS NOT NULL THEN {DEPARTURE_JSON} END AS departure"
        " FROM b LEFT JOIN LATERAL (SELECT * FROM event e WHERE e.id > {}::bigint AND e.id < b.upto"
        " ORDER BY e.id LIMIT {}::integer) e ON true ORDER BY e.id",
        Param("after"),
        Param("limit"),
    )
)
# The projects each of ``users`` is a member of.
MEMBERSHIPS = Statement(
    QueryString(
        "SELECT member, array_agg(project) AS projects FROM project_member"
        " WHERE member = ANY({}::integer[]) GROUP BY member",
        Param("users"),
    )
)

# Retention: the newest event to delete (every event before the first one at or after
# ``cutoff`` in id order, or every settled one), then deletes in batches; ``purged_through`` is
# raised first, so an ``after`` below it is a 410 from the moment its events may be missing.
EVENTS_PURGE_BOUND = Statement(
    QueryString(
        "WITH k AS (SELECT coalesce((SELECT id FROM event WHERE occurred_at >= {}::timestamptz ORDER BY id LIMIT 1),"
        f" {EVENTS_SETTLED}) AS keep_from)"
        " SELECT (SELECT max(e.id) FROM event e WHERE e.id < k.keep_from) AS upto FROM k",
        Param("cutoff"),
    )
)
EVENTS_MARK_PURGED = Statement(
    QueryString(
        "INSERT INTO event_retention (id, purged_through) VALUES (1, {}::bigint) ON CONFLICT (id)"
        " DO UPDATE SET purged_through = greatest(event_retention.purged_through, excluded.purged_through)",
        Param("upto"),
    )
)
EVENTS_DELETE = Statement(
    QueryString(
        "WITH gone AS (DELETE FROM event WHERE id IN"
        " (SELECT id FROM event WHERE id <= {}::bigint ORDER BY id LIMIT {}::integer) RETURNING id)"
        " SELECT count(*) AS n FROM gone",
        Param("upto"),
        Param("batch"),
    )
)
