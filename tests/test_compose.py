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


DEFAULT = {"db", "migrate", "api"}
SCALE = {"db-replica", "pgbouncer", "migrate-scale", "api-a", "api-b", "proxy"}
APP_SERVICES = ["migrate", "api", "migrate-scale", "api-a", "api-b"]


def test_services_and_order():
    assert set(SERVICES) == DEFAULT | SCALE
    # `docker compose up` starts the default stack only; `--profile scale up` adds the rest.
    assert all("profiles" not in SERVICES[name] for name in DEFAULT)
    assert all(SERVICES[name]["profiles"] == ["scale"] for name in SCALE)
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


@pytest.mark.parametrize("service", APP_SERVICES)
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


@pytest.mark.parametrize("service", APP_SERVICES)
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


# --- profile "scale": PgBouncer, a streaming replica, two instances behind a proxy ------------


def _host_port(url: str) -> str:
    return url.rpartition("@")[2].partition("/")[0]


def test_scaled_instances_go_through_pgbouncer_and_read_from_the_replica():
    pgbouncer = SERVICES["pgbouncer"]["environment"]
    assert pgbouncer["POOL_MODE"] == "transaction" and pgbouncer["DB_HOST"] == "db"
    for name in ("migrate-scale", "api-a", "api-b"):
        env = SERVICES[name]["environment"]
        assert _host_port(env["DATABASE_URL"]) == "pgbouncer:5432"
        assert _host_port(env["DATABASE_DIRECT_URL"]) == "db:5432"  # migrations and their lock
        assert _host_port(env["DATABASE_REPLICA_URLS"]) == "db-replica:5432"
        assert env["DATABASE_POOLER"] == "pgbouncer"
    for name in ("api-a", "api-b"):
        service = SERVICES[name]
        assert "ports" not in service  # reached through the proxy only
        assert service["depends_on"]["migrate-scale"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["db-replica"] == {"condition": "service_healthy"}
        assert service["command"] == SERVICES["api"]["command"]
    assert SERVICES["migrate-scale"]["depends_on"]["db"] == {"condition": "service_healthy"}


def test_the_scaled_settings_are_valid_and_send_no_startup_timeouts(monkeypatch):
    from app.db import engine_config
    from app.settings import load_settings

    env = {
        key: _interpolate(value, {"TASKAPI_SECRET_KEY": "s" * 48})
        for key, value in SERVICES["api-a"]["environment"].items()
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    settings.validate()
    assert settings.database_pooler == "pgbouncer" and not settings.db_prepared_statements
    assert settings.database_replica_urls == (env["DATABASE_REPLICA_URLS"],)
    config = engine_config(settings)
    # PgBouncer refuses these as startup parameters; `taskapi migrate` sets them on the database.
    assert "statement_timeout" not in config["server_settings"]
    assert config["statement_cache_size"] == 0
    assert engine_config(settings, direct=True)["dsn"] == env["DATABASE_DIRECT_URL"]


def test_the_proxy_spreads_over_both_instances():
    proxy = SERVICES["proxy"]
    assert proxy["ports"] == ["127.0.0.1:8080:8080"]
    command = proxy["command"]
    assert command[:2] == ["caddy", "reverse-proxy"]
    assert command[command.index("--from") + 1] == ":8080"
    targets = [command[i + 1] for i, arg in enumerate(command) if arg == "--to"]
    assert targets == ["api-a:8000", "api-b:8000"]
    for target in targets:
        name, _, port = target.partition(":")
        served = SERVICES[name]["command"]
        assert served[served.index("--port") + 1] == port and served[served.index("--host") + 1] == "0.0.0.0"
        assert proxy["depends_on"][name] == {"condition": "service_healthy"}
        # uvicorn trusts X-Forwarded-For from the proxy, so rate limits see the client's address.
        assert SERVICES[name]["environment"]["FORWARDED_ALLOW_IPS"] == "*"


def test_the_replica_streams_from_db():
    replica = SERVICES["db-replica"]
    script = replica["command"][-1]
    assert "pg_basebackup -h db -U taskapi" in script and " -R " in script and "exec postgres" in script
    assert replica["image"] == SERVICES["db"]["image"]  # a physical replica needs the same major version
    volume, _, target = replica["volumes"][0].partition(":")
    assert volume in COMPOSE["volumes"] and volume != SERVICES["db"]["volumes"][0].partition(":")[0]
    assert target == "/var/lib/postgresql/data"
    # db accepts replication connections (an init script adds the pg_hba line).
    (config,) = SERVICES["db"]["configs"]
    assert config["target"].startswith("/docker-entrypoint-initdb.d/")
    assert "host replication all all scram-sha-256" in COMPOSE["configs"][config["source"]]["content"]
