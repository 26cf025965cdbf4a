"""The event log (SPEC "Changes, live updates and webhooks"): one row per committed change.

- ``event`` (created by the migration "event log tables"): written only by the triggers below,
  in the same transaction as the change (a rolled-back change leaves none). An event's id is its
  transaction's id (``txid``) times 65 536 plus its place among that transaction's events, so
  ids order events as transaction ids do: once ``pg_snapshot_xmin(pg_current_snapshot())`` has
  passed a transaction id, every event below it is committed (or never will be), and the feed
  serves ids in order with no gaps even when transactions commit out of order (README "Events").
  ``moved_from``: the project a task left, whose members are told it went.
- ``event_retention``: one row, how far the cleanup has deleted (an ``after`` below it is a 410).
- Triggers on project, project_member, label, task, task_label, task_assignee and comment write
  the events: ``object`` is the object as GET shows it after the change (``{id}`` after a
  delete; a project without the reader's ``role``), ``changes`` ``{field: [old, new]}`` (API
  names; ``label_ids`` and ``assignee_ids`` for the sets; never ``version`` or ``updated_at``).
  A transaction's changes to one object are one event (a PATCH's UPDATE and its label links
  fold together); what a delete takes along (a task's subtasks and comments, a project's tasks
  and members) has no events of its own. The actor is the transaction-local setting
  ``taskapi.actor`` (app/services/access.py sets it inside every write's access condition),
  else the row's author.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-30T14:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "event log"

# How many events one transaction may write (the low bits of an event id).
PER_TRANSACTION = 65_536

FORWARDS = [
    f"""CREATE FUNCTION event_next_id() RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
        n integer := coalesce(nullif(current_setting('taskapi.events', true), ''), '0')::integer;
    BEGIN
        IF n >= {PER_TRANSACTION} THEN
            RAISE EXCEPTION 'one transaction may change at most {PER_TRANSACTION} objects'
                USING ERRCODE = 'program_limit_exceeded';
        END IF;
        PERFORM set_config('taskapi.events', (n + 1)::text, true);
        RETURN pg_current_xact_id()::text::bigint * {PER_TRANSACTION} + n;
    END $$""",
    # The tables come from the migration "event log tables" (Piccolo's DDL): ids are drawn per
    # transaction instead of from the sequence, and a value the triggers forget fails loudly.
    "ALTER TABLE event ALTER COLUMN id SET DEFAULT event_next_id()",
    "DROP SEQUENCE event_id_seq",
    "ALTER TABLE event ALTER COLUMN txid SET DEFAULT pg_current_xact_id()",
    *(
        f"ALTER TABLE event ALTER COLUMN {column} DROP DEFAULT"
        for column in ("type", "object_type", "object_id", "object")
    ),
    "CREATE INDEX event_project ON event (project_id, id) WHERE project_id IS NOT NULL",
    "CREATE INDEX event_owner ON event (owner_id, id) WHERE owner_id IS NOT NULL",
    "CREATE INDEX event_object ON event (object_type, object_id, id)",
    "CREATE INDEX event_moved_from ON event (moved_from, id) WHERE moved_from IS NOT NULL",
    "CREATE INDEX event_audience ON event USING gin (audience) WHERE audience IS NOT NULL",
    "ALTER TABLE event_retention ADD CONSTRAINT event_retention_one_row CHECK (id = 1)",
    # A time as the API writes it (msgspec): UTC, microseconds only when there are any, "Z".
    # STABLE like to_char, so callers inline it (an IMMUTABLE one is called, ~4x the cost).
    """CREATE FUNCTION event_time(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT replace(to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '.000000Z', 'Z')
    $$""",
    """CREATE FUNCTION event_actor(fallback integer) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('taskapi.actor', true), '')::integer, fallback)
    $$""",
    # {field: [old, new]} for the fields whose value differs; version and updated_at are noise.
    # plpgsql, not sql: a sql function with a FROM is planned again in every transaction.
    """CREATE FUNCTION event_diff(old jsonb, new jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE
        diff jsonb := '{}';
        k text;
        v jsonb;
    BEGIN
        FOR k, v IN SELECT * FROM jsonb_each(new) LOOP
            IF k NOT IN ('version', 'updated_at') AND v IS DISTINCT FROM old -> k THEN
                diff := diff || jsonb_build_object(k, jsonb_build_array(old -> k, v));
            END IF;
        END LOOP;
        RETURN diff;
    END $$""",
    # Two successive changes of one transaction as one: each field's first old and last new value.
    # Functions that query are plpgsql: a sql one that cannot be inlined is planned again in every
    # transaction (measured: most of a trigger's cost), a plpgsql one's plans last the session.
    """CREATE FUNCTION event_merge(first jsonb, second jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
    BEGIN RETURN (SELECT coalesce(jsonb_object_agg(key, pair) FILTER (WHERE pair -> 0 IS DISTINCT FROM pair -> 1), '{}')
    FROM (
        SELECT s.key, CASE WHEN f.value IS NULL THEN s.value
                      ELSE jsonb_build_array(f.value -> 0, s.value -> 1) END AS pair
        FROM jsonb_each(second) s LEFT JOIN jsonb_each(first) f ON f.key = s.key
        UNION ALL
        SELECT f.key, f.value FROM jsonb_each(first) f WHERE NOT second ? f.key
    ) m); END
    $$""",
    """CREATE FUNCTION event_task_core(t task) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'created_by', t.created_by, 'project_id', t.project, 'parent_id', t.parent,
        'title', t.title, 'description', t.description, 'status', t.status, 'priority', t.priority,
        'due_at', event_time(t.due_at), 'completed_at', event_time(t.completed_at), 'position', t.position,
        'version', t.version, 'created_at', event_time(t.created_at), 'updated_at', event_time(t.updated_at))
    $$""",
    """CREATE FUNCTION event_task_sets(task_id integer) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
    BEGIN RETURN jsonb_build_object(
        'labels', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', l.id, 'name', l.name, 'color', l.color)
                                             ORDER BY l.name, l.id), '[]')
                   FROM task_label tl JOIN label l ON l.id = tl.label WHERE tl.task = task_id),
        'assignee_ids', to_jsonb(ARRAY(SELECT a.assignee FROM task_assignee a WHERE a.task = task_id
                                       ORDER BY a.assignee))); END
    $$""",
    """CREATE FUNCTION event_project_object(p project) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'name', p.name, 'description', p.description, 'color', p.color, 'archived', p.archived,
        'version', p.version, 'created_at', event_time(p.created_at), 'updated_at', event_time(p.updated_at))
    $$""",
    """CREATE FUNCTION event_label_object(l label) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', l.id, 'name', l.name, 'color', l.color, 'version', l.version,
        'created_at', event_time(l.created_at), 'updated_at', event_time(l.updated_at))
    $$""",
    """CREATE FUNCTION event_comment_object(c comment) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
    BEGIN RETURN jsonb_build_object(
        'id', c.id, 'task_id', c.task, 'body', c.body, 'version', c.version,
        'created_at', event_time(c.created_at), 'updated_at', event_time(c.updated_at),
        'author', (SELECT jsonb_build_object('id', u.id, 'display_name', u.display_name)
                   FROM app_user u WHERE u.id = c.owner)); END
    $$""",
    """CREATE FUNCTION event_member_object(m project_member) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
    BEGIN RETURN jsonb_build_object(
        'user', (SELECT jsonb_build_object('id', u.id, 'email', u.email, 'display_name', u.display_name)
                 FROM app_user u WHERE u.id = m.member),
        'role', m.role, 'joined_at', event_time(m.joined_at)); END
    $$""",
    # This transaction's event of an object, if it has one: its ids are a known range, and a
    # transaction that has written no event yet (taskapi.events) skips the search.
    f"""CREATE FUNCTION event_of_this_transaction(kind text, oid integer) RETURNS event
    LANGUAGE plpgsql STABLE AS $$
    DECLARE
        base bigint;
        hit event;
    BEGIN
        IF coalesce(current_setting('taskapi.events', true), '') IN ('', '0') THEN
            RETURN NULL;
        END IF;
        base := pg_current_xact_id()::text::bigint * {PER_TRANSACTION};
        SELECT * INTO hit FROM event
        WHERE object_type = kind AND object_id = oid AND id >= base AND id < base + {PER_TRANSACTION}
        ORDER BY id DESC LIMIT 1;
        RETURN hit;
    END $$""",
    # Records one change (op: created, updated or deleted; etype the event's type), folding it into
    # this transaction's event of the same object when there is one. left: the project a task
    # left (the first one, when it moves twice).
    """CREATE FUNCTION event_put(op text, etype text, kind text, oid integer, project integer, owner integer,
                                 obj jsonb, diff jsonb, actor integer, left_project integer DEFAULT NULL)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        prior event;
    BEGIN
        -- The transaction's first event (the usual case) needs no search.
        IF coalesce(current_setting('taskapi.events', true), '') NOT IN ('', '0') THEN
            prior := event_of_this_transaction(kind, oid);
        END IF;
        IF prior.id IS NOT NULL THEN
            IF op = 'deleted' AND prior.changes IS NULL AND prior.type <> etype THEN
                DELETE FROM event WHERE id = prior.id;  -- created and deleted in one transaction: nothing
            ELSIF op = 'deleted' THEN
                UPDATE event SET type = etype, object = obj, changes = NULL, project_id = project, owner_id = owner,
                                 moved_from = coalesce(prior.moved_from, left_project)
                WHERE id = prior.id;
            ELSIF prior.changes IS NULL THEN  -- created in this transaction: still a creation
                UPDATE event SET object = obj, project_id = project, owner_id = owner WHERE id = prior.id;
            ELSE
                UPDATE event SET object = obj, changes = event_merge(prior.changes, diff),
                                 project_id = project, owner_id = owner,
                                 moved_from = coalesce(prior.moved_from, left_project)
                WHERE id = prior.id;
            END IF;
            RETURN;
        END IF;
        INSERT INTO event (type, actor_id, project_id, owner_id, moved_from, object_type, object_id, object, changes)
        VALUES (etype, actor, project, owner, left_project, kind, oid, obj,
                CASE WHEN op = 'updated' THEN diff END);
    END $$""",
    """CREATE FUNCTION event_on_task() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        core jsonb;
        diff jsonb;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF (OLD.parent IS NOT NULL AND NOT EXISTS (SELECT 1 FROM task WHERE id = OLD.parent))
                OR (OLD.project IS NOT NULL AND NOT EXISTS (SELECT 1 FROM project WHERE id = OLD.project)) THEN
                RETURN NULL;  -- taken along by its parent's or project's delete, which has the event
            END IF;
            PERFORM event_put('deleted', 'task.deleted', 'task', OLD.id, OLD.project,
                              CASE WHEN OLD.project IS NULL THEN OLD.owner END,
                              jsonb_build_object('id', OLD.id), NULL, event_actor(NULL));
            RETURN NULL;
        END IF;
        core := event_task_core(NEW);
        IF TG_OP = 'UPDATE' THEN
            diff := event_diff(event_task_core(OLD), core);
            IF diff = '{}' AND OLD.version = NEW.version THEN
                RETURN NULL;
            END IF;
        END IF;
        PERFORM event_put(CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
                          CASE TG_OP WHEN 'INSERT' THEN 'task.created' ELSE 'task.updated' END,
                          'task', NEW.id, NEW.project, CASE WHEN NEW.project IS NULL THEN NEW.owner END,
                          core || event_task_sets(NEW.id), diff,
                          event_actor(CASE TG_OP WHEN 'INSERT' THEN NEW.created_by END),
                          CASE WHEN TG_OP = 'UPDATE' AND OLD.project IS DISTINCT FROM NEW.project THEN OLD.project END);
        RETURN NULL;
    END $$""",
    # A task's labels or assignees changed: its event of this transaction (the PATCH's UPDATE, or
    # the creation) takes the new sets; otherwise (an assignee removed with a member, a label
    # deleted) the task gets a task.updated of its own.
    """CREATE FUNCTION event_on_task_set() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        tid integer := CASE TG_OP WHEN 'DELETE' THEN OLD.task ELSE NEW.task END;
        t task;
        field text := CASE TG_TABLE_NAME WHEN 'task_label' THEN 'label_ids' ELSE 'assignee_ids' END;
        prior event;
        obj jsonb;
        now_ids jsonb;
        old_ids jsonb;
        diff jsonb;
        -- The label or assignee this row links (a column named per table, so read by name).
        linked integer := (to_jsonb(CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END)
                           ->> CASE TG_TABLE_NAME WHEN 'task_label' THEN 'label' ELSE 'assignee' END)::integer;
    BEGIN
        SELECT * INTO t FROM task WHERE id = tid;
        IF NOT FOUND THEN
            RETURN NULL;  -- the task is being deleted: its delete has the event
        END IF;
        obj := event_task_core(t) || event_task_sets(tid);
        now_ids := CASE field WHEN 'label_ids'
            THEN (SELECT coalesce(jsonb_agg(x -> 'id' ORDER BY (x ->> 'id')::integer), '[]')
                  FROM jsonb_array_elements(obj -> 'labels') x)
            ELSE obj -> 'assignee_ids' END;
        prior := event_of_this_transaction('task', tid);
        IF prior.id IS NOT NULL THEN
            IF prior.type = 'task.deleted' THEN
                RETURN NULL;
            ELSIF prior.changes IS NULL THEN
                UPDATE event SET object = obj WHERE id = prior.id AND object IS DISTINCT FROM obj;
                RETURN NULL;
            END IF;
            old_ids := coalesce(prior.changes -> field -> 0, CASE field WHEN 'label_ids'
                THEN (SELECT coalesce(jsonb_agg(x -> 'id' ORDER BY (x ->> 'id')::integer), '[]')
                      FROM jsonb_array_elements(prior.object -> 'labels') x)
                ELSE prior.object -> 'assignee_ids' END);
            diff := prior.changes - field;
            IF old_ids IS DISTINCT FROM now_ids THEN
                diff := diff || jsonb_build_object(field, jsonb_build_array(old_ids, now_ids));
            END IF;
            UPDATE event SET object = obj, changes = diff WHERE id = prior.id;
            RETURN NULL;
        END IF;
        -- The set before this row's change (statements without a prior UPDATE change one row per task).
        old_ids := (SELECT coalesce(jsonb_agg(v ORDER BY v::integer), '[]') FROM (
            SELECT v FROM jsonb_array_elements(now_ids) v
            WHERE TG_OP = 'DELETE' OR v::integer <> linked
            UNION ALL
            SELECT to_jsonb(linked) WHERE TG_OP = 'DELETE'
        ) s);
        IF old_ids IS DISTINCT FROM now_ids THEN
            PERFORM event_put('updated', 'task.updated', 'task', tid, t.project,
                              CASE WHEN t.project IS NULL THEN t.owner END, obj,
                              jsonb_build_object(field, jsonb_build_array(old_ids, now_ids)), event_actor(NULL));
        END IF;
        RETURN NULL;
    END $$""",
    # A project's delete is recorded BEFORE the row goes, while its members are still there:
    # they are the event's audience (afterwards nobody is a member, and the feed shows a
    # project's events to its members).
    f"""CREATE FUNCTION event_on_project_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM event_put('deleted', 'project.deleted', 'project', OLD.id, OLD.id, NULL,
                          jsonb_build_object('id', OLD.id), NULL, event_actor(OLD.owner));
        UPDATE event SET audience = ARRAY(SELECT m.member FROM project_member m WHERE m.project = OLD.id
                                          ORDER BY m.member)
        WHERE object_type = 'project' AND object_id = OLD.id AND type = 'project.deleted'
            AND id >= pg_current_xact_id()::text::bigint * {PER_TRANSACTION};
        RETURN OLD;
    END $$""",
    """CREATE FUNCTION event_on_project() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        obj jsonb;
        diff jsonb;
    BEGIN
        obj := event_project_object(NEW);
        IF TG_OP = 'UPDATE' THEN
            diff := event_diff(event_project_object(OLD), obj);
            IF diff = '{}' AND OLD.version = NEW.version THEN
                RETURN NULL;
            END IF;
        END IF;
        PERFORM event_put(CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
                          CASE TG_OP WHEN 'INSERT' THEN 'project.created' ELSE 'project.updated' END,
                          'project', NEW.id, NEW.id, NULL, obj, diff,
                          event_actor(CASE TG_OP WHEN 'INSERT' THEN NEW.owner END));
        RETURN NULL;
    END $$""",
    # Memberships: member.added (not for the owner a new project starts with), role_changed,
    # removed. A removed member's event is also theirs (owner_id), so their client learns of it.
    """CREATE FUNCTION event_on_member() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        created event;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            IF NOT EXISTS (SELECT 1 FROM project WHERE id = OLD.project) THEN
                RETURN NULL;  -- taken along by the project's delete
            END IF;
            PERFORM event_put('deleted', 'member.removed', 'member', OLD.id, OLD.project, OLD.member,
                              jsonb_build_object('user', jsonb_build_object('id', OLD.member)), NULL,
                              event_actor(OLD.member));
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            created := event_of_this_transaction('project', NEW.project);
            IF created.type = 'project.created' THEN
                RETURN NULL;
            END IF;
            PERFORM event_put('created', 'member.added', 'member', NEW.id, NEW.project, NULL,
                              event_member_object(NEW), NULL, event_actor(NEW.member));
            RETURN NULL;
        END IF;
        IF OLD.role IS DISTINCT FROM NEW.role THEN
            PERFORM event_put('updated', 'member.role_changed', 'member', NEW.id, NEW.project, NULL,
                              event_member_object(NEW),
                              jsonb_build_object('role', jsonb_build_array(OLD.role, NEW.role)), event_actor(NULL));
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION event_on_label() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        obj jsonb;
        diff jsonb;
    BEGIN
        IF TG_OP = 'DELETE' THEN
            -- Labels are written by their owner alone; the tasks it leaves get task.updated events.
            PERFORM set_config('taskapi.actor', OLD.owner::text, true);
            PERFORM event_put('deleted', 'label.deleted', 'label', OLD.id, NULL, OLD.owner,
                              jsonb_build_object('id', OLD.id), NULL, OLD.owner);
            RETURN NULL;
        END IF;
        obj := event_label_object(NEW);
        IF TG_OP = 'UPDATE' THEN
            diff := event_diff(event_label_object(OLD), obj);
            IF diff = '{}' AND OLD.version = NEW.version THEN
                RETURN NULL;
            END IF;
        END IF;
        PERFORM event_put(CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
                          CASE TG_OP WHEN 'INSERT' THEN 'label.created' ELSE 'label.updated' END,
                          'label', NEW.id, NULL, NEW.owner, obj, diff, NEW.owner);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION event_on_comment() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        c comment := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
        t record;
        obj jsonb;
        diff jsonb;
    BEGIN
        SELECT project, owner INTO t FROM task WHERE id = c.task;
        IF NOT FOUND THEN
            RETURN NULL;  -- taken along by its task's delete
        END IF;
        IF TG_OP = 'DELETE' THEN
            PERFORM event_put('deleted', 'comment.deleted', 'comment', OLD.id, t.project,
                              CASE WHEN t.project IS NULL THEN t.owner END,
                              jsonb_build_object('id', OLD.id), NULL, event_actor(OLD.owner));
            RETURN NULL;
        END IF;
        obj := event_comment_object(NEW);
        IF TG_OP = 'UPDATE' THEN
            diff := event_diff(event_comment_object(OLD), obj);
            IF diff = '{}' AND OLD.version = NEW.version THEN
                RETURN NULL;
            END IF;
        END IF;
        PERFORM event_put(CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'updated' END,
                          CASE TG_OP WHEN 'INSERT' THEN 'comment.created' ELSE 'comment.updated' END,
                          'comment', NEW.id, t.project, CASE WHEN t.project IS NULL THEN t.owner END,
                          obj, diff, event_actor(NEW.owner));
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER event_log AFTER INSERT OR UPDATE ON project FOR EACH ROW EXECUTE FUNCTION event_on_project()",
    "CREATE TRIGGER event_log_delete BEFORE DELETE ON project FOR EACH ROW EXECUTE FUNCTION event_on_project_delete()",
    "CREATE TRIGGER event_log AFTER INSERT OR UPDATE OR DELETE ON project_member"
    " FOR EACH ROW EXECUTE FUNCTION event_on_member()",
    "CREATE TRIGGER event_log AFTER INSERT OR UPDATE OR DELETE ON label FOR EACH ROW EXECUTE FUNCTION event_on_label()",
    "CREATE TRIGGER event_log AFTER INSERT OR UPDATE OR DELETE ON task FOR EACH ROW EXECUTE FUNCTION event_on_task()",
    "CREATE TRIGGER event_log AFTER INSERT OR DELETE ON task_label FOR EACH ROW EXECUTE FUNCTION event_on_task_set()",
    "CREATE TRIGGER event_log AFTER INSERT OR DELETE ON task_assignee"
    " FOR EACH ROW EXECUTE FUNCTION event_on_task_set()",
    "CREATE TRIGGER event_log AFTER INSERT OR UPDATE OR DELETE ON comment"
    " FOR EACH ROW EXECUTE FUNCTION event_on_comment()",
]

