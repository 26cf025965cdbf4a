"""Piccolo tables: the one source of the schema and of every per-column API fact.

Column lengths here are the API's limits too: the DTO layer (app/dto.py) reads them, and
PostgreSQL enforces them again as ``varchar(n)``. What a Piccolo column cannot say is declared
next to it with ``api(...)``: whether a list sorts by it, and a text pattern. Everything else is
derived from the column: a sort value's type, NULLs sorting last (nullable columns), an integer's
range (its ``choices``, else the column type). Rules Piccolo keeps in Python only are CHECK
constraints in the migrations; ``check_constraints`` derives them from the same facts and
tests/test_migrations.py compares them with the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TypeVar

from piccolo.columns import (
    JSONB,
    Array,
    BigInt,
    BigSerial,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    Serial,
    SmallInt,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.constraints import Unique
from piccolo.table import Table

HEX_COLOR = r"^#[0-9a-fA-F]{6}$"


@dataclass(frozen=True)
class Api:
    """What the API does with a column beyond its type: list sorting, a text pattern."""

    sortable: bool = False
    pattern: str | None = None


NO_RULES = Api()
C = TypeVar("C", bound=Column)


def api(column: C, *, sortable: bool = False, pattern: str | None = None) -> C:
    """Declare a column's API rules where the column is declared."""
    column.api = Api(sortable=sortable, pattern=pattern)  # type: ignore[attr-defined]
    return column


def rules(column: Column) -> Api:
    return getattr(column, "api", NO_RULES)


def sortable(table: type[Table]) -> dict[str, Column]:
    """The fields a list of ``table`` may sort by, in declaration order; the primary key always."""
    found = {c._meta.name: c for c in table._meta.columns if rules(c).sortable}
    found[table._meta.primary_key._meta.name] = table._meta.primary_key
    return found


def value_type(column: Column) -> type:
    """The Python type of a column's values (what a cursor holds for it)."""
    if isinstance(column, Timestamptz):
        return dt.datetime
    if isinstance(column, (Integer, Serial, ForeignKey)):
        return int
    return str


def nulls_last(column: Column) -> bool:
    """A nullable column sorts its NULLs last, ascending and descending."""
    return bool(column._meta.null)


def int_range(column: Column) -> tuple[int, int]:
    """An integer column's allowed values: its ``choices`` if it has them, else its SQL type's."""
    choices = column._meta.choices
    if choices is not None:
        values = [member.value for member in choices]
        return min(values), max(values)
    bits = 16 if isinstance(column, SmallInt) else 64 if isinstance(column, BigInt) else 32
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def check_constraints(table: type[Table]) -> dict[str, str]:
    """The CHECK constraints the column facts imply, by name (``<table>_<column>_<rule>``)."""
    name = table._meta.tablename
    checks: dict[str, str] = {}
    for column in table._meta.columns:
        col = column._meta.db_column_name
        choices = column._meta.choices
        if choices is not None and isinstance(column, Varchar):
            values = ", ".join(f"'{member.value}'" for member in choices)
            checks[f"{name}_{col}_valid"] = f"{col} IN ({values})"
        elif choices is not None:
            low, high = int_range(column)
            checks[f"{name}_{col}_range"] = f"{col} BETWEEN {low} AND {high}"
        if isinstance(column, Varchar) and column._meta.required:
            checks[f"{name}_{col}_not_empty"] = f"char_length({col}) >= 1"
        if pattern := rules(column).pattern:
            checks[f"{name}_{col}_pattern"] = f"{col} ~ '{pattern}'"
    return checks


class TaskStatus(StrEnum):
    todo = "todo"
    in_progress = "in_progress"
    done = "done"


class TaskPriority(IntEnum):
    none = 0
    low = 1
    medium = 2
    high = 3
    urgent = 4


class ProjectRole(StrEnum):
    """A member's role in a project, from least to most: each may do all the earlier ones may."""

    viewer = "viewer"
    commenter = "commenter"
    editor = "editor"
    admin = "admin"
    owner = "owner"


class InvitationStatus(StrEnum):
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    withdrawn = "withdrawn"


class User(Table, tablename="app_user"):
    id = Serial(primary_key=True)
    # Stored lower-cased by the service, so the plain unique index is case-insensitive.
    email = Varchar(length=320, unique=True, null=False)
    display_name = Varchar(length=200, default="", null=False)
    password_hash = Varchar(length=255, null=False, secret=True)
    # A token carries the generation it was issued under; revoking all tokens bumps it.
    token_generation = Integer(default=0, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)


class Project(Table):
    id = Serial(primary_key=True)
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    name = api(Varchar(length=200, required=True, null=False), sortable=True)
    description = Varchar(length=10_000, default="", null=False)
    color = api(Varchar(length=7, default=None, null=True), pattern=HEX_COLOR)
    archived = Boolean(default=False, null=False)
    version = Integer(default=1, null=False)
    created_at = api(Timestamptz(default=TimestamptzNow(), null=False), sortable=True)
    updated_at = api(Timestamptz(default=TimestamptzNow(), null=False), sortable=True)


