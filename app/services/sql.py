"""The only hand-written SQL: what Piccolo's query builder cannot express.

- a task's labels as one JSON column (a correlated ``json_agg``), so a page is one round trip;
- creating a task with its labels in one statement (data-modifying CTEs);
- linking labels and returning them (a data-modifying CTE);
- the ancestor walk of the cycle check (``WITH RECURSIVE``);
- advisory locks, and the rate-limit counter's UPSERT (app/ratelimit.py).

Column lists, casts and the label shape are still read from the tables (app/tables.py), and every
statement is a ``Statement`` with named parameters (app/services/query.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from piccolo.columns import Column
from piccolo.columns.combination import WhereRaw
from piccolo.querystring import QueryString

from app.services.query import Param, Statement
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


def completed_at(status: Param, previous: str, now: Param) -> QueryString:
    """The one rule for ``completed_at``: set when status becomes done, kept while done, else null."""
    done = TaskStatus.done.value
    return QueryString(
        f"CASE WHEN {{}}::varchar = '{done}' THEN COALESCE({previous}, {{}}::timestamptz) ELSE NULL END", status, now
    )


def column_sql(column: Column) -> str:
    return f'"{column._meta.table._meta.tablename}"."{column._meta.db_column_name}"'


def any_of(column: Column, values: Param) -> WhereRaw:
    """``column`` is one of the array ``values`` (one parameter, whatever the number of values)."""
    return WhereRaw(f"{column_sql(column)} = ANY({{}}::{_cast(column)}[])", values)


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


COLUMNS = _names(tuple(Task._meta.columns))
TASK_ID = '"task"."id"'
PAGE_COLUMNS = ", ".join([*(f'"task"."{c}"' for c in COLUMNS), f"{labels_json(TASK_ID)} AS labels"])


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


def returning_labels(update: QueryString) -> QueryString:
    """An ``UPDATE task ... RETURNING`` that also returns the task's labels."""
    return QueryString(f"{{}}, {labels_json(TASK_ID)} AS labels", update)


# Every column but those the database fills (id, version) and the one the status rule derives.
INSERTED = tuple(
    c for c in Task._meta.columns if c._meta.name not in {"id", "version", "completed_at"} and not c._meta.primary_key
)


def _cast(column: Column) -> str:
    """The SQL type a parameter for ``column`` is cast to (a serial's values are integers)."""
    kind: str = column.column_type.split("(")[0].lower()
    return {"serial": "integer", "bigserial": "bigint"}.get(kind, kind)


# Labels are checked, the task inserted and linked, and the answer returned in one statement;
# when a label is not the user's, nothing is inserted (no rows come back). Parameters: one per
# inserted column (by name), ``now``, ``label_ids`` and ``label_count``.
CREATE_TASK = Statement(
    QueryString(
        "WITH wanted AS (SELECT l.* FROM label l WHERE l.owner = {} AND l.id = ANY({}::integer[])),"
        f" t AS (INSERT INTO task ({', '.join(_names(INSERTED))}, completed_at)"
        f" SELECT {', '.join('{}::' + _cast(c) for c in INSERTED)}, {{}}"
        " WHERE (SELECT count(*) FROM wanted) = {} RETURNING *),"
        " linked AS (INSERT INTO task_label (task, label) SELECT t.id, w.id FROM t, wanted w)"
        f" SELECT {', '.join(f't.{c}' for c in COLUMNS)}, (SELECT {label_objects('w')} FROM wanted w) AS labels FROM t",
        Param("owner"),
        Param("label_ids"),
        *(Param(c._meta.name) for c in INSERTED),
        completed_at(Param("status"), "NULL", Param("now")),
        Param("label_count"),
    )
)

# Replaces nothing: the caller deleted the old links. Returns the linked labels, API-shaped.
LINK_LABELS = Statement(
    QueryString(
        "WITH linked AS (INSERT INTO task_label (task, label) SELECT {}, l.id FROM label l"
        " WHERE l.id = ANY({}::integer[]) AND l.owner = {} RETURNING label)"
        f" SELECT {', '.join(f'l.{c}' for c in _names(LABEL_BRIEF))} FROM linked JOIN label l ON l.id = linked.label"
        f" ORDER BY {', '.join(f'l.{c}' for c in _names(LABEL_ORDER))}",
        Param("task"),
        Param("label_ids"),
        Param("user"),
    )
)

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
