"""No Docker engine runs here: check the compose file's service graph and what it runs instead."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib

import pytest
import yaml

from app.cli import main
from tests.helpers import PROJECT_ROOT, TASKAPI, process_env

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_and_order():
    assert set(SERVICES) == {"db", "migrate", "api"}
    assert SERVICES["db"]["image"].startswith("postgres:")
    assert "healthcheck" in SERVICES["db"]
    assert SERVICES["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["api"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    # Published on the host's loopback only: a development stack is not a deployment.
    assert SERVICES["api"]["ports"] == ["127.0.0.1:8000:8000"]


def test_database_volume_is_named():
    volume, _, target = SERVICES["db"]["volumes"][0].partition(":")
    assert volume in COMPOSE["volumes"]
    assert target == "/var/lib/postgresql/data"


def test_app_services_point_at_the_db_service():
    for name in ("migrate", "api"):
        assert "@db:5432/" in SERVICES[name]["environment"]["DATABASE_URL"]


@pytest.mark.parametrize("service", ["migrate", "api"])
def test_commands_exist_in_the_project(service, capsys):
    command = SERVICES[service]["command"]
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts
    # The arguments parse with the real CLI (--help exits before doing anything).
    with pytest.raises(SystemExit) as exited:
        main([*command[1:2], "--help"])
    assert exited.value.code == 0
    usage = capsys.readouterr().out
    for option in (arg for arg in command[2:] if arg.startswith("--")):
        assert option in usage


def test_dockerfile_copies_what_exists_and_runs_the_cli():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (PROJECT_ROOT / source).exists(), source
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert cmd is not None
    assert cmd.group(1).startswith('["taskapi", "serve"')


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR:?error} for one value (enough for this file)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name}: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


@pytest.mark.parametrize("service", ["migrate", "api"])
def test_the_stack_refuses_to_start_without_a_secret(service):
    value = SERVICES[service]["environment"]["TASKAPI_SECRET_KEY"]
    with pytest.raises(ValueError, match="TASKAPI_SECRET_KEY"):
        _interpolate(value, {})
    secret = "s" * 48
    assert _interpolate(value, {"TASKAPI_SECRET_KEY": secret}) == secret


def test_the_image_refuses_to_serve_without_a_secret(tmp_path):
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.MULTILINE)
    assert cmd is not None
    command = json.loads(cmd.group(1))
    assert "0.0.0.0" in command  # reachable from outside the container, so it needs the secret
    result = subprocess.run(
        [*TASKAPI, *command[1:]],
        cwd=PROJECT_ROOT,
        env=process_env(
            TASKAPI_ENV="development",
            TASKAPI_SECRET_KEY=None,
            TASKAPI_DATA_DIR=str(tmp_path / "pgdata"),
            DATABASE_URL="postgresql://127.0.0.1:1/unused",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "TASKAPI_SECRET_KEY" in result.stderr
