"""Real PgBouncer and PostgreSQL processes for the scale-out tests (pooler, replica, instances).

Debian's pgbouncer and PostgreSQL binaries refuse to run as root, so they run as the ``postgres``
user, in temporary directories owned by it, on free ports. Every process started here is stopped
by its own pid and every directory removed when its context manager exits.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.serverproc import ServerProcess, free_port, run_migrate, server_env, start_server

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
RUN_AS = "postgres"


def require_binaries(*paths: str | Path) -> None:
    """Fail (never skip) with what to install when a server binary is missing."""
    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: install Debian's pgbouncer and postgresql packages "
            "(.ci/run does), and run the tests where a 'postgres' user exists"
        )
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        pytest.fail(f"no {RUN_AS!r} user to run PostgreSQL and PgBouncer as (they refuse root)")


def _as_postgres() -> dict[str, object]:
    """Popen arguments that run a child as the postgres user (when we are root)."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _private_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"server exited early:\n{log.read_text(errors='replace') if log.exists() else ''}"
        )
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} after {timeout}s")


@dataclass
class PgBouncer:
    port: int
    directory: Path

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def pgbouncer(server_url: str, *, pool_size: int = 4) -> Iterator[PgBouncer]:
    """Debian's PgBouncer in transaction mode in front of ``server_url``'s server (any database).

    A small server pool, so many client connections share few server connections: that is what
    breaks named prepared statements and session state.
    """
    require_binaries(PGBOUNCER)
    parts = urlsplit(server_url)
    directory = _private_dir("taskapi-pgbouncer-")
    port = free_port()
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
* = host={parts.hostname or "127.0.0.1"} port={parts.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 2000
server_reset_query =
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""
    )
    (directory / "userlist.txt").write_text(f'"{parts.username or "postgres"}" ""\n')
    for path in directory.iterdir():
        if os.geteuid() == 0:
            shutil.chown(path, RUN_AS, RUN_AS)
    process = subprocess.Popen(  # type: ignore[call-overload]
        [PGBOUNCER, str(ini)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **_as_postgres(),
    )
    try:
        _wait_port(port, process, directory / "pgbouncer.log")
        yield PgBouncer(port, directory)
    finally:
        _stop(process, signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Cluster:
    """A private PostgreSQL server (a primary or a streaming replica)."""

    port: int
    data: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        _stop(self.process)  # SIGINT: fast shutdown


def _run(args: list[str], timeout: float = 120) -> None:
    result = subprocess.run(  # type: ignore[call-overload]
        args, capture_output=True, text=True, timeout=timeout, check=False, **_as_postgres()
    )
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}{result.stderr}"


def _start_postgres(data: Path, sockets: Path) -> Cluster:
    port = free_port()
    log = data.parent / f"{data.name}.log"
    log_file = open(log, "wb")  # noqa: SIM115 - closed below; the server keeps its own descriptor
    process = subprocess.Popen(  # type: ignore[call-overload]
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        **_as_postgres(),
    )
    log_file.close()
    try:
        _wait_port(port, process, log)
        # The port opens before the server accepts sessions ("the database system is starting up").
        deadline = time.monotonic() + 30
        ready = [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        while subprocess.run(ready, check=False).returncode:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
    except BaseException:
        _stop(process)
        raise
    return Cluster(port, data, process)


@contextlib.contextmanager
def primary_and_replica() -> Iterator[tuple[Cluster, Cluster]]:
    """A private primary (wal_level replica) and a streaming replica of it (pg_basebackup -R)."""
    require_binaries(PG_BIN / "initdb", PG_BIN / "postgres", PG_BIN / "pg_basebackup", PG_BIN / "pg_isready")
    directory = _private_dir("taskapi-replication-")
    clusters: list[Cluster] = []
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(directory / "primary"), "-A", "trust", "-U", "postgres", "--no-sync"])
        primary = _start_postgres(directory / "primary", directory)
        clusters.append(primary)
        _run(
            [
                str(PG_BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "postgres",
                "-D",
                str(directory / "replica"),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]
        )
        replica = _start_postgres(directory / "replica", directory)
        clusters.append(replica)
        yield primary, replica
    finally:
        for cluster in reversed(clusters):
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def wait_until_replayed(primary_url: str, replica_url: str) -> None:
    """Wait (up to 30 s) until the replica has replayed everything the primary has written so far."""
    import asyncio

    primary = await asyncpg.connect(primary_url)
    replica = await asyncpg.connect(replica_url)
    try:
        target = await primary.fetchval("SELECT pg_current_wal_lsn()")
        for _ in range(600):
            if (await replica.fetchval("SELECT pg_last_wal_replay_lsn()")) >= target:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the replica does not catch up")
    finally:
        await primary.close()
        await replica.close()


@contextlib.asynccontextmanager
async def database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A fresh database on ``admin_url``'s server (dropped after); yields its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.asynccontextmanager
async def servers(env: dict[str, str], count: int = 1) -> AsyncIterator[list[ServerProcess]]:
    """Migrate once with ``env`` (as a deployment's migrate job), then ``count`` healthy
    ``taskapi serve`` processes with it; all stopped after."""
    import asyncio

    await asyncio.to_thread(run_migrate, env)
    started: list[ServerProcess] = []
    try:
        for _ in range(count):
            started.append(start_server(env))
        for server in started:
            await asyncio.to_thread(server.wait_healthy)
        yield started
    finally:
        for server in started:
            server.stop()


def deployment_env(database_url: str, **overrides: str) -> dict[str, str]:
    """A ``taskapi`` process environment for one deployment (test mode, no rate limits)."""
    return server_env(
        database_url,
        TASKAPI_RATE_LIMIT_USER="off",
        TASKAPI_RATE_LIMIT_PUBLIC="off",
        **overrides,
    )


# --- the API workload ------------------------------------------------------------------------


@dataclass
class User:
    email: str
    headers: dict[str, str]


async def _post(http: object, url: str, body: object, headers: dict[str, str], status: int, tries: int) -> object:
    """POST until it answers ``status`` (at most ``tries`` times: >1 only where failures are expected)."""
    import httpx

    assert isinstance(http, httpx.AsyncClient)
    for _ in range(tries):
        response = await http.post(url, json=body, headers=headers)
        if response.status_code == status:
            return response.json()
    raise AssertionError(f"POST {url}: {response.status_code} {response.text}")


async def register(http: object, base_url: str, email: str, *, tries: int = 1) -> User:
    """Register ``email`` through ``base_url`` and log in."""
    body = {"email": email, "password": "correct-horse-battery"}
    await _post(http, f"{base_url}/api/v1/auth/register", body, {}, 201, tries)
    token = await _post(http, f"{base_url}/api/v1/auth/token", body, {}, 200, tries)
    assert isinstance(token, dict)
    return User(email, {"Authorization": f"Bearer {token['access_token']}"})


def client(concurrency: int) -> object:
    """An HTTP client that really opens ``concurrency`` connections at once."""
    import httpx

    # Idle connections are dropped after 1 s, before uvicorn closes them (5 s): a request sent on a
    # connection the server is closing at that moment fails with a ReadError that says nothing.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=1.0)
    return httpx.AsyncClient(timeout=120.0, limits=limits)


async def mixed_burst(
    http: object, bases: list[str], users: list[User], count: int, *, tries: int = 1
) -> list[tuple[str, int, str]]:
    """``count`` requests at once, spread over ``bases`` and ``users``: creates (with labels),
    lists, single reads and patches. Returns (what, status, body) for each."""
    import asyncio

    import httpx

    assert isinstance(http, httpx.AsyncClient)
    seeds: dict[str, tuple[int, int]] = {}
    for user in users:  # one label and one task each, for the reads and patches to aim at
        label = await _post(http, f"{bases[0]}/api/v1/labels", {"name": "seed"}, user.headers, 201, tries)
        task = await _post(http, f"{bases[0]}/api/v1/tasks", {"title": "seed"}, user.headers, 201, tries)
        assert isinstance(label, dict) and isinstance(task, dict)
        seeds[user.email] = (label["id"], task["id"])

    async def one(i: int) -> tuple[str, int, str]:
        base = bases[i % len(bases)]
        user = users[i % len(users)]
        label_id, task_id = seeds[user.email]
        kind = ("create", "list", "get", "patch")[i % 4]
        # A connection reset before any answer is retried, as a careful client does (the create
        # with an Idempotency-Key, so a retry never makes a second task); answers are never retried.
        for attempt in range(3):
            try:
                if kind == "create":
                    body = {"title": f"task {i}", "priority": i % 5, "label_ids": [label_id]}
                    headers = {**user.headers, "Idempotency-Key": f"burst-{i}"}
                    response = await http.post(f"{base}/api/v1/tasks", json=body, headers=headers)
                elif kind == "list":
                    response = await http.get(f"{base}/api/v1/tasks?limit=10&sort=-priority", headers=user.headers)
                elif kind == "get":
                    response = await http.get(f"{base}/api/v1/tasks/{task_id}", headers=user.headers)
                else:
                    url = f"{base}/api/v1/tasks/{task_id}"
                    response = await http.patch(url, json={"position": i}, headers=user.headers)
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError):
                if attempt == 2:
                    raise
                continue
            return kind, response.status_code, response.text
        raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


OK = {"create": 201, "list": 200, "get": 200, "patch": 200}


def failures(results: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [result for result in results if result[1] != OK[result[0]]]
