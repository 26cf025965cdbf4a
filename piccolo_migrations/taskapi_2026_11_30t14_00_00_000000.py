"""The event log (SPEC "Changes, live updates and webhooks"): one row per committed change.

- ``event``: written only by the triggers below, in the same transaction as the change (a
  rolled-back change leaves none). ``txid`` is the writing transaction; ``horizon`` is the next
  transaction id at the moment the event's id was drawn: once every transaction below it has
  ended (``horizon <= pg_snapshot_xmin(pg_current_snapshot())``), no event with a smaller id can
  still appear, so the feed serves ids in order without gaps (README "Events").
- ``event_retention``: how far the cleanup has deleted (an ``after`` below it is a 410).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-30T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "event log"

FORWARDS = [
    "CREATE TABLE event ("
    " id bigserial PRIMARY KEY,"
    " txid xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    " horizon xid8 NOT NULL,"
    " type varchar(40) NOT NULL,"
    " occurred_at timestamptz NOT NULL DEFAULT now(),"
    " actor_id integer NULL,"
    " project_id integer NULL,"
    " owner_id integer NULL,"
    " object_type varchar(20) NOT NULL,"
    " object_id integer NOT NULL,"
    " object jsonb NOT NULL,"
    " changes jsonb NULL)",
    "CREATE INDEX event_project ON event (project_id, id) WHERE project_id IS NOT NULL",
    "CREATE INDEX event_owner ON event (owner_id, id) WHERE owner_id IS NOT NULL",
    "CREATE INDEX event_object ON event (object_type, object_id, id)",
    # The feed's stopping point: the first event not yet settled (few rows past the horizon).
    "CREATE INDEX event_horizon ON event (horizon) INCLUDE (id)",
    "CREATE TABLE event_retention (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), purged_through bigint NOT NULL)",
]

BACKWARDS = [
    "DROP TABLE IF EXISTS event_retention",
    "DROP TABLE IF EXISTS event",
]


async def _run(statements: list[str]) -> None:
    engine = engine_finder()
    assert engine is not None
    for statement in statements:
        # On the migration's transaction (MigrationManager.run opens it): a failure undoes them all.
        await engine.run_ddl(statement)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)

    async def run():
        await _run(FORWARDS)

    async def run_backwards():
        await _run(BACKWARDS)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
