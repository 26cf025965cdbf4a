"""Webhook deliveries for departures: a task that leaves a project tells that project's members.

The feed shows the members of the project a task left (``event.moved_from``) who cannot read
the task any more a departure: the event with ``object`` ``{id, project_id}`` and ``changes``
``{project_id: [old, new]}`` only. ``webhook_enqueue`` now queues the same to their webhooks
(for all projects, or for the one the task left) that did not receive the whole event, and
writes times with the event log's own ``event_time``, so a body is exactly the feed's item.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T14:30:04:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook deliveries for departures"

# Who reads the whole event ``ev`` through webhook ``w``: its owner can read the event (a member
# of its project, or its owner_id) and the webhook is for all projects or the event's.
TAKES_EVENT = (
    "(EXISTS (SELECT 1 FROM project_member m WHERE m.project = ev.project_id AND m.member = w.owner)"
    " OR w.owner IS NOT DISTINCT FROM ev.owner_id) AND (w.project IS NULL OR w.project = ev.project_id)"
)

FORWARDS = [
    f"""CREATE OR REPLACE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
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
                'id', ev.id, 'type', ev.type, 'occurred_at', event_time(ev.occurred_at), 'actor_id', ev.actor_id,
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
        -- A task that left a project: that project's members' other webhooks get its departure.
        IF ev.moved_from IS NOT NULL THEN
            INSERT INTO webhook_delivery (webhook, event_id, project_id, type, message_id, payload)
            SELECT w.id, ev.id, ev.moved_from, ev.type, 'msg_' || ev.id || '_' || w.id,
                jsonb_build_object(
                    'id', ev.id, 'type', ev.type, 'occurred_at', event_time(ev.occurred_at),
                    'actor_id', ev.actor_id, 'project_id', ev.moved_from,
                    'object', CASE WHEN ev.type LIKE '%.deleted' THEN jsonb_build_object('id', ev.object_id)
                        ELSE jsonb_build_object('id', ev.object_id, 'project_id', ev.project_id) END,
                    'changes', CASE WHEN ev.type LIKE '%.deleted' THEN NULL
                        ELSE jsonb_build_object('project_id', jsonb_build_array(ev.moved_from, ev.project_id)) END)
            FROM project_member m JOIN webhook w ON w.owner = m.member
            WHERE m.project = ev.moved_from AND w.enabled
                AND (w.project IS NULL OR w.project = ev.moved_from)
                AND webhook_event_matches(w.events, ev.type)
                AND NOT ({TAKES_EVENT});
        END IF;
        RETURN NULL;
    END $$""",
]

# The function as the migration "webhook deliveries for events" left it.
BACKWARDS = [
    """CREATE OR REPLACE FUNCTION webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        ev event;
    BEGIN
        PERFORM 1 FROM webhook WHERE enabled LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        SELECT * INTO ev FROM event WHERE id = NEW.id;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        INSERT INTO webhook_delivery (webhook, event_id, project_id, type, message_id, payload)
        SELECT w.id, ev.id, ev.project_id, ev.type, 'msg_' || ev.id || '_' || w.id,
            jsonb_build_object(
                'id', ev.id, 'type', ev.type, 'occurred_at', event_time(ev.occurred_at), 'actor_id', ev.actor_id,
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
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
