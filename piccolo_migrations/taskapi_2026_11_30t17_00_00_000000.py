"""A partial index on task (owner, status) for inbox tasks: a list's count reads the inbox from it alone.

An offset page of the whole list counts up to 10 001 of the user's tasks, inbox first: without
this index the inbox rows were read from the table (a bitmap heap scan over every task without
a project, filtered by owner); with it, the count is an index-only scan (bench/README.md,
"Shared projects": 5.3 -> 1.0 ms per count for the bench user). And ``task`` is vacuumed sooner,
so those scans stay index-only under updates.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "task inbox index, sooner autovacuum"

FORWARDS = [
    "CREATE INDEX IF NOT EXISTS task_inbox_owner ON task (owner, status) WHERE project IS NULL",
    # Index-only scans need the visibility map; the default (20 % of rows dead) let 20 000 updates
    # of a 100 000-task table make the count 5-9x slower until a vacuum ran.
    "ALTER TABLE task SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000)",
]
BACKWARDS = [
    "ALTER TABLE task RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold)",
    "DROP INDEX IF EXISTS task_inbox_owner",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
