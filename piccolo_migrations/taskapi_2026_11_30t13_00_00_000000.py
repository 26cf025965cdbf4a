"""Shared projects' rules (the previous migration created the tables): roles, owners, creators.

- ``project_member``: every existing project gets its owner as its ``owner`` member. Exactly
  one owner per project, the one ``project.owner`` names: a partial unique index (at most one)
  and a deferred constraint trigger (that one, at commit, so a transfer can swap roles).
- ``invitation`` and ``project_member`` roles and statuses; ``task.created_by`` (existing tasks:
  their owner).
- A project's tasks and comments may now be written by any member with the role: the composite
  foreign keys that tied a task's project and parent, and a comment's task, to one owner go.
  Instead a subtask lives in its parent's project (``(parent, project)`` references ``(id,
  project)``, deferrable so a move can change a task and its subtasks in one transaction);
  existing subtasks take their top-level task's project.
- Indexes for membership lookups and for lists by project.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import ForeignKey

from app.migration_sql import add_sql

ID = "2026-11-30T13:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "shared projects"

ROLES = "'viewer', 'commenter', 'editor', 'admin', 'owner'"
CASCADE = "ON DELETE CASCADE ON UPDATE CASCADE"

FORWARDS = [
    # members
    f"ALTER TABLE project_member ADD CONSTRAINT project_member_role_valid CHECK (role IN ({ROLES}))",
    "CREATE UNIQUE INDEX project_member_one_owner ON project_member (project) WHERE role = 'owner'",
    "CREATE INDEX project_member_member ON project_member (member, project)",
    "INSERT INTO project_member (project, member, role, joined_at) SELECT id, owner, 'owner', created_at FROM project",
    """CREATE FUNCTION project_has_its_owner() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        pid integer;
    BEGIN
        IF TG_TABLE_NAME = 'project' THEN
            pid := NEW.id;
        ELSIF TG_OP = 'DELETE' THEN
            pid := OLD.project;
        ELSE
            pid := NEW.project;
        END IF;
        IF EXISTS (SELECT 1 FROM project p WHERE p.id = pid) AND NOT EXISTS (
            SELECT 1 FROM project p JOIN project_member m
                ON m.project = p.id AND m.member = p.owner AND m.role = 'owner'
            WHERE p.id = pid
        ) THEN
            RAISE EXCEPTION 'project % must have exactly one owner member, its project.owner', pid
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'project_has_its_owner';
        END IF;
        RETURN NULL;
    END $$""",
    "CREATE CONSTRAINT TRIGGER project_member_has_owner AFTER INSERT OR UPDATE OR DELETE ON project_member"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION project_has_its_owner()",
    "CREATE CONSTRAINT TRIGGER project_has_owner_member AFTER INSERT OR UPDATE OF owner ON project"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION project_has_its_owner()",
    # invitations
    f"ALTER TABLE invitation ADD CONSTRAINT invitation_role_valid CHECK (role IN ({ROLES}))",
    "ALTER TABLE invitation ADD CONSTRAINT invitation_status_valid"
    " CHECK (status IN ('pending', 'accepted', 'declined', 'withdrawn'))",
    "ALTER TABLE invitation ADD CONSTRAINT invitation_not_owner CHECK (role <> 'owner')",
    "CREATE INDEX invitation_email ON invitation (email, status)",
    "CREATE INDEX invitation_project ON invitation (project, created_at, id)",
    # task creators and assignees
    # NOT NULL once filled: the alter_column below, which runs after these statements.
    "UPDATE task SET created_by = owner",
    "CREATE INDEX task_assignee_assignee ON task_assignee (assignee, task)",
    # writes by members: no more single-owner ties
    "ALTER TABLE task DROP CONSTRAINT task_project_same_owner",
    "ALTER TABLE task DROP CONSTRAINT task_parent_same_owner",
    "ALTER TABLE comment DROP CONSTRAINT comment_task_same_owner",
    # a subtask lives in its parent's project
    """WITH RECURSIVE tree(id, root_project) AS (
        SELECT id, project FROM task WHERE parent IS NULL
        UNION ALL SELECT t.id, tree.root_project FROM task t JOIN tree ON t.parent = tree.id
    ) UPDATE task SET project = tree.root_project FROM tree
    WHERE task.id = tree.id AND task.project IS DISTINCT FROM tree.root_project""",
    "ALTER TABLE task ADD CONSTRAINT task_id_project_unique UNIQUE (id, project)",
    "ALTER TABLE task ADD CONSTRAINT task_parent_same_project FOREIGN KEY (parent, project)"
    " REFERENCES task (id, project) ON DELETE CASCADE DEFERRABLE INITIALLY IMMEDIATE",
    # lists by project, in every sort order (the owner-keyed ones serve the inbox)
    "CREATE INDEX task_project_created ON task (project, created_at, id)",
    "CREATE INDEX task_project_updated ON task (project, updated_at, id)",
    "CREATE INDEX task_project_due ON task (project, (due_at IS NULL), due_at, id)",
    "CREATE INDEX task_project_due_desc ON task (project, (due_at IS NULL), due_at DESC, id DESC)",
    "CREATE INDEX task_project_priority ON task (project, priority, id)",
    "CREATE INDEX task_project_position ON task (project, position, id)",
    "CREATE INDEX task_project_title ON task (project, title, id)",
    "DROP INDEX task_project",
    "DROP INDEX task_owner_project_created",
    "CREATE INDEX task_project_id ON task (project, id)",
]

BACKWARDS = [
    "DROP INDEX IF EXISTS task_project_id",
    "CREATE INDEX IF NOT EXISTS task_owner_project_created ON task (owner, project, created_at, id)",
    "CREATE INDEX IF NOT EXISTS task_project ON task (project)",
    "DROP INDEX IF EXISTS task_project_title",
    "DROP INDEX IF EXISTS task_project_position",
    "DROP INDEX IF EXISTS task_project_priority",
    "DROP INDEX IF EXISTS task_project_due_desc",
    "DROP INDEX IF EXISTS task_project_due",
    "DROP INDEX IF EXISTS task_project_updated",
    "DROP INDEX IF EXISTS task_project_created",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_parent_same_project",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_id_project_unique",
    # Rows written by members other than the owner cannot go back under the single-owner keys.
    "DELETE FROM comment c USING task t WHERE c.task = t.id AND c.owner <> t.owner",
    "DELETE FROM task t USING project p WHERE t.project = p.id AND t.owner <> p.owner",
    "ALTER TABLE comment ADD CONSTRAINT comment_task_same_owner FOREIGN KEY (task, owner)"
    " REFERENCES task (id, owner) ON DELETE CASCADE",
    "ALTER TABLE task ADD CONSTRAINT task_parent_same_owner FOREIGN KEY (parent, owner)"
    " REFERENCES task (id, owner) ON DELETE CASCADE",
    "ALTER TABLE task ADD CONSTRAINT task_project_same_owner FOREIGN KEY (project, owner)"
    " REFERENCES project (id, owner) ON DELETE CASCADE",
    "DROP INDEX IF EXISTS task_assignee_assignee",
    "DROP INDEX IF EXISTS invitation_project",
    "DROP INDEX IF EXISTS invitation_email",
    "ALTER TABLE invitation DROP CONSTRAINT IF EXISTS invitation_not_owner",
    "ALTER TABLE invitation DROP CONSTRAINT IF EXISTS invitation_status_valid",
    "ALTER TABLE invitation DROP CONSTRAINT IF EXISTS invitation_role_valid",
    "DROP TRIGGER IF EXISTS project_has_owner_member ON project",
    "DROP TRIGGER IF EXISTS project_member_has_owner ON project_member",
    "DROP FUNCTION IF EXISTS project_has_its_owner()",
    "DROP INDEX IF EXISTS project_member_member",
    "DROP INDEX IF EXISTS project_member_one_owner",
    "ALTER TABLE project_member DROP CONSTRAINT IF EXISTS project_member_role_valid",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    add_sql(manager, FORWARDS, BACKWARDS)
    manager.alter_column(
        table_class_name="Task",
        tablename="task",
        column_name="created_by",
        db_column_name="created_by",
        params={"null": False},
        old_params={"null": True},
        column_class=ForeignKey,
        old_column_class=ForeignKey,
        schema=None,
    )
    return manager
