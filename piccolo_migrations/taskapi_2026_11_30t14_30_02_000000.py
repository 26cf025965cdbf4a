"""Webhook deliveries for events: ``webhook_enqueue``, a deferred trigger on ``event``.

At commit, every event of the transaction queues one delivery per enabled webhook that matches
its type and whose owner can read it then: for a project's event, a member of the project (or
the event's ``owner_id``, a member just removed), with a webhook for all projects or this one;
for any other event (an inbox task, a label), the event's ``owner_id``. It runs inside the
event's own transaction, so a rolled-back change queues nothing and a committed one cannot lose
its deliveries to a crash. It reads the event as the transaction left it: the event log folds
a transaction's changes of one object into one event (created then updated is one
``created``), so the body, fixed here, is the final one.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T14:30:02:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook deliveries for events"

# The API's time format (UTC, microseconds only when there are any, "Z"), as event_time writes it.
TIME = (
    "to_char(ev.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"
    " || CASE WHEN extract(microseconds FROM ev.occurred_at AT TIME ZONE 'UTC') % 1000000 = 0 THEN ''"
    " ELSE to_char(ev.occurred_at AT TIME ZONE 'UTC', '.US') END || 'Z'"
)

FORWARDS = [
    f"""CREATE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        ev event;
    BEGIN
        -- Most writes happen where nobody has a webhook: one probe, nothing else.
        PERFORM 1 FROM webhook WHERE enabled LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        -- At commit: the event as the transaction left it (later changes of the same object are
        -- folded into it; one created and deleted again is gone).
        SELECT * INTO ev FROM event WHERE id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        -- Readers of a project's event: its members, and owner_id (a removed member); of another
        -- event: owner_id. A webhook for one project takes only that project's events.
        INSERT INTO webhook_delivery (webhook, event_id, project_id, type, message_id, payload)
        SELECT w.id, ev.id, ev.project_id, ev.type, 'msg_' || ev.id || '_' || w.id,
            jsonb_build_object(
                'id', ev.id, 'type', ev.type, 'occurred_at', {TIME}, 'actor_id', ev.actor_id,
                'project_id', ev.project_id, 'object', ev.object, 'changes', ev.changes)
        FROM webhook w
        WHERE w.id IN (
                SELECT v.id FROM project_member m JOIN webhook v ON v.owner = m.member
                WHERE m.project = ev.project_id
                UNION
                SELECT v.id FROM webhook v WHERE v.owner = ev.owner_id)
            AND w.enabled
            AND (w.project IS NULL OR w.project = ev.project_id)
            AND webhook_event_matches(w.events, ev.type);
        RETURN NULL;
    END $$""",
    # Deferred: runs at commit, inside the transaction, once the event is final.
    "CREATE CONSTRAINT TRIGGER event_webhook_enqueue AFTER INSERT ON event"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION webhook_enqueue()",
]

BACKWARDS = [
    "DROP TRIGGER IF EXISTS event_webhook_enqueue ON event",
    "DROP FUNCTION IF EXISTS webhook_enqueue()",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
