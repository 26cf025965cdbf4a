"""One frozen settings object, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEV_SECRET = "taskapi-development-secret-change-me-0123456789"  # noqa: S105 - refused in production

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(RuntimeError):
    """A setting is missing or unsafe; the message says which and why."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".taskapi" / "pgdata")
    secret_key: str = DEV_SECRET
    token_ttl_seconds: int = 3600
    pool_min_size: int = 1
    pool_max_size: int = 10
    # DB_CONNECT_TIMEOUT: seconds to open one connection before giving up.
    db_connect_timeout: float = 2.0
    # DB_ACQUIRE_TIMEOUT: seconds a query waits for a pooled connection (including opening one);
    # past it the request gets a 503 with Retry-After instead of hanging (app/db.py TaskapiEngine).
    db_acquire_timeout: float = 3.0
    db_statement_timeout_ms: int = 4000
    # DB_REQUEST_TIMEOUT: seconds a request may take before it starts answering (its database
    # work in practice); past it, 503 with Retry-After (app/db.py RequestDeadline). Longer than
    # the statement timeout, so expensive statements end by that bound, not this one.
    db_request_timeout: float = 4.5
    # TASKAPI_CORS_ORIGINS: comma-separated origins allowed by CORS; empty means CORS off.
    cors_origins: tuple[str, ...] = ()
    shutdown_timeout: float = 10.0
    idempotency_ttl_hours: int = 24
    log_level: str = "INFO"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def validate(self) -> None:
        """Refuse unsafe combinations; called at application start-up."""
        if self.env not in {"development", "production", "test"}:
            raise SettingsError(f"TASKAPI_ENV must be development, production or test, got {self.env!r}")
        if self.pool_min_size < 0 or self.pool_max_size < 1 or self.pool_min_size > self.pool_max_size:
            raise SettingsError("DB_POOL_MIN_SIZE must be between 0 and DB_POOL_MAX_SIZE (>= 1)")
        if self.db_request_timeout * 1000 <= self.db_statement_timeout_ms:
            raise SettingsError("DB_REQUEST_TIMEOUT (seconds) must be longer than DB_STATEMENT_TIMEOUT_MS")
        if self.is_production:
            if self.secret_key == DEV_SECRET:
                raise SettingsError(
                    "TASKAPI_SECRET_KEY is the development default; set a random secret of at least "
                    "32 characters to run with TASKAPI_ENV=production"
                )
            if len(self.secret_key) < 32:
                raise SettingsError("TASKAPI_SECRET_KEY must be at least 32 characters in production")
            if not self.database_url:
                raise SettingsError("DATABASE_URL must be set in production (no embedded database)")


def load_settings() -> Settings:
    """Build settings from the environment (no caching; see get_settings)."""
    data_dir = os.environ.get("TASKAPI_DATA_DIR")
    return Settings(
        env=os.environ.get("TASKAPI_ENV", "development"),
        database_url=os.environ.get("DATABASE_URL") or None,
        data_dir=Path(data_dir).expanduser().resolve() if data_dir else PROJECT_ROOT / ".taskapi" / "pgdata",
        secret_key=os.environ.get("TASKAPI_SECRET_KEY") or DEV_SECRET,
        token_ttl_seconds=_int("TASKAPI_TOKEN_TTL_SECONDS", 3600),
        pool_min_size=_int("DB_POOL_MIN_SIZE", 1),
        pool_max_size=_int("DB_POOL_MAX_SIZE", 10),
        db_connect_timeout=_float("DB_CONNECT_TIMEOUT", 2.0),
        db_acquire_timeout=_float("DB_ACQUIRE_TIMEOUT", 3.0),
        db_statement_timeout_ms=_int("DB_STATEMENT_TIMEOUT_MS", 4000),
        db_request_timeout=_float("DB_REQUEST_TIMEOUT", 4.5),
        cors_origins=tuple(
            origin.strip() for origin in os.environ.get("TASKAPI_CORS_ORIGINS", "").split(",") if origin.strip()
        ),
        shutdown_timeout=_float("TASKAPI_SHUTDOWN_TIMEOUT", 10.0),
        idempotency_ttl_hours=_int("TASKAPI_IDEMPOTENCY_TTL_HOURS", 24),
        log_level=os.environ.get("TASKAPI_LOG_LEVEL", "INFO").upper(),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
