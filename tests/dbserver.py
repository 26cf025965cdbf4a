"""Which PostgreSQL the tests use, in this order:

1. ``TEST_DATABASE_URL``: a server where the suite may create and drop its own database;
2. testcontainers' PostgreSQL, when a Docker engine answers;
3. the embedded server (the same wheel ``taskapi serve`` uses), in a temporary directory.

Each run creates a fresh database with a unique name and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` on the same server."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@contextmanager
def server_url() -> Iterator[tuple[str, str]]:
    """Yield (admin URL of a server, where it came from)."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url, "TEST_DATABASE_URL"
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:17", driver=None) as container:
            yield container.get_connection_url(), "testcontainers"
        return
    from app.embedded import embedded_server_dsn, stop_embedded_server

    data_dir = Path(tempfile.mkdtemp(prefix="taskapi-test-pg-")) / "pgdata"
    try:
        yield embedded_server_dsn(data_dir, database="postgres"), "embedded"
    finally:
        stop_embedded_server(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create a uniquely named database on the server; drop it afterwards."""
    import asyncio

    import asyncpg

    name = f"taskapi_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
