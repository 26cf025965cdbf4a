"""Database wiring: the engine's connection settings, the pool's life, and outage detection."""

from __future__ import annotations

from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from app.settings import Settings, get_settings


def resolve_dsn(settings: Settings) -> str:
    """DATABASE_URL if set, else the embedded server's DSN (starting it if needed)."""
    if settings.database_url:
        return settings.database_url
    from app.embedded import embedded_server_dsn

    return embedded_server_dsn(settings.data_dir)


def engine_config(settings: Settings | None = None) -> dict[str, Any]:
    """asyncpg connection arguments for the one PostgresEngine (see piccolo_conf.py)."""
    settings = settings or get_settings()
    return {
        "dsn": resolve_dsn(settings),
        # Fail fast when the server is unreachable instead of hanging the request.
        "timeout": settings.db_connect_timeout,
        "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
        "server_settings": {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "idle_in_transaction_session_timeout": "30000",
            "application_name": "taskapi",
            "timezone": "UTC",
        },
    }


def get_engine() -> PostgresEngine:
    """The engine all tables use (from piccolo_conf.py)."""
    from app.tables import Task

    engine = Task._meta.db
    assert isinstance(engine, PostgresEngine)
    return engine


async def start_pool(settings: Settings) -> None:
    """Open the pool with explicit sizes; Piccolo would otherwise connect per query."""
    await get_engine().start_connection_pool(
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        max_inactive_connection_lifetime=60.0,
    )


async def close_pool() -> None:
    """Close the pool if it is open."""
    engine = get_engine()
    if engine.pool is not None:
        await engine.close_connection_pool()


def pool_started() -> bool:
    return get_engine().pool is not None


# Errors that mean "the database is not answering", as opposed to a bad query or bad data.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.QueryCanceledError,
)
