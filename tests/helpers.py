"""Helpers for tests that run taskapi as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TASKAPI = [sys.executable, "-m", "app.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(**overrides: str | None) -> dict[str, str]:
    """The test process's environment with overrides; a None value removes the variable."""
    env = dict(os.environ)
    env.setdefault("TASKAPI_ENV", "test")
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def wait_until_ready(base_url: str, timeout: float = 60.0, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(base_url + path, timeout=2.0)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{base_url}{path} not ready after {timeout}s (last: {last!r})")


@contextmanager
def running_server(
    env: dict[str, str], *args: str, timeout: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``taskapi serve`` on a free port until the block ends; yields (base URL, process)."""
    port = free_port()
    process = subprocess.Popen(
        [*TASKAPI, "serve", "--port", str(port), *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ready(base, timeout)
        except AssertionError:
            process.terminate()
            output = process.communicate(timeout=10)[0]
            raise AssertionError(f"server did not start:\n{output}") from None
        yield base, process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


async def documented_fields(client: httpx.AsyncClient, path: str) -> set[str]:
    """The fields the app's OpenAPI document gives the 200 answer of ``GET path`` (a template path).

    Shape tests check SPEC's fields are present and the rest are documented, so a field added to
    a table changes no test.
    """
    doc = (await client.get("/schema/openapi.json")).json()
    content = doc["paths"][path]["get"]["responses"]["200"]["content"]
    schema = next(iter(content.values()))["schema"]
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].removeprefix("#/components/schemas/")]
    return set(schema["properties"])