class Label(Table):
    id = Serial(primary_key=True)
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    name = api(Varchar(length=100, required=True, null=False), sortable=True)
    color = api(Varchar(length=7, default=None, null=True), pattern=HEX_COLOR)
    version = Integer(default=1, null=False)
    created_at = api(Timestamptz(default=TimestamptzNow(), null=False), sortable=True)
    updated_at = Timestamptz(default=TimestamptzNow(), null=False)


# A label as shown inside a task: {id, name, color}, in name order (then id).
LABEL_BRIEF: tuple[Column, ...] = (Label.id, Label.name, Label.color)
LABEL_ORDER: tuple[Column, ...] = (Label.name, Label.id)


class ProjectMember(Table):
    """Who is in a project, with which role; exactly one ``owner`` per project (the migration's
    partial unique index and deferred constraint trigger), who is also ``project.owner``."""

    project = ForeignKey(Project, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    member = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    role = Varchar(length=20, choices=ProjectRole, null=False)
    joined_at = Timestamptz(default=TimestamptzNow(), null=False)
    unique_project_member = Unique([project, member])


class Invitation(Table):
    """An offer to join a project, addressed to an email; accepted by the account with that email."""

    project = ForeignKey(Project, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    # Stored normalised as account emails are (app/services/users.py normalize_email).
    email = Varchar(length=320, null=False)
    role = Varchar(length=20, choices=ProjectRole, null=False)
    inviter = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    status = Varchar(length=20, choices=InvitationStatus, default=InvitationStatus.pending, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)
    expires_at = Timestamptz(null=False)


class Task(Table):
    id = Serial(primary_key=True)
    # Whose inbox holds the task while it has no project; a project's tasks belong to its members.
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    created_by = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    project = ForeignKey(Project, null=True, default=None, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    parent: ForeignKey[Task] = ForeignKey(
        "self", null=True, default=None, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade
    )
    title = api(Varchar(length=500, required=True, null=False), sortable=True)
    description = Varchar(length=20_000, default="", null=False)
    status = Varchar(length=20, choices=TaskStatus, default=TaskStatus.todo, null=False)
    priority = api(Integer(choices=TaskPriority, default=TaskPriority.none, null=False), sortable=True)
    due_at = api(Timestamptz(default=None, null=True), sortable=True)
    # Server-set: when status becomes done (app/services/tasks.py COMPLETED_AT is the one rule).
    completed_at = Timestamptz(default=None, null=True)
    position = api(Integer(default=0, null=False), sortable=True)
    version = Integer(default=1, null=False)
    created_at = api(Timestamptz(default=TimestamptzNow(), null=False), sortable=True)
    updated_at = api(Timestamptz(default=TimestamptzNow(), null=False), sortable=True)


class TaskLabel(Table):
    """The task-label link; one row per pair."""

    task = ForeignKey(Task, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    label = ForeignKey(Label, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    unique_task_label = Unique([task, label])


class TaskAssignee(Table):
    """Who a task is assigned to: members of its project (for an inbox task, only its owner)."""

    task = ForeignKey(Task, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    assignee = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    unique_task_assignee = Unique([task, assignee])


class Comment(Table):
    id = Serial(primary_key=True)
    # The author.
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    task = ForeignKey(Task, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    body = Varchar(length=10_000, required=True, null=False)
    version = Integer(default=1, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)
    updated_at = Timestamptz(default=TimestamptzNow(), null=False)


class IdempotencyKey(Table):
    """A creating POST's result, replayed for retries with the same key (SPEC "Safe writes").

    Written in the same transaction as the objects it describes; a transaction-scoped advisory
    lock on (owner, key) tells a concurrent retry that the first request is still running.
    """

    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    key = Varchar(length=255, null=False)
    # Which endpoint and which body the key was first used with (sha256 hex).
    fingerprint = Varchar(length=64, null=False)
    # The created rows exactly as first answered (an object, or a list for bulk create).
    snapshot = JSONB(null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False, index=True)
    unique_owner_key = Unique([owner, key])


class RateLimit(Table):
    """Rate-limit counts (app/ratelimit.py): one row per policy and subject, for its current window.

    UNLOGGED (a later migration): counts are rewritten constantly and worth nothing after a
    crash, so they skip the WAL; a crash or a failover only starts every window afresh.
    """

    key = Text(primary_key=True)
    used = Integer(null=False)
    # What the last grant took (RETURNING sees only the new row, so the statement keeps it here).
    granted = Integer(null=False)
    reset_at = Timestamptz(null=False)


# An event id's low bits: its place among its transaction's events (the migration "event log").
EVENTS_PER_TRANSACTION = 65_536


class Xid8(Column):
    """PostgreSQL's 64-bit transaction id (``xid8``), compared with snapshot bounds in SQL only."""

    value_type = int

    @property
    def column_type(self) -> str:
        return "XID8"


class Event(Table):
    """One committed change (SPEC "Changes, live updates and webhooks"), written only by the
    triggers of the migration "event log" in the changing transaction: never insert directly.

    ``id`` is set by the database: ``txid * EVENTS_PER_TRANSACTION`` plus the event's place in its
    transaction, so ids order events as transaction ids do (the feed's gap-free rule).
    ``object_type``/``object_id`` say which object changed (a membership's id for ``member.*``);
    ``project_id`` or, for inbox tasks and labels and a removed member, ``owner_id`` say who
    else may read it.
    """

    id = BigSerial(primary_key=True)
    txid = Xid8(null=False)
    type = Varchar(length=40, null=False)
    occurred_at = Timestamptz(default=TimestamptzNow(), null=False)
    actor_id = Integer(default=None, null=True)
    project_id = Integer(default=None, null=True)
    owner_id = Integer(default=None, null=True)
    # A task's event: the project it left in this transaction (its members see that it went).
    moved_from = Integer(default=None, null=True)
    # A deleted project's event: its members then, who may no longer be members of anything.
    audience = Array(Integer(), default=None, null=True)
    object_type = Varchar(length=20, null=False)
    object_id = Integer(null=False)
    object = JSONB(null=False)
    changes = JSONB(default=None, null=True)


class EventRetention(Table):
    """One row: the highest event id the retention cleanup has deleted (none yet: no row)."""

    id = Integer(primary_key=True, default=1)
    purged_through = BigInt(null=False)


class DeliveryStatus(StrEnum):
    """A webhook delivery's state: ``pending`` (due at ``next_attempt_at``), ``sending`` (claimed by
    a worker until ``next_attempt_at``, its lease), then ``delivered``, ``failed`` (gave up) or
    ``cancelled`` (the webhook was disabled, or its owner lost access to the event)."""

    pending = "pending"
    sending = "sending"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"


class Webhook(Table):
    """A user's subscription: the events they can see, POSTed to ``url`` (app/services/webhooks.py).

    The signing secret is not stored: it is derived from ``secret_salt`` and a key derived from
    TASKAPI_SECRET_KEY, whose fingerprint is ``secret_key_id`` (app/services/webhooks.py).
    """

    id = Serial(primary_key=True)
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    # Only this project's events (the owner must be a member); null: every event the owner sees.
    project = ForeignKey(Project, null=True, default=None, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    url = Varchar(length=2000, required=True, null=False)
    # Event types or patterns: "task.created", "task.*", "*".
    events = Array(Varchar(length=100), null=False)
    secret_salt = Varchar(length=64, null=False, secret=True)
    secret_key_id = Varchar(length=16, null=False, secret=True)
    enabled = Boolean(default=True, null=False)
    disabled_reason = Varchar(length=200, default=None, null=True)
    version = Integer(default=1, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)
    updated_at = Timestamptz(default=TimestamptzNow(), null=False)


class WebhookDelivery(Table):
    """One message to one webhook, and the durable queue entry that sends it (app/webhooks_worker.py).

    Queued by a trigger on ``event`` in the event's transaction; claimed with ``FOR UPDATE SKIP
    LOCKED``. ``payload`` is the body as sent; ``message_id`` the ``webhook-id`` header, the same
    for a redelivery of the same message.
    """

    id = BigSerial(primary_key=True)
    webhook = ForeignKey(Webhook, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    # The event delivered (null for a ping); not a foreign key: events expire, deliveries stay.
    event_id = BigInt(default=None, null=True)
    # The event's project, so a member's removal cancels what is still queued for them.
    project_id = Integer(default=None, null=True)
    type = Varchar(length=100, null=False)
    message_id = Varchar(length=100, null=False)
    payload = JSONB(null=False)
    status = Varchar(length=20, choices=DeliveryStatus, default=DeliveryStatus.pending, null=False)
    attempts = Integer(default=0, null=False)
    next_attempt_at = Timestamptz(default=TimestamptzNow(), null=False)
    last_attempt_at = Timestamptz(default=None, null=True)
    last_status_code = Integer(default=None, null=True)
    last_error = Varchar(length=500, default=None, null=True)
    last_response_ms = Integer(default=None, null=True)
    delivered_at = Timestamptz(default=None, null=True)
    # Every attempt's outcome, oldest first (the last 25): {attempt, at, status_code, error, response_ms}.
    history = JSONB(default=[], null=False)
    redelivery_of = BigInt(default=None, null=True)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)


ALL_TABLES: list[type[Table]] = [
    User,
    Project,
    ProjectMember,
    Invitation,
    Label,
    Task,
    TaskLabel,
    TaskAssignee,
    Comment,
    IdempotencyKey,
    RateLimit,
    Event,
    EventRetention,
    Webhook,
    WebhookDelivery,
]
