"""SQL steps for the migrations in piccolo_migrations/: what Piccolo cannot declare on a Table
(rules, triggers, partial indexes, table settings)."""

from __future__ import annotations

from collections.abc import Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder


def add_sql(manager: MigrationManager, forwards: Sequence[str], backwards: Sequence[str]) -> MigrationManager:
    """Run ``forwards`` with the migration (``backwards`` when it is undone), in order, on the
    migration's own transaction (MigrationManager.run opens it): a failing statement undoes them all."""

    async def run(statements: Sequence[str]) -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in statements:
            await engine.run_ddl(statement)

    async def run_forwards() -> None:
        await run(forwards)

    async def run_backwards() -> None:
        await run(backwards)

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
