"""Test harness: a real PostgreSQL, the real app over httpx's ASGITransport, and helpers.

The database server is chosen by tests/dbserver.py. DATABASE_URL points at a fresh database
before any app module is imported (piccolo_conf reads it once), migrations are applied with the
same code ``taskapi migrate`` runs, and every table is truncated after each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.dbserver import fresh_database, server_url

_stack = ExitStack()
_ADMIN_URL, SERVER_SOURCE = _stack.enter_context(server_url())
DATABASE_URL = _stack.enter_context(fresh_database(_ADMIN_URL))
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["TASKAPI_ENV"] = "test"
os.environ.setdefault("PICCOLO_CONF", "piccolo_conf")
# One process serves every API test, and user ids restart at 1 after each test's truncation, so
# the limiter's in-process leases would count one "user 1" across tests. tests/api/test_limits.py
# and tests/test_rate_limit_processes.py set the limits they test.
os.environ.setdefault("TASKAPI_RATE_LIMIT_USER", "1000000000/60")
os.environ.setdefault("TASKAPI_RATE_LIMIT_PUBLIC", "1000000000/60")


def pytest_report_header(config: pytest.Config) -> str:
    return f"taskapi tests: PostgreSQL from {SERVER_SOURCE}"


def pytest_unconfigure(config: pytest.Config) -> None:
    _stack.close()


@pytest.fixture(scope="session")
def admin_url() -> str:
    """A server URL where tests may create extra databases (migration tests)."""
    return _ADMIN_URL


@pytest.fixture(scope="session", autouse=True)
async def database() -> AsyncIterator[None]:
    """Migrate the fresh database once and keep the app's pool open for the session."""
    from app.cli import migrate
    from app.db import close_pool, start_pool
    from app.settings import get_settings

    assert await migrate()
    await start_pool(get_settings())
    yield
    await close_pool()


@pytest.fixture(autouse=True)
async def _truncate(database: None) -> AsyncIterator[None]:
    yield
    from app.db import get_engine
    from app.tables import ALL_TABLES

    tables = ", ".join(table._meta.tablename for table in ALL_TABLES)
    await get_engine().run_ddl(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def app() -> Any:
    from app.asgi import create_app

    return create_app()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class ApiUser:
    """A registered user and the headers that authenticate them."""

    id: int
    email: str
    password: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def register(client: httpx.AsyncClient) -> Any:
    """``await register("a@example.com")`` -> ApiUser with a bearer token."""
    counter = iter(range(1, 10_000))

    async def _register(email: str | None = None, password: str = "correct-horse-battery") -> ApiUser:
        email = email or f"user{next(counter)}@example.com"
        response = await client.post("/api/v1/auth/register", json={"email": email, "password": password})
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
        token_response = await client.post("/api/v1/auth/token", json={"email": email, "password": password})
        assert token_response.status_code == 200, token_response.text
        token = token_response.json()["access_token"]
        return ApiUser(user_id, email, password, token, {"Authorization": f"Bearer {token}"})

    return _register


@pytest.fixture
async def alice(register: Any) -> ApiUser:
    return await register("alice@example.com")


@pytest.fixture
async def bob(register: Any) -> ApiUser:
    return await register("bob@example.com")


async def count_rows(table: str) -> int:
    """How many rows a table holds (for "nothing was written" assertions)."""
    from app.db import get_engine

    rows = await get_engine().run_querystring(
        __import__("piccolo.querystring").querystring.QueryString(f"SELECT count(*) AS n FROM {table}")
    )
    return int(rows[0]["n"])


@pytest.fixture
def query_counter() -> Iterator[Any]:
    """Counts the SQL statements the app sends while the ``counting`` context is active."""
    import asyncpg

    from app.tables import RateLimit

    # Every statement the app sends, Piccolo's queries included, is a Connection.fetch.
    original = asyncpg.Connection.fetch
    counts = {"n": 0, "active": False}

    async def counting_fetch(connection: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        # The rate limiter's lease (one statement per many requests) is no request's own cost.
        if counts["active"] and RateLimit._meta.tablename not in query:
            counts["n"] += 1
        return await original(connection, query, *args, **kwargs)

    asyncpg.Connection.fetch = counting_fetch  # type: ignore[method-assign]
    yield counts
    asyncpg.Connection.fetch = original  # type: ignore[method-assign]
