"""Piccolo tables: the one source of the schema.

Column lengths here are the API's limits too: the DTO layer (app/dto.py) reads them, and
PostgreSQL enforces them again as ``varchar(n)``. Rules Piccolo keeps in Python only (``choices``,
ranges, patterns, no self-parent) are CHECK constraints added in the migrations.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from piccolo.columns import (
    JSONB,
    Boolean,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.constraints import Unique
from piccolo.table import Table


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
    name = Varchar(length=200, required=True, null=False)
    description = Varchar(length=10_000, default="", null=False)
    color = Varchar(length=7, default=None, null=True)
    archived = Boolean(default=False, null=False)
    version = Integer(default=1, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)
    updated_at = Timestamptz(default=TimestamptzNow(), null=False)


class Label(Table):
    id = Serial(primary_key=True)
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    name = Varchar(length=100, required=True, null=False)
    color = Varchar(length=7, default=None, null=True)
    version = Integer(default=1, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)
    updated_at = Timestamptz(default=TimestamptzNow(), null=False)


class Task(Table):
    id = Serial(primary_key=True)
    owner = ForeignKey(User, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    project = ForeignKey(Project, null=True, default=None, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    parent: ForeignKey[Task] = ForeignKey(
        "self", null=True, default=None, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade
    )
    title = Varchar(length=500, required=True, null=False)
    description = Varchar(length=20_000, default="", null=False)
    status = Varchar(length=20, choices=TaskStatus, default=TaskStatus.todo, null=False)
    priority = Integer(choices=TaskPriority, default=TaskPriority.none, null=False)
    due_at = Timestamptz(default=None, null=True)
    completed_at = Timestamptz(default=None, null=True)
    position = Integer(default=0, null=False)
    version = Integer(default=1, null=False)
    created_at = Timestamptz(default=TimestamptzNow(), null=False)
    updated_at = Timestamptz(default=TimestamptzNow(), null=False)


class TaskLabel(Table):
    """The task-label link; one row per pair."""

    task = ForeignKey(Task, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    label = ForeignKey(Label, null=False, on_delete=OnDelete.cascade, on_update=OnUpdate.cascade)
    unique_task_label = Unique([task, label])


class Comment(Table):
    id = Serial(primary_key=True)
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


ALL_TABLES: list[type[Table]] = [User, Project, Label, Task, TaskLabel, Comment, IdempotencyKey, RateLimit]
