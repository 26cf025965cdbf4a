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

from app.services.access import EDIT, USER, roles_from
from app.services.query import Param, Statement, column_sql
from app.tables import LABEL_BRIEF, LABEL_ORDER, RateLimit, Task, TaskStatus


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


def rows_of(tasks: QueryString, order: str) -> QueryString:
    """The tasks a limited subquery selects, with their labels (built for those rows only)."""
    return QueryString(f"SELECT {PAGE_COLUMNS} FROM ({{}}) task ORDER BY {order}", tasks)


def rows_by_id(ids: QueryString, order: str) -> QueryString:
    """The tasks whose ids a limited subquery selects, with their labels."""
    return QueryString(f'SELECT {PAGE_COLUMNS} FROM task WHERE "task"."id" IN ({{}}) ORDER BY {order}', ids)


def capped_count(rows: QueryString) -> QueryString:
    """How many rows ``rows`` has, counting no further than ``count_max``."""
    return QueryString("SELECT count(*) AS count FROM ({} LIMIT {}) n", rows, Param("count_max"))


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
    return {"serial": "integer", "bigserial": "bigint"}.get(kind, kind)


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
        " WHERE m.project = t.project AND m.member = u.id))),"
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
        " UPDATE task SET project = {}::integer, owner = CASE WHEN {}::integer IS NULL THEN {} ELSE task.owner END"
        " FROM sub WHERE task.id = sub.id RETURNING task.id",
        Param("task"),
        Param("project"),
        Param("project"),
        USER,
    )
)
UNASSIGN_OUTSIDERS = Statement(
    QueryString(
        "DELETE FROM task_assignee a USING task t WHERE a.task = t.id AND t.id = ANY({}::integer[])"
        " AND NOT ((t.project IS NULL AND a.assignee = t.owner)"
        " OR EXISTS (SELECT 1 FROM project_member m WHERE m.project = t.project AND m.member = a.assignee))",
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
