"""One frozen settings object, read from the environment once."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_SECRET_LENGTH = 32
# Beside the embedded data directory, never inside it: PostgreSQL owns that one.
SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret


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


@dataclass(frozen=True)
class Limit:
    """A quota: at most ``count`` per ``seconds`` (``count == 0``: not limited)."""

    count: int
    seconds: int

    @property
    def enabled(self) -> bool:
        return self.count > 0

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}" if self.enabled else "off"


_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def _limit(name: str, default: Limit) -> Limit:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.strip().lower() == "off":
        return Limit(0, default.seconds)
    match = _LIMIT.match(raw)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise SettingsError(f"{name} must be <count>/<seconds> (both >= 1) or off, e.g. {default}; got {raw!r}")
    return Limit(int(match.group(1)), int(match.group(2)))


def secret_file(data_dir: Path) -> Path:
    """Where development and test keep their generated signing secret."""
    return data_dir.parent / SECRET_FILE_NAME


def generated_secret(path: Path) -> str:
    """The secret kept in ``path``, created on first use (random, mode 0600).

    Several workers may start at once: each writes a complete candidate to its own temporary
    file and links it into place, which fails if the file exists, so every process reads the
    one winner's secret and nobody ever reads a half-written file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_urlsafe(48) + "\n")
                with contextlib.suppress(FileExistsError):
                    os.link(candidate, path)
            finally:
                candidate.unlink(missing_ok=True)
        mode = path.stat().st_mode
        secret = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(
            f"TASKAPI_SECRET_KEY is not set and the generated secret cannot be kept in {path} "
            f"({exc.strerror}); set TASKAPI_SECRET_KEY or TASKAPI_DATA_DIR"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(
            f"{path} holds the token-signing secret but other users can access it "
            f"(mode {stat.S_IMODE(mode):04o}); run chmod 600 on it, or set TASKAPI_SECRET_KEY"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(f"{path} holds a secret under {MIN_SECRET_LENGTH} characters; delete it to make a new one")
    return secret


def _on_off(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in {"on", "off"}:
        raise SettingsError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _true_false(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in {"true", "false", "1", "0", "on", "off"}:
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    return raw in {"true", "1", "on"}


@dataclass(frozen=True)
class WebhookSettings:
    """Webhook deliveries (app/webhooks_worker.py); environment names TASKAPI_WEBHOOK_<FIELD>."""

    # TASKAPI_WEBHOOK_ALLOW_PRIVATE: allow URLs resolving to loopback, private, link-local... addresses.
    allow_private: bool = False
    # TASKAPI_WEBHOOK_WORKER: `taskapi serve` runs a delivery worker in each process (off: run
    # `taskapi worker` separately).
    worker: bool = True
    concurrency: int = 32  # requests in flight per worker
    per_webhook: int = 8  # of which at most this many to one webhook
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    # A claimed delivery belongs to its worker this long; if the worker dies, another sends it after.
    lease_seconds: float = 60.0
    poll_seconds: float = 0.5  # how often an idle worker looks for due deliveries
    # Retries: about retry_base * 2^(n-1) seconds after the n-th failure (jittered down to half),
    # at most retry_max_delay apart, for retry_window seconds after the delivery was queued.
    retry_base: float = 15.0
    retry_max_delay: float = 3600.0
    retry_window: float = 24 * 3600.0
    keep_days: int = 30  # finished deliveries are purged after this


def load_webhook_settings() -> WebhookSettings:
    d = WebhookSettings()
    return WebhookSettings(
        allow_private=_true_false("TASKAPI_WEBHOOK_ALLOW_PRIVATE", d.allow_private),
        worker=_true_false("TASKAPI_WEBHOOK_WORKER", d.worker),
        concurrency=_int("TASKAPI_WEBHOOK_CONCURRENCY", d.concurrency),
        per_webhook=_int("TASKAPI_WEBHOOK_PER_WEBHOOK", d.per_webhook),
        connect_timeout=_float("TASKAPI_WEBHOOK_CONNECT_TIMEOUT", d.connect_timeout),
        read_timeout=_float("TASKAPI_WEBHOOK_READ_TIMEOUT", d.read_timeout),
        lease_seconds=_float("TASKAPI_WEBHOOK_LEASE_SECONDS", d.lease_seconds),
        poll_seconds=_float("TASKAPI_WEBHOOK_POLL_SECONDS", d.poll_seconds),
        retry_base=_float("TASKAPI_WEBHOOK_RETRY_BASE", d.retry_base),
        retry_max_delay=_float("TASKAPI_WEBHOOK_RETRY_MAX_DELAY", d.retry_max_delay),
        retry_window=_float("TASKAPI_WEBHOOK_RETRY_WINDOW", d.retry_window),
        keep_days=_int("TASKAPI_WEBHOOK_KEEP_DAYS", d.keep_days),
    )


def check_webhook_settings(w: WebhookSettings) -> None:
    if w.concurrency < 1 or w.per_webhook < 1:
        raise SettingsError("TASKAPI_WEBHOOK_CONCURRENCY and TASKAPI_WEBHOOK_PER_WEBHOOK must be >= 1")
    if w.connect_timeout <= 0 or w.read_timeout <= 0 or w.poll_seconds <= 0 or w.retry_base <= 0:
        raise SettingsError("TASKAPI_WEBHOOK_* timeouts, poll interval and retry base must be > 0")
    if w.lease_seconds <= w.connect_timeout + w.read_timeout:
        # Else a slow send could outlive its claim and another worker send it at the same time.
        raise SettingsError("TASKAPI_WEBHOOK_LEASE_SECONDS must be longer than the connect and read timeouts together")
    if w.retry_max_delay < w.retry_base or w.retry_window < w.retry_base:
        raise SettingsError("TASKAPI_WEBHOOK_RETRY_MAX_DELAY and _RETRY_WINDOW must be >= TASKAPI_WEBHOOK_RETRY_BASE")


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str | None = None
    # DATABASE_DIRECT_URL: PostgreSQL itself, never a transaction pooler; `taskapi migrate` (its
    # session advisory lock) runs there. Defaults to DATABASE_URL.
    database_direct_url: str | None = None
    # DATABASE_POOLER: "none" (DATABASE_URL is PostgreSQL) or "pgbouncer" (a transaction pooler:
    # server-side timeouts become database defaults set by `taskapi migrate`, app/db.py).
    database_pooler: str = "none"
    # DB_PREPARED_STATEMENTS: asyncpg's named prepared-statement cache; off by default behind
    # PgBouncer (before 1.21 it cannot carry named statements across server connections).
    db_prepared_statements: bool = True
    # DATABASE_REPLICA_URLS: comma-separated streaming replicas for GETs (read-your-writes, app/db.py).
    database_replica_urls: tuple[str, ...] = ()
    data_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".taskapi" / "pgdata")
    # TASKAPI_SECRET_KEY; without it development and test use generated_secret(secret_file(data_dir)).
    # Empty means unset: refused by validate(), so no constant in the source can sign a token.
    secret_key: str = ""
    # True when secret_key came from TASKAPI_SECRET_KEY (not a generated file).
    secret_configured: bool = False
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
    # Rate limits (app/ratelimit.py): authenticated requests per user, the other requests per
    # client address, failed logins per account and per address. REDIS_URL moves the counts
    # from PostgreSQL to Redis (keys under redis_prefix).
    rate_limit_user: Limit = Limit(1200, 60)
    rate_limit_public: Limit = Limit(1200, 60)
    login_failures_account: Limit = Limit(10, 900)
    login_failures_address: Limit = Limit(60, 300)
    redis_url: str | None = None
    redis_prefix: str = "taskapi:"
    # Password hashes (argon2id, 64 MiB each) computed at once, and how long a login waits for a
    # slot before a 503 with Retry-After (app/passwords.py).
    password_hash_concurrency: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    password_hash_wait_seconds: float = 5.0
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    # The event log (app/services/events.py, app/events.py): events are kept this many days
    # (SPEC: at least 30; older ones are deleted every events_purge_seconds); an idle stream gets
    # a heartbeat every sse_heartbeat_seconds (SPEC: at most 15); each process's hub looks for
    # new events at least every events_poll_seconds besides the NOTIFYs that wake it.
    events_retention_days: int = 30
    events_purge_seconds: float = 600.0
    sse_heartbeat_seconds: float = 15.0
    events_poll_seconds: float = 1.0

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def validate(self) -> None:
        """Refuse unsafe combinations; called at application start-up."""
        if self.env not in {"development", "production", "test"}:
            raise SettingsError(f"TASKAPI_ENV must be development, production or test, got {self.env!r}")
        if self.database_pooler not in {"none", "pgbouncer"}:
            raise SettingsError(f"DATABASE_POOLER must be none or pgbouncer, got {self.database_pooler!r}")
        if self.pool_min_size < 0 or self.pool_max_size < 1 or self.pool_min_size > self.pool_max_size:
            raise SettingsError("DB_POOL_MIN_SIZE must be between 0 and DB_POOL_MAX_SIZE (>= 1)")
        if self.db_request_timeout * 1000 <= self.db_statement_timeout_ms:
            raise SettingsError("DB_REQUEST_TIMEOUT (seconds) must be longer than DB_STATEMENT_TIMEOUT_MS")
        if self.password_hash_concurrency < 1 or self.password_hash_wait_seconds <= 0:
            raise SettingsError("TASKAPI_PASSWORD_HASH_CONCURRENCY must be >= 1 and TASKAPI_PASSWORD_HASH_WAIT > 0")
        check_webhook_settings(self.webhooks)
        if self.events_retention_days < 30:
            raise SettingsError("TASKAPI_EVENTS_RETENTION_DAYS must be at least 30")
        if not 0 < self.sse_heartbeat_seconds <= 15:
            raise SettingsError("TASKAPI_SSE_HEARTBEAT_SECONDS must be more than 0 and at most 15")
        if self.events_poll_seconds <= 0 or self.events_purge_seconds <= 0:
            raise SettingsError("TASKAPI_EVENTS_POLL_SECONDS and TASKAPI_EVENTS_PURGE_SECONDS must be > 0")
        if not self.secret_key:
            raise SettingsError(
                "TASKAPI_SECRET_KEY is not set; set a random secret of at least 32 characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        if self.is_production:
            if len(self.secret_key) < MIN_SECRET_LENGTH:
                raise SettingsError("TASKAPI_SECRET_KEY must be at least 32 characters in production")
            if not self.database_url:
                raise SettingsError("DATABASE_URL must be set in production (no embedded database)")


def is_loopback(host: str) -> bool:
    """True for a listen address only this machine can reach."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_listen_address(settings: Settings, host: str) -> None:
    """Refuse to serve beyond loopback on a generated secret.

    A listener others can reach is a deployment: every instance must share one secret that
    someone chose (a generated one differs per machine or container), so say so at start-up.
    """
    if not settings.secret_configured and not is_loopback(host):
        raise SettingsError(
            f"--host {host} is reachable from other machines, so set TASKAPI_SECRET_KEY (at least "
            f"{MIN_SECRET_LENGTH} characters, the same for every instance); the generated development "
            "secret is for 127.0.0.1 only"
        )


def load_settings() -> Settings:
    """Build settings from the environment (no caching; see get_settings)."""
    raw_data_dir = os.environ.get("TASKAPI_DATA_DIR")
    data_dir = Path(raw_data_dir).expanduser().resolve() if raw_data_dir else PROJECT_ROOT / ".taskapi" / "pgdata"
    env = os.environ.get("TASKAPI_ENV", "development")
    configured = os.environ.get("TASKAPI_SECRET_KEY") or ""
    # Production never generates one: instances must share a secret someone configured.
    generated = generated_secret(secret_file(data_dir)) if not configured and env in {"development", "test"} else ""
    pooler = os.environ.get("DATABASE_POOLER", "none").strip().lower() or "none"
    return Settings(
        env=env,
        database_url=os.environ.get("DATABASE_URL") or None,
        database_direct_url=os.environ.get("DATABASE_DIRECT_URL") or None,
        database_pooler=pooler,
        db_prepared_statements=_on_off("DB_PREPARED_STATEMENTS", pooler == "none"),
        database_replica_urls=tuple(
            url.strip() for url in os.environ.get("DATABASE_REPLICA_URLS", "").split(",") if url.strip()
        ),
        data_dir=data_dir,
        secret_key=configured or generated,
        secret_configured=bool(configured),
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
        rate_limit_user=_limit("TASKAPI_RATE_LIMIT_USER", Settings.rate_limit_user),
        rate_limit_public=_limit("TASKAPI_RATE_LIMIT_PUBLIC", Settings.rate_limit_public),
        login_failures_account=_limit("TASKAPI_LOGIN_FAILURES_ACCOUNT", Settings.login_failures_account),
        login_failures_address=_limit("TASKAPI_LOGIN_FAILURES_ADDRESS", Settings.login_failures_address),
        redis_url=os.environ.get("REDIS_URL") or None,
        redis_prefix=os.environ.get("TASKAPI_REDIS_PREFIX", "taskapi:"),
        password_hash_concurrency=_int("TASKAPI_PASSWORD_HASH_CONCURRENCY", max(1, (os.cpu_count() or 2) // 2)),
        password_hash_wait_seconds=_float("TASKAPI_PASSWORD_HASH_WAIT", 5.0),
        webhooks=load_webhook_settings(),
        events_retention_days=_int("TASKAPI_EVENTS_RETENTION_DAYS", 30),
        events_purge_seconds=_float("TASKAPI_EVENTS_PURGE_SECONDS", 600.0),
        sse_heartbeat_seconds=_float("TASKAPI_SSE_HEARTBEAT_SECONDS", 15.0),
        events_poll_seconds=_float("TASKAPI_EVENTS_POLL_SECONDS", 1.0),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
