"""Webhook rules and the delivery queue (README "Webhooks").

- CHECK constraints Piccolo keeps in Python (the URL is not empty, a delivery's status) and a few
  the service relies on (at least one event pattern, counts not negative).
- ``webhook_event_matches(patterns, type)``: ``*``, ``<resource>.*`` or the exact type.
- ``webhook_member_removed`` (AFTER DELETE ON project_member): what is still queued of that
  project's events for the removed member's webhooks is cancelled (not when the project itself
  is being deleted: its members saw those events, and nothing else will tell them).
- Indexes: the queue's due rows, a webhook's deliveries newest first, webhooks by owner and by
  project.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T14:30:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook rules and queue"

STATUSES = "'pending', 'sending', 'delivered', 'failed', 'cancelled'"

FORWARDS = [
    "ALTER TABLE webhook ADD CONSTRAINT webhook_url_not_empty CHECK (char_length(url) >= 1)",
    "ALTER TABLE webhook ADD CONSTRAINT webhook_events_not_empty CHECK (cardinality(events) >= 1)",
    "ALTER TABLE webhook ADD CONSTRAINT webhook_version_positive CHECK (version >= 1)",
    f"ALTER TABLE webhook_delivery ADD CONSTRAINT webhook_delivery_status_valid CHECK (status IN ({STATUSES}))",
    "ALTER TABLE webhook_delivery ADD CONSTRAINT webhook_delivery_attempts_positive CHECK (attempts >= 0)",
    "CREATE INDEX webhook_owner ON webhook (owner, id)",
    "CREATE INDEX webhook_project ON webhook (project) WHERE project IS NOT NULL",
    # What a worker claims: due rows in order (a 'sending' row is due again when its lease ends).
    "CREATE INDEX webhook_delivery_due ON webhook_delivery (next_attempt_at, id)"
    " WHERE status IN ('pending', 'sending')",
    "CREATE INDEX webhook_delivery_webhook ON webhook_delivery (webhook, id)",
    # Finished deliveries are purged by age.
    "CREATE INDEX webhook_delivery_created ON webhook_delivery (created_at)",
    """CREATE FUNCTION webhook_event_matches(patterns varchar[], event_type varchar) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT event_type = ANY (patterns) OR '*' = ANY (patterns)
            OR (split_part(event_type, '.', 1) || '.*') = ANY (patterns)
    $$""",
    """CREATE FUNCTION webhook_member_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM project p WHERE p.id = OLD.project) THEN
            UPDATE webhook_delivery d
            SET status = 'cancelled', last_error = 'the webhook''s owner is no longer a member of the project'
            FROM webhook w
            WHERE d.webhook = w.id AND w.owner = OLD.member AND d.project_id = OLD.project
                AND d.status IN ('pending', 'sending');
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER project_member_webhook_cancel AFTER DELETE ON project_member"
    " FOR EACH ROW EXECUTE FUNCTION webhook_member_removed()",
]

BACKWARDS = [
    "DROP TRIGGER IF EXISTS project_member_webhook_cancel ON project_member",
    "DROP FUNCTION IF EXISTS webhook_member_removed()",
    "DROP FUNCTION IF EXISTS webhook_event_matches(varchar[], varchar)",
    "DROP INDEX IF EXISTS webhook_delivery_created",
    "DROP INDEX IF EXISTS webhook_delivery_webhook",
    "DROP INDEX IF EXISTS webhook_delivery_due",
    "DROP INDEX IF EXISTS webhook_project",
    "DROP INDEX IF EXISTS webhook_owner",
    "ALTER TABLE webhook_delivery DROP CONSTRAINT IF EXISTS webhook_delivery_attempts_positive",
    "ALTER TABLE webhook_delivery DROP CONSTRAINT IF EXISTS webhook_delivery_status_valid",
    "ALTER TABLE webhook DROP CONSTRAINT IF EXISTS webhook_version_positive",
    "ALTER TABLE webhook DROP CONSTRAINT IF EXISTS webhook_events_not_empty",
    "ALTER TABLE webhook DROP CONSTRAINT IF EXISTS webhook_url_not_empty",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
