"""The `taskapi` command and settings safety."""

from __future__ import annotations

import subprocess

import pytest

from app.settings import Settings, SettingsError
from tests.helpers import PROJECT_ROOT, TASKAPI, process_env


def test_production_refuses_to_start_without_a_secret():
    result = subprocess.run(
        [*TASKAPI, "serve", "--no-migrate"],
        cwd=PROJECT_ROOT,
        env=process_env(TASKAPI_ENV="production", TASKAPI_SECRET_KEY=None),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "TASKAPI_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(env="production", database_url="postgresql://x/y"), "TASKAPI_SECRET_KEY"),
        (Settings(env="production", secret_key="short", database_url="postgresql://x/y"), "32 characters"),
        (Settings(env="production", secret_key="s" * 40), "DATABASE_URL"),
        (Settings(env="staging"), "TASKAPI_ENV"),
        (Settings(pool_min_size=5, pool_max_size=2), "DB_POOL_MIN_SIZE"),
    ],
)
def test_unsafe_settings_are_refused(settings, message):
    with pytest.raises(SettingsError, match=message):
        settings.validate()


def test_production_with_safe_settings_validates():
    Settings(env="production", secret_key="s" * 40, database_url="postgresql://db/taskapi").validate()


def test_create_app_refuses_unsafe_production_settings():
    from app.asgi import create_app

    with pytest.raises(SettingsError):
        create_app(Settings(env="production", database_url="postgresql://db/taskapi"))


def test_help_lists_the_commands():
    result = subprocess.run(
        [*TASKAPI, "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "serve" in result.stdout
    assert "migrate" in result.stdout


@pytest.mark.slow
def test_serve_no_migrate_starts_with_the_database_down_and_serves_once_it_is_back():
    """503s with Retry-After while the database is down at start; 2xx once it is up, same process."""
    import shutil
    import tempfile
    import time
    from pathlib import Path

    import httpx

    from tests.serverproc import run_migrate, server_env, start_embedded, start_server, stop_embedded

    data_dir = Path(tempfile.mkdtemp(prefix="taskapi-down-at-start-")) / "pgdata"
    server = None
    try:
        env = server_env(start_embedded(data_dir))
        run_migrate(env)
        stop_embedded(data_dir)

        server = start_server(env)  # serve --no-migrate, the database stopped
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health is None:
            assert server.process.poll() is None, f"taskapi exited:\n{server.output()}"
            try:
                health = httpx.get(server.base_url + "/health", timeout=2.0)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert health is not None, server.output()
        assert health.status_code == 200
        credentials = {"email": "late@example.com", "password": "pw-12345678"}
        for method, path, body in (("GET", "/ready", None), ("POST", "/api/v1/auth/register", credentials)):
            started = time.monotonic()
            response = httpx.request(method, server.base_url + path, json=body, timeout=15.0)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            assert time.monotonic() - started < 5.0
        pid = server.process.pid

        start_embedded(data_dir)
        server.wait_healthy(timeout=30)  # /ready turns 200 by itself
        register = httpx.post(server.base_url + "/api/v1/auth/register", json=credentials, timeout=15.0)
        assert register.status_code == 201, register.text
        token = httpx.post(server.base_url + "/api/v1/auth/token", json=credentials, timeout=15.0)
        assert token.status_code == 200
        assert server.process.pid == pid
        assert server.process.poll() is None
        assert "database not answering at start" in server.output()
    finally:
        if server is not None:
            server.stop()
        stop_embedded(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.mark.slow
def test_stop_db_stops_the_embedded_postgresql(tmp_path):
    """The embedded server outlives taskapi (the next start reuses it); `taskapi stop-db` ends it."""
    from tests.serverproc import start_embedded, stop_embedded

    data_dir = tmp_path / "pgdata"
    start_embedded(data_dir)
    try:
        assert (data_dir / "postmaster.pid").exists()
        env = process_env(DATABASE_URL=None, TASKAPI_DATA_DIR=str(data_dir))
        result = subprocess.run(
            [*TASKAPI, "stop-db"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "stopped" in result.stdout
        assert not (data_dir / "postmaster.pid").exists()
        with_url = subprocess.run(
            [*TASKAPI, "stop-db"],
            cwd=PROJECT_ROOT,
            env=process_env(DATABASE_URL="postgresql://db/x"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert with_url.returncode == 2
        assert "DATABASE_URL" in with_url.stderr
    finally:
        stop_embedded(data_dir)
