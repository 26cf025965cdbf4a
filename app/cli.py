"""The ``taskapi`` command: ``serve`` and ``migrate``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from types import FrameType
from typing import Any

from app.settings import PROJECT_ROOT, SettingsError, check_listen_address, get_settings

MIGRATION_LOCK_KEY = 0x7A5C_A91  # pg_advisory_lock key shared by every taskapi instance


def _prepare_piccolo() -> None:
    # Piccolo finds its configuration by module name; make the project's importable from anywhere.
    os.environ.setdefault("PICCOLO_CONF", "piccolo_conf")
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))


async def migrate() -> bool:
    """Apply pending migrations under a PostgreSQL advisory lock. Returns True on success.

    Two instances starting together both call this; the second waits for the first, then finds
    nothing left to do. Everything runs on DATABASE_DIRECT_URL: a transaction pooler would drop
    the session's lock between statements.
    """
    _prepare_piccolo()
    import asyncpg

    from app.db import engine_config

    settings = get_settings()
    config = engine_config(settings, direct=True)
    connection = await asyncpg.connect(dsn=config["dsn"], timeout=config["timeout"])
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            # Before the engine exists: creating it opens a first session (Piccolo's version
            # check), through PgBouncer too, and a server session keeps the defaults it began with.
            await apply_database_settings(connection)
            return await _run_migrations(config)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await connection.close()


async def _run_migrations(direct_config: dict[str, Any]) -> bool:
    from piccolo.apps.migrations.commands.forwards import run_forwards

    from app.db import get_engine

    engine = get_engine()
    pooled_config = engine.config
    # Piccolo runs migrations through the app's engine: point it at the direct server meanwhile.
    engine.config = direct_config
    try:
        result = await run_forwards(app_name="all", migration_id="all")
    finally:
        engine.config = pooled_config
    return bool(result.success)


# Read-your-writes for replica reads (app/db.py ReadRouting): each user's last write position,
# read and written on the primary only. UNLOGGED: no WAL per write; emptied by a crash, and a
# user without a row then reads from a replica only once it has replayed the primary's present.
READ_POSITION_DDL = """
CREATE UNLOGGED TABLE IF NOT EXISTS taskapi_read_position (
    user_id integer PRIMARY KEY,
    lsn pg_lsn NOT NULL
)
"""


async def apply_database_settings(connection: Any) -> None:
    """What taskapi keeps in the database outside the migrations, applied on every migrate.

    Behind a transaction pooler the server-side timeouts cannot be connection options, so they
    become the database's defaults (new server sessions pick them up).
    """
    from app.db import server_timeouts

    settings = get_settings()
    await connection.execute(READ_POSITION_DDL)
    if settings.database_pooler == "none":
        return
    for name, value in server_timeouts(settings).items():
        # ALTER DATABASE takes no parameters; format() quotes the name and the value.
        sql = await connection.fetchval(
            "SELECT format('ALTER DATABASE %I SET %s = %L', current_database(), $1::text, $2::text)", name, value
        )
        await connection.execute(sql)


def _database_label() -> str:
    settings = get_settings()
    if settings.database_url:
        return "DATABASE_URL"
    return f"embedded PostgreSQL in {settings.data_dir}"


def _stop_embedded() -> int:
    settings = get_settings()
    if settings.database_url:
        print("taskapi: DATABASE_URL is set, so there is no embedded PostgreSQL to stop", file=sys.stderr)
        return 2
    from app.embedded import stop_embedded_server

    stop_embedded_server(settings.data_dir)
    if (settings.data_dir / "postmaster.pid").exists():
        print(f"taskapi: the embedded PostgreSQL in {settings.data_dir} is still running", file=sys.stderr)
        return 1
    print(f"taskapi: the embedded PostgreSQL in {settings.data_dir} is stopped", flush=True)
    return 0


def _exit_0_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskapi", description="taskapi task management API")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="apply pending migrations, then serve the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations first")
    commands.add_parser("migrate", help="apply pending migrations and exit")
    commands.add_parser("stop-db", help="stop the embedded PostgreSQL (it keeps running after taskapi exits)")
    commands.add_parser("worker", help="deliver webhooks (serve does too, unless TASKAPI_WEBHOOK_WORKER=false)")
    args = parser.parse_args(argv)
    if args.command == "stop-db":
        return _stop_embedded()

    try:
        settings = get_settings()
        settings.validate()
        if args.command == "serve":
            check_listen_address(settings, args.host)
    except SettingsError as exc:
        print(f"taskapi: {exc}", file=sys.stderr)
        return 2

    if args.command == "worker":
        from app.webhooks_worker import run_worker

        return run_worker(settings)
    if args.command == "migrate" or not args.no_migrate:
        print(f"taskapi: applying migrations ({_database_label()})", flush=True)
        if not asyncio.run(migrate()):
            print("taskapi: migrations failed", file=sys.stderr)
            return 1
    if args.command == "migrate":
        return 0

    import uvicorn

    base = f"http://{args.host}:{args.port}"
    print(f"taskapi: API at {base}/api/v1, docs at {base}/schema, OpenAPI at {base}/schema/openapi.json", flush=True)
    print(f"taskapi: database: {_database_label()}", flush=True)
    # uvicorn drains in-flight requests and runs the lifespan shutdown on SIGTERM, then re-raises
    # the signal under the handler it found. With the default handler the process would die by
    # the signal (status 143) after a clean shutdown; this one makes it a plain exit 0.
    signal.signal(signal.SIGTERM, _exit_0_on_sigterm)
    uvicorn.run(
        "app.asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        proxy_headers=True,
        log_level=settings.log_level.lower(),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
