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
