"""Migrations: they build an empty database, the tables have no drift from them, a failing
migration leaves nothing half applied, and the CHECK constraints the columns imply exist."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import asyncpg

from app.piccolo_app import APP_CONFIG
from app.tables import ALL_TABLES, check_constraints
from tests.dbserver import fresh_database
from tests.helpers import PROJECT_ROOT, TASKAPI, process_env

EXPECTED_TABLES = {table._meta.tablename for table in ALL_TABLES}


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
    # The tables' declared constraints, and the task rules no column states (the column-derived
    # CHECKs are compared by definition below).
    declared = {c._meta.name for table in ALL_TABLES for c in table._meta.constraints}
    assert declared | {"task_not_own_parent", "task_completed_iff_done"} <= checks
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


# --------------------------------------------------------------------------------------------
# A failing migration leaves nothing half applied


# An email stored before normalisation (NFD): the email migration rewrites it.
UNNORMALISED_EMAIL = "cafe\u0301@example.com"


async def _schema_and_data(connection: asyncpg.Connection) -> dict[str, Any]:
    """What a migration can change: relations, columns, constraints, extensions, stored emails."""
    snapshot: dict[str, Any] = {}
    queries = {
        "relations": "SELECT relname, relkind, relpersistence FROM pg_class"
        " WHERE relnamespace = 'public'::regnamespace ORDER BY 1",
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
    }
    for name, sql in queries.items():
        snapshot[name] = [list(r) for r in await connection.fetch(sql)]
    if await connection.fetchval("SELECT to_regclass('app_user') IS NOT NULL"):
        snapshot["emails"] = [r[0] for r in await connection.fetch("SELECT email FROM app_user ORDER BY id")]
    return snapshot


async def fail_each_raw_migration(url: str) -> list[str]:
    """On the empty database ``url`` (the engine's, from DATABASE_URL), apply the migrations one
    by one; before applying each that has raw steps, run it once with a failing raw step appended
    and check that the database is exactly as before. Returns the ids of the migrations so checked.

    Runs in a child process: piccolo_conf binds the engine to DATABASE_URL at import.
    """
    from piccolo.apps.migrations.commands.base import BaseMigrationManager
    from piccolo.apps.migrations.commands.forwards import run_forwards
    from piccolo.engine.finder import engine_finder

    engine = engine_finder()
    assert engine is not None
    modules = BaseMigrationManager().get_migration_modules(APP_CONFIG.resolved_migrations_folder_path)
    connection = await asyncpg.connect(url)
    checked: list[str] = []
    try:
        for migration_id in sorted(modules):
            manager = await modules[migration_id].forwards()
            if manager.raw:
                before = await _schema_and_data(connection)

                async def failing_step() -> None:
                    await engine.run_ddl("ALTER TABLE no_such_table ADD COLUMN x integer")

                manager.add_raw(failing_step)
                try:
                    await manager.run()
                except asyncpg.UndefinedTableError:
                    pass
                else:
                    raise AssertionError(f"{migration_id}: the failing step did not fail")
                after = await _schema_and_data(connection)
                assert after == before, f"{migration_id} left changes behind: {_differences(before, after)}"
                checked.append(migration_id)
            result = await run_forwards(app_name=APP_CONFIG.app_name, migration_id=migration_id)
            assert result.success, result.message
            if await connection.fetchval("SELECT to_regclass('app_user') IS NOT NULL AND NOT EXISTS (TABLE app_user)"):
                await connection.execute(
                    "INSERT INTO app_user (email, password_hash) VALUES ($1, 'x')", UNNORMALISED_EMAIL
                )
    finally:
        await connection.close()
    return checked


def _differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {
            "added": [r for r in after.get(key, []) if r not in before.get(key, [])],
            "removed": [r for r in before.get(key, []) if r not in after.get(key, [])],
        }
        for key in before.keys() | after.keys()
        if before.get(key) != after.get(key)
    }


def test_a_failing_migration_leaves_nothing_half_applied(admin_url):
    """Each migration's raw steps run in its transaction: a failure at the end undoes them all."""
    code = (
        "import asyncio, json, os\n"
        "from tests.test_migrations import fail_each_raw_migration\n"
        "checked = asyncio.run(fail_each_raw_migration(os.environ['DATABASE_URL']))\n"
        "print('CHECKED ' + json.dumps(checked))\n"
    )
    with fresh_database(admin_url) as url:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=PROJECT_ROOT,
            env=process_env(DATABASE_URL=url, PICCOLO_CONF="piccolo_conf"),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checked = json.loads(result.stdout.rsplit("CHECKED ", 1)[1])
    with_raw_steps = [
        path.stem
        for path in sorted((PROJECT_ROOT / "piccolo_migrations").glob("taskapi_*.py"))
        if any(step in path.read_text() for step in ("add_raw(", "add_sql("))
    ]
    # Every migration with raw steps was checked (ids and file names differ only in punctuation).
    assert len(checked) == len(with_raw_steps) >= 1, (checked, with_raw_steps)


# --------------------------------------------------------------------------------------------
# The CHECK constraints the columns imply exist in the database


async def _missing_checks(connection: asyncpg.Connection) -> dict[str, list[str]]:
    """For each table, the derived checks (app.tables.check_constraints) that the database lacks.

    PostgreSQL normalises both sides: each derived check is added to a scratch copy of the table
    and its ``pg_get_constraintdef`` compared with those of the real table's CHECK constraints
    (names may differ). Runs in the caller's transaction, which must be rolled back.
    """
    missing: dict[str, list[str]] = {}
    for table in ALL_TABLES:
        name = table._meta.tablename
        derived = check_constraints(table)
        if not derived:
            continue
        scratch = f"derived_{name}"
        await connection.execute(f"CREATE TEMP TABLE {scratch} (LIKE {name})")
        for i, sql in enumerate(derived.values()):
            await connection.execute(f"ALTER TABLE {scratch} ADD CONSTRAINT c{i} CHECK ({sql})")
        definitions = (
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE conrelid = $1::regclass AND contype = 'c'"
        )
        wanted = {r["def"]: r["conname"] for r in await connection.fetch(definitions, scratch)}
        present = {r["def"] for r in await connection.fetch(definitions, name)}
        await connection.execute(f"DROP TABLE {scratch}")
        absent = sorted(list(derived)[int(conname[1:])] for d, conname in wanted.items() if d not in present)
        if absent:
            missing[name] = absent
    return missing


async def test_every_derived_check_constraint_is_in_the_database():
    connection = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            assert await _missing_checks(connection) == {}
            # The comparison sees a missing check: without the migration's title rule, it is reported.
            await connection.execute("ALTER TABLE task DROP CONSTRAINT task_title_not_empty")
            assert await _missing_checks(connection) == {"task": ["task_title_not_empty"]}
        finally:
            await transaction.rollback()
    finally:
        await connection.close()