BACKWARDS = [
    *(
        f"DROP TRIGGER IF EXISTS event_log ON {table}"
        for table in ("comment", "task_assignee", "task_label", "task", "label", "project_member", "project")
    ),
    "DROP TRIGGER IF EXISTS event_log_delete ON project",
    *(
        f"DROP FUNCTION IF EXISTS {function}"
        for function in (
            "event_on_comment()",
            "event_on_label()",
            "event_on_member()",
            "event_on_project()",
            "event_on_project_delete()",
            "event_on_task_set()",
            "event_on_task()",
            "event_put(text, text, text, integer, integer, integer, jsonb, jsonb, integer, integer)",
            "event_of_this_transaction(text, integer)",
            "event_member_object(project_member)",
            "event_comment_object(comment)",
            "event_label_object(label)",
            "event_project_object(project)",
            "event_task_sets(integer)",
            "event_task_core(task)",
            "event_merge(jsonb, jsonb)",
            "event_diff(jsonb, jsonb)",
            "event_actor(integer)",
            "event_time(timestamptz)",
        )
    ),
    "ALTER TABLE event_retention DROP CONSTRAINT IF EXISTS event_retention_one_row",
    "DROP INDEX IF EXISTS event_audience",
    "DROP INDEX IF EXISTS event_moved_from",
    "DROP INDEX IF EXISTS event_object",
    "DROP INDEX IF EXISTS event_owner",
    "DROP INDEX IF EXISTS event_project",
    "ALTER TABLE event ALTER COLUMN txid DROP DEFAULT",
    "CREATE SEQUENCE IF NOT EXISTS event_id_seq OWNED BY event.id",
    "ALTER TABLE event ALTER COLUMN id SET DEFAULT nextval('event_id_seq')",
    "DROP FUNCTION IF EXISTS event_next_id()",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
