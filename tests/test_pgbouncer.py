"""PgBouncer (Debian's 1.18, transaction mode) as a supported deployment.

The API runs as a real ``taskapi serve`` process behind a real PgBouncer whose few server
connections are shared by many client connections; migrations go to PostgreSQL directly
(DATABASE_DIRECT_URL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg
import pytest

from app.db import TaskapiEngine, engine_config, make_engine
from app.settings import get_settings
from tests.dbserver import with_database
from tests.scaleout import (
    client,
    database,
    deployment_env,
    failures,
    mixed_burst,
    pgbouncer,
    register,
    servers,
)
from tests.serverproc import run_migrate

CONCURRENT = 600


def pooled_env(bouncer_url: str, direct_url: str, **overrides: str) -> dict[str, str]:
    return deployment_env(
        bouncer_url,
        DATABASE_DIRECT_URL=direct_url,
        DATABASE_POOLER="pgbouncer",
        # More client connections than PgBouncer has server connections, and generous waits: this
        # measures correctness under concurrency, not latency on a 2-core machine.
        DB_POOL_MAX_SIZE="20",
        DB_ACQUIRE_TIMEOUT="60",
        DB_REQUEST_TIMEOUT="90",
        **overrides,
    )


async def burst_through_pgbouncer(
    admin_url: str, tries: int = 1, **overrides: str
) -> tuple[list[tuple[str, int, str]], str]:
    """600 concurrent API requests through one ``taskapi serve`` behind PgBouncer (set-up
    requests retried up to ``tries`` times, for a configuration expected to fail)."""
    with pgbouncer(admin_url) as bouncer:
        async with database(admin_url, "taskapi_pgb") as name:
            env = pooled_env(bouncer.url(name), with_database(admin_url, name), **overrides)
            async with servers(env) as (server,), client(CONCURRENT) as http:
                users = [await register(http, server.base_url, f"u{i}@example.com", tries=tries) for i in range(3)]
                results = await mixed_burst(http, [server.base_url], users, CONCURRENT, tries=tries)
                # Every create landed exactly once.
                listed = await http.get(f"{server.base_url}/api/v1/tasks?limit=1", headers=users[0].headers)
                output = server.output()
    created = sum(1 for kind, status, _ in results if kind == "create" and status == 201)
    if listed.status_code == 200 and created == CONCURRENT // 4:
        assert listed.json()["total"] == 1 + created // 3, listed.text
    return results, output


async def test_600_concurrent_requests_through_pgbouncer(admin_url):
    results, output = await burst_through_pgbouncer(admin_url)
    assert len(results) == CONCURRENT
    assert failures(results) == [], output[-3000:]
    assert "does not exist" not in output


async def test_named_prepared_statements_break_behind_pgbouncer_1_18(admin_url):
    # The same burst with asyncpg's statement cache on: what DATABASE_POOLER=pgbouncer turns off.
    results, output = await burst_through_pgbouncer(admin_url, tries=20, DB_PREPARED_STATEMENTS="on")
    print(f"with named prepared statements: {len(failures(results))} of {CONCURRENT} requests failed")
    assert len(failures(results)) > 0
    assert 'prepared statement "__asyncpg_stmt_' in output


async def test_server_side_timeouts_hold_through_pgbouncer(admin_url):
    """`taskapi migrate` makes the timeouts database defaults; a pooled session runs under them."""
    with pgbouncer(admin_url) as bouncer:
        async with database(admin_url, "taskapi_pgb") as name:
            direct = with_database(admin_url, name)
            env = pooled_env(bouncer.url(name), direct, DB_STATEMENT_TIMEOUT_MS="500")
            await asyncio.to_thread(run_migrate, env)
            settings = dataclasses.replace(
                get_settings(),
                database_url=bouncer.url(name),
                database_direct_url=direct,
                database_pooler="pgbouncer",
                db_prepared_statements=False,
                db_statement_timeout_ms=500,
            )
            # As DATABASE_URL without the setting: PgBouncer refuses the timeouts as startup options.
            unpooled = engine_config(dataclasses.replace(settings, database_pooler="none"))
            with pytest.raises(asyncpg.ProtocolViolationError, match="unsupported startup parameter"):
                await asyncpg.connect(**unpooled)

            engine = make_engine(settings)
            assert isinstance(engine, TaskapiEngine)
            await engine.start_connection_pool(min_size=0, max_size=4)
            try:

                async def show(connection: asyncpg.Connection) -> list[str]:
                    return [
                        await connection.fetchval(sql)
                        for sql in (
                            "SHOW statement_timeout",
                            "SHOW idle_in_transaction_session_timeout",
                            "SHOW timezone",
                            "SELECT current_setting('application_name')",
                        )
                    ]

                assert await engine.run(show) == ["500ms", "30s", "UTC", "taskapi"]
                # The server cancels a long statement (a client-side command_timeout would be a
                # TimeoutError after 1.5 s), on its own and inside a transaction.
                started = time.monotonic()
                with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
                    await engine.fetch("SELECT pg_sleep(5)")
                assert time.monotonic() - started < 1.4
                with pytest.raises(asyncpg.QueryCanceledError, match="statement timeout"):
                    async with engine.transaction():
                        await engine.fetch("SELECT 1")
                        await engine.fetch("SELECT pg_sleep(5)")
                # The pooled connections are still good afterwards.
                assert (await engine.fetch("SELECT 41 + 1 AS n"))[0]["n"] == 42
            finally:
                await engine.close_connection_pool()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_POOLER": "pgpool"}, "DATABASE_POOLER must be none or pgbouncer"),
        ({"DB_PREPARED_STATEMENTS": "maybe"}, "DB_PREPARED_STATEMENTS must be on or off"),
    ],
)
def test_pooler_settings_are_checked(monkeypatch, env, message):
    from app.settings import SettingsError, load_settings

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=message):
        load_settings().validate()


def test_prepared_statements_default_by_pooler(monkeypatch):
    from app.settings import load_settings

    monkeypatch.setenv("DATABASE_POOLER", "pgbouncer")
    assert load_settings().db_prepared_statements is False
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "on")  # PgBouncer >= 1.21 with max_prepared_statements
    assert load_settings().db_prepared_statements is True
    monkeypatch.delenv("DATABASE_POOLER")
    monkeypatch.delenv("DB_PREPARED_STATEMENTS")
    assert load_settings().db_prepared_statements is True
