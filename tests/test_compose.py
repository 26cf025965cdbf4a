"""No Docker engine runs here: check the compose file's service graph and what it runs instead."""

from __future__ import annotations

import re
import shlex
import tomllib

import pytest
import yaml

from app.cli import main
from tests.helpers import PROJECT_ROOT

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_services_and_order():
    assert set(SERVICES) == {"db", "migrate", "api"}
    assert SERVICES["db"]["image"].startswith("postgres:")
    assert "healthcheck" in SERVICES["db"]
    assert SERVICES["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["api"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert SERVICES["api"]["ports"] == ["8000:8000"]


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
