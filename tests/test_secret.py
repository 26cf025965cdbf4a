"""No built-in secret can sign a token (SPEC "Limits and protection").

- every string constant in the app's source, used as an HS256 key, signs a token the app refuses;
- without TASKAPI_SECRET_KEY, development and test generate a secret once, mode 0600, beside
  the data directory, the same for processes that start together, and tokens survive a restart
  of a real ``taskapi serve``;
- production without a secret, and a generated secret on a non-loopback --host, refuse to start.
"""

from __future__ import annotations

import ast
import datetime as dt
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import jwt
import pytest

from app.settings import SettingsError, generated_secret, get_settings, secret_file
from tests.conftest import DATABASE_URL
from tests.helpers import PROJECT_ROOT, TASKAPI, process_env
from tests.serverproc import server_env, start_server

ME = "/api/v1/users/me"


def _source_constants() -> set[str]:
    """Every str and bytes literal in app/ and piccolo_conf.py (docstrings and f-string parts too)."""
    constants: set[str] = set()
    for path in [*sorted((PROJECT_ROOT / "app").rglob("*.py")), PROJECT_ROOT / "piccolo_conf.py"]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                value = node.value
                constants.add(value.decode(errors="replace") if isinstance(value, bytes) else value)
    return constants


def _token(secret: str | bytes, user_id: int) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {"sub": str(user_id), "gen": 0, "iat": now, "exp": now + dt.timedelta(minutes=5)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about short HMAC keys: these are forgeries
        return jwt.encode(claims, secret, algorithm="HS256")


async def test_no_constant_in_the_source_signs_a_token(client, alice):
    constants = _source_constants()
    assert len(constants) > 200  # the scan found the source
    # The control: the app's real secret does sign a token it accepts.
    assert (
        await client.get(ME, headers={"Authorization": f"Bearer {_token(get_settings().secret_key, alice.id)}"})
    ).status_code == 200
    accepted = []
    for constant in sorted(constants - {""}):  # an empty key cannot sign (and settings refuse it)
        response = await client.get(ME, headers={"Authorization": f"Bearer {_token(constant, alice.id)}"})
        if response.status_code != 401:
            accepted.append((constant[:60], response.status_code))
    assert accepted == []


def test_the_generated_secret_is_private_and_beside_the_data(tmp_path):
    data_dir = tmp_path / "data" / "pgdata"
    path = secret_file(data_dir)
    assert path == tmp_path / "data" / "secret_key"
    secret = generated_secret(path)
    assert len(secret) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generated_secret(path) == secret  # kept, not regenerated
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_secret_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "secret_key"
    generated_secret(path)
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        generated_secret(path)


_PRINT_SECRET = """
import sys
from pathlib import Path
from app.settings import generated_secret
print(generated_secret(Path(sys.argv[1])))
"""


def test_processes_starting_together_agree_on_one_secret(tmp_path):
    path = tmp_path / "secret_key"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PRINT_SECRET, str(path)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    secrets_seen = {out.strip() for out, _ in outputs}
    assert len(secrets_seen) == 1
    assert secrets_seen == {path.read_text().strip()}


@pytest.mark.slow
def test_tokens_survive_a_restart_of_taskapi_serve(tmp_path):
    data_dir = tmp_path / "pgdata"
    env = server_env(DATABASE_URL, TASKAPI_ENV="development", TASKAPI_DATA_DIR=str(data_dir))
    env.pop("TASKAPI_SECRET_KEY", None)
    credentials = {"email": "restart@example.com", "password": "correct-horse-battery"}

    server = start_server(env)
    try:
        server.wait_healthy()
        assert httpx.post(f"{server.base_url}/api/v1/auth/register", json=credentials).status_code == 201
        token = httpx.post(f"{server.base_url}/api/v1/auth/token", json=credentials).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(server.base_url + ME, headers=headers).status_code == 200
    finally:
        assert server.stop() == 0

    path = secret_file(data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # A different secret than the test process's own: it belongs to that data directory.
    assert path.read_text().strip() != get_settings().secret_key

    server = start_server(env)
    try:
        server.wait_healthy()
        assert httpx.get(server.base_url + ME, headers=headers).status_code == 200
    finally:
        server.stop()


def _serve(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TASKAPI, "serve", "--no-migrate", *args],
        cwd=PROJECT_ROOT,
        env=process_env(DATABASE_URL="postgresql://127.0.0.1:1/unused", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_without_a_secret_refuses_to_start():
    result = _serve(TASKAPI_ENV="production", TASKAPI_SECRET_KEY=None)
    assert result.returncode == 2
    assert "TASKAPI_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "api.example.com"])
def test_a_generated_secret_is_refused_beyond_loopback(tmp_path, host):
    result = _serve(
        "--host", host, TASKAPI_ENV="development", TASKAPI_SECRET_KEY=None, TASKAPI_DATA_DIR=str(tmp_path / "pg")
    )
    assert result.returncode == 2
    assert "TASKAPI_SECRET_KEY" in result.stderr
    assert f"--host {host}" in result.stderr
    assert not Path(tmp_path / "pg").exists()  # refused before anything started
