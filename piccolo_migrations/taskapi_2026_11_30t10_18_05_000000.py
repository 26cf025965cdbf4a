"""The rate-limit counts table (created by the previous migration) becomes UNLOGGED.

Counts change on nearly every lease and are worthless after a crash, so they skip the WAL:
cheaper writes, and no replication traffic. After a crash PostgreSQL empties an UNLOGGED
table, which only starts every window afresh. Piccolo cannot declare this on a Table, and a
migration's raw statements run before its tables are created, hence this second migration.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T10:18:05:000000"
VERSION = "1.38.0"
DESCRIPTION = "rate limit counts unlogged"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, ["ALTER TABLE rate_limit SET UNLOGGED"], ["ALTER TABLE rate_limit SET LOGGED"])
