"""Migrations: they build an empty database, and the tables have no drift from them."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg

from app.piccolo_app import APP_CONFIG
from tests.dbserver import fresh_database
from tests.helpers import PROJECT_ROOT, TASKAPI, process_env

EXPECTED_TABLES = {"app_user", "project", "label", "task", "task_label", "comment", "idempotency_key"}


async def test_no_drift_between_tables_and_migrations():
    from piccolo.apps.migrations.commands.new import AutoMigrationManager

    statements = await AutoMigrationManager(auto_input="y").get_alter_statements(app_config=APP_CONFIG)
    pending = [s for group in statements for s in group.statements]
    assert pending == [], f"tables changed without a migration: {pending}"


def test_piccolo_forwards_builds_an_empty_database(admin_url):
    with fresh_database(admin_url) as url:
        result = subprocess.run(
            ["piccolo", "migrations", "forwards", "all"],
            cwd=PROJECT_ROOT,
            env=process_env(DATABASE_URL=url),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

        async def inspect() -> tuple[set[str], set[str], list[asyncpg.Record]]:
            connection = await asyncpg.connect(url)
            try:
                tables = {
                    r["tablename"]
                    for r in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                }
                checks = {
                    r["conname"]
                    for r in await connection.fetch(
                        "SELECT conname FROM pg_constraint WHERE contype IN ('c', 'f', 'u')"
                    )
                }
                task_fks = await connection.fetch(
                    "SELECT conname, confdeltype FROM pg_constraint WHERE conrelid = 'task'::regclass AND contype = 'f'"
                )
            finally:
                await connection.close()
            return tables, checks, task_fks

        tables, checks, task_fks = asyncio.run(inspect())
    assert tables >= EXPECTED_TABLES
    assert {
        "task_status_valid",
        "task_priority_range",
        "task_not_own_parent",
        "task_completed_iff_done",
        "unique_task_label",
        "project_color_hex",
        "task_project_same_owner",
    } <= checks
    # Every foreign key of a task cascades on delete ('c').
    assert {r["confdeltype"] for r in task_fks} == {b"c"}


def test_two_migrators_starting_together_do_not_race(admin_url):
    """Two `taskapi migrate` processes at once: both succeed, the schema is applied once."""
    with fresh_database(admin_url) as url:
        env = process_env(DATABASE_URL=url)
        procs = [
            subprocess.Popen(
                [*TASKAPI, "migrate"],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs

        async def applied() -> int:
            connection = await asyncpg.connect(url)
            try:
                return int(await connection.fetchval("SELECT count(*) FROM migration"))
            finally:
                await connection.close()

        # Each migration applied exactly once, however many there are.
        assert asyncio.run(applied()) == len(list((PROJECT_ROOT / "piccolo_migrations").glob("taskapi_*.py")))
