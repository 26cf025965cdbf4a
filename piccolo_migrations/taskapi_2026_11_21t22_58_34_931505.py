"""Rules the database must hold that Piccolo keeps in Python only, and the list indexes.

- CHECK constraints: enum values, ranges, patterns, non-empty names, no self-parent, and
  ``completed_at`` set exactly when a task is done.
- Composite foreign keys so a task's project / parent and a comment's task always belong to the
  same owner, whatever the application does.
- Case-insensitive uniqueness of label names per owner.
- Owner-scoped btree indexes that serve the list filters, every allowed sort and keyset cursors.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from app.migration_sql import add_sql

ID = "2026-11-21T22:58:34:931505"
VERSION = "1.38.0"
DESCRIPTION = "constraints and indexes"

FORWARDS = [
    # users
    "ALTER TABLE app_user ADD CONSTRAINT app_user_email_lower CHECK (email = lower(email))",
    # projects
    "ALTER TABLE project ADD CONSTRAINT project_name_not_empty CHECK (char_length(name) >= 1)",
    "ALTER TABLE project ADD CONSTRAINT project_color_hex CHECK (color ~ '^#[0-9a-fA-F]{6}$')",
    "ALTER TABLE project ADD CONSTRAINT project_version_positive CHECK (version >= 1)",
    "ALTER TABLE project ADD CONSTRAINT project_id_owner_unique UNIQUE (id, owner)",
    "CREATE INDEX project_owner_created ON project (owner, created_at, id)",
    # labels
    "ALTER TABLE label ADD CONSTRAINT label_name_not_empty CHECK (char_length(name) >= 1)",
    "ALTER TABLE label ADD CONSTRAINT label_color_hex CHECK (color ~ '^#[0-9a-fA-F]{6}$')",
    "ALTER TABLE label ADD CONSTRAINT label_version_positive CHECK (version >= 1)",
    "CREATE UNIQUE INDEX label_owner_name_ci ON label (owner, lower(name))",
    # tasks
    "ALTER TABLE task ADD CONSTRAINT task_title_not_empty CHECK (char_length(title) >= 1)",
    "ALTER TABLE task ADD CONSTRAINT task_status_valid CHECK (status IN ('todo', 'in_progress', 'done'))",
    "ALTER TABLE task ADD CONSTRAINT task_priority_range CHECK (priority BETWEEN 0 AND 4)",
    "ALTER TABLE task ADD CONSTRAINT task_not_own_parent CHECK (parent IS NULL OR parent <> id)",
    "ALTER TABLE task ADD CONSTRAINT task_completed_iff_done"
    " CHECK ((status = 'done') = (completed_at IS NOT NULL))",
    "ALTER TABLE task ADD CONSTRAINT task_version_positive CHECK (version >= 1)",
    "ALTER TABLE task ADD CONSTRAINT task_id_owner_unique UNIQUE (id, owner)",
    "ALTER TABLE task ADD CONSTRAINT task_project_same_owner FOREIGN KEY (project, owner)"
    " REFERENCES project (id, owner) ON DELETE CASCADE",
    "ALTER TABLE task ADD CONSTRAINT task_parent_same_owner FOREIGN KEY (parent, owner)"
    " REFERENCES task (id, owner) ON DELETE CASCADE",
    "CREATE INDEX task_owner_created ON task (owner, created_at, id)",
    "CREATE INDEX task_owner_updated ON task (owner, updated_at, id)",
    # due_at sorts NULLs last both ways: ORDER BY (due_at IS NULL), due_at [DESC], id [DESC].
    "CREATE INDEX task_owner_due ON task (owner, (due_at IS NULL), due_at, id)",
    "CREATE INDEX task_owner_due_desc ON task (owner, (due_at IS NULL), due_at DESC, id DESC)",
    "CREATE INDEX task_owner_priority ON task (owner, priority, id)",
    "CREATE INDEX task_owner_position ON task (owner, position, id)",
    "CREATE INDEX task_owner_title ON task (owner, title, id)",
    "CREATE INDEX task_owner_id ON task (owner, id)",
    "CREATE INDEX task_owner_project_created ON task (owner, project, created_at, id)",
    "CREATE INDEX task_owner_status_created ON task (owner, status, created_at, id)",
    "CREATE INDEX task_parent ON task (parent)",
    "CREATE INDEX task_project ON task (project)",
    # task labels
    "CREATE INDEX task_label_label ON task_label (label, task)",
    # comments
    "ALTER TABLE comment ADD CONSTRAINT comment_body_not_empty CHECK (char_length(body) >= 1)",
    "ALTER TABLE comment ADD CONSTRAINT comment_version_positive CHECK (version >= 1)",
    "ALTER TABLE comment ADD CONSTRAINT comment_task_same_owner FOREIGN KEY (task, owner)"
    " REFERENCES task (id, owner) ON DELETE CASCADE",
    "CREATE INDEX comment_task_created ON comment (task, created_at, id)",
    "CREATE INDEX comment_owner ON comment (owner)",
]

BACKWARDS = [
    "DROP INDEX IF EXISTS comment_owner",
    "DROP INDEX IF EXISTS comment_task_created",
    "ALTER TABLE comment DROP CONSTRAINT IF EXISTS comment_task_same_owner",
    "ALTER TABLE comment DROP CONSTRAINT IF EXISTS comment_version_positive",
    "ALTER TABLE comment DROP CONSTRAINT IF EXISTS comment_body_not_empty",
    "DROP INDEX IF EXISTS task_label_label",
    "DROP INDEX IF EXISTS task_project",
    "DROP INDEX IF EXISTS task_parent",
    "DROP INDEX IF EXISTS task_owner_status_created",
    "DROP INDEX IF EXISTS task_owner_project_created",
    "DROP INDEX IF EXISTS task_owner_id",
    "DROP INDEX IF EXISTS task_owner_title",
    "DROP INDEX IF EXISTS task_owner_position",
    "DROP INDEX IF EXISTS task_owner_priority",
    "DROP INDEX IF EXISTS task_owner_due_desc",
    "DROP INDEX IF EXISTS task_owner_due",
    "DROP INDEX IF EXISTS task_owner_updated",
    "DROP INDEX IF EXISTS task_owner_created",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_parent_same_owner",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_project_same_owner",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_id_owner_unique",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_version_positive",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_completed_iff_done",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_not_own_parent",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_priority_range",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_status_valid",
    "ALTER TABLE task DROP CONSTRAINT IF EXISTS task_title_not_empty",
    "DROP INDEX IF EXISTS label_owner_name_ci",
    "ALTER TABLE label DROP CONSTRAINT IF EXISTS label_version_positive",
    "ALTER TABLE label DROP CONSTRAINT IF EXISTS label_color_hex",
    "ALTER TABLE label DROP CONSTRAINT IF EXISTS label_name_not_empty",
    "DROP INDEX IF EXISTS project_owner_created",
    "ALTER TABLE project DROP CONSTRAINT IF EXISTS project_id_owner_unique",
    "ALTER TABLE project DROP CONSTRAINT IF EXISTS project_version_positive",
    "ALTER TABLE project DROP CONSTRAINT IF EXISTS project_color_hex",
    "ALTER TABLE project DROP CONSTRAINT IF EXISTS project_name_not_empty",
    "ALTER TABLE app_user DROP CONSTRAINT IF EXISTS app_user_email_lower",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)
    return add_sql(manager, FORWARDS, BACKWARDS)
