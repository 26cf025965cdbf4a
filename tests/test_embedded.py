"""Smoke test: with no DATABASE_URL, `taskapi serve` boots the embedded PostgreSQL for real."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from app.embedded import stop_embedded_server
from tests.helpers import process_env, running_server


@pytest.mark.slow
def test_serve_on_the_embedded_default_answers_and_keeps_data():
    data_dir = Path(tempfile.mkdtemp(prefix="taskapi-embedded-")) / "pgdata"
    env = process_env(DATABASE_URL=None, TASKAPI_DATA_DIR=str(data_dir))
    try:
        with running_server(env) as (base, _process):
            assert httpx.get(f"{base}/ready").status_code == 200
            body = {"email": "embedded@example.com", "password": "long-enough-pw"}
            assert httpx.post(f"{base}/api/v1/auth/register", json=body).status_code == 201
        assert (data_dir / "PG_VERSION").read_text().strip() == "18"
        # A second start reuses the same data directory: the user is still there.
        with running_server(env) as (base, _process):
            token = httpx.post(f"{base}/api/v1/auth/token", json=body)
            assert token.status_code == 200
    finally:
        stop_embedded_server(data_dir)
        shutil.rmtree(data_dir.parent, ignore_errors=True)
