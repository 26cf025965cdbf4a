"""Rate limits (SPEC "Limits and protection"), shared by every worker and instance.

Policies, each a quota per fixed window that starts with the first request counted in it:

- ``user``: authenticated requests, per user (``TASKAPI_RATE_LIMIT_USER``);
- ``address``: every other request, per client address (``TASKAPI_RATE_LIMIT_PUBLIC``);
  ``/health`` and ``/ready`` are never limited (an orchestrator's probes must not be refused);
- ``login-account`` and ``login-address``: failed logins at the token endpoint, per account
  (the normalised email) and per client address (``TASKAPI_LOGIN_FAILURES_*``).

The counts live in PostgreSQL (the UNLOGGED ``rate_limit`` table) or, with ``REDIS_URL``, in
Redis, and every change is one atomic statement (an UPSERT, or one Lua script). A store round
trip per request would cost a GET a noticeable share of its time, so each process *leases*
units in batches: the store atomically grants ``min(lease, what is left in the window)``, and
the process serves them locally until they are spent. The sum of grants never exceeds the
quota, so across any number of processes no more than the quota is admitted; a process may
refuse early by at most ``(processes - 1) * lease`` units (leased elsewhere, unspent), and
the lease is 1 for quotas under 100, so small ones (failed logins, tests) are exact. An
exhausted window is remembered locally until it resets, so a flood of refused requests costs
no store round trip either.

Failed logins are counted exactly: the token endpoint reserves one unit per policy before
checking the password, and gives it back when the login succeeds. While an account (or an
address) has no unit left, every login attempt for it is refused with 429 without checking
the password, the right one included.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.db import UNAVAILABLE_ERRORS
from app.errors import AuthenticationError, InvalidBodyError, ServiceUnavailableError
from app.services import sql
from app.services.users import normalize_email
from app.settings import Limit, Settings

logger = logging.getLogger("taskapi")

# Probes answer whatever the limits say: a refused probe would restart a healthy instance.
UNLIMITED_PATHS = frozenset({"/health", "/ready"})
# Leases are a fiftieth of the quota: one store round trip per 50 requests at most.
LEASE_FRACTION = 50
EXACT_BELOW = 100
MAX_LOCAL_KEYS = 10_000
STORE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, ServiceUnavailableError)


@dataclass(frozen=True)
class Policy:
    """One quota, as named in the ``RateLimit-Policy`` and ``RateLimit`` fields."""

    name: str
    limit: Limit

    @cached_property
    def lease(self) -> int:
        return 1 if self.limit.count < EXACT_BELOW else self.limit.count // LEASE_FRACTION

    @cached_property
    def header(self) -> str:
        """This policy's member of ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers)."""
        return f'"{self.name}";q={self.limit.count};w={self.limit.seconds}'


class Decision:
    """One request's verdict under one policy (a plain slotted class: built on every request)."""

    __slots__ = ("allowed", "remaining", "reset_seconds")

    def __init__(self, allowed: bool, remaining: int, reset_seconds: float) -> None:
        self.allowed = allowed
        self.remaining = remaining
        self.reset_seconds = reset_seconds

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset_seconds))


def state_header(policy: Policy, decision: Decision) -> str:
    """This policy's member of ``RateLimit``: remaining units and seconds until the window resets."""
    return f'"{policy.name}";r={max(decision.remaining, 0)};t={math.ceil(max(decision.reset_seconds, 0))}'


def refusal(policy: Policy, decision: Decision, detail: str) -> TooManyRequestsException:
    """The 429 (problem+json via app/errors.py) for a spent quota."""
    return TooManyRequestsException(
        detail=f"{detail}; retry in {decision.retry_after} s",
        headers={
            "Retry-After": str(decision.retry_after),
            "RateLimit-Policy": policy.header,
            "RateLimit": state_header(policy, decision),
        },
    )


class Store(Protocol):
    async def take(self, key: str, amount: int, limit: int, window: int) -> tuple[int, int, float]:
        """Grant up to ``amount`` units of ``key``'s window: (granted, used, seconds to reset)."""

    async def give_back(self, key: str, amount: int) -> None:
        """Return units granted in the current window (a successful login)."""

    async def close(self) -> None: ...


class PostgresStore:
    """Counts in the UNLOGGED ``rate_limit`` table: no WAL per count, and a crash only resets windows.

    One statement grants: it starts a new window when the old one has ended, and takes
    ``least(amount, limit - used)`` otherwise; ``granted`` keeps what this statement took,
    because RETURNING sees only the new row.
    """

    PURGE_EVERY = 600.0

    def __init__(self) -> None:
        self._next_purge = time.monotonic() + self.PURGE_EVERY

    async def take(self, key: str, amount: int, limit: int, window: int) -> tuple[int, int, float]:
        rows = await sql.RATE_TAKE.fetch(key=key, amount=amount, quota=limit, window=float(window))
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.PURGE_EVERY
            await sql.RATE_PURGE.fetch()
        row = rows[0]
        return int(row["granted"]), int(row["used"]), float(row["reset_in"])

    async def give_back(self, key: str, amount: int) -> None:
        await sql.RATE_GIVE_BACK.fetch(key=key, amount=amount)

    async def close(self) -> None:
        return None


class RedisStore:
    """Counts in Redis: one Lua script per grant, so it is atomic; keys expire with their window."""

    TAKE = """
        local used = tonumber(redis.call('GET', KEYS[1]) or '0')
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl < 0 then used = 0 end
        local granted = math.max(0, math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used))
        if ttl < 0 then
            ttl = tonumber(ARGV[3])
            redis.call('SET', KEYS[1], granted, 'PX', ttl)
        elseif granted > 0 then
            redis.call('INCRBY', KEYS[1], granted)
        end
        return {granted, used + granted, ttl}
    """
    GIVE_BACK = """
        local used = tonumber(redis.call('GET', KEYS[1]) or '0')
        if used > 0 then redis.call('DECRBY', KEYS[1], math.min(used, tonumber(ARGV[1]))) end
        return 0
    """

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as redis

        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._take = self.client.register_script(self.TAKE)
        self._give_back = self.client.register_script(self.GIVE_BACK)

    async def take(self, key: str, amount: int, limit: int, window: int) -> tuple[int, int, float]:
        from redis.exceptions import RedisError

        try:
            granted, used, ttl_ms = await self._take(keys=[self.prefix + key], args=[amount, limit, window * 1000])
        except RedisError as exc:
            raise ServiceUnavailableError("The rate-limit store is not answering; retry shortly") from exc
        return int(granted), int(used), int(ttl_ms) / 1000

    async def give_back(self, key: str, amount: int) -> None:
        from redis.exceptions import RedisError

        try:
            await self._give_back(keys=[self.prefix + key], args=[amount])
        except RedisError as exc:
            raise ServiceUnavailableError("The rate-limit store is not answering; retry shortly") from exc

    async def close(self) -> None:
        await self.client.aclose()


class _Lease:
    """Units this process holds for one key in the store's current window."""

    __slots__ = ("left", "others", "reset_at", "spent")

    def __init__(self, left: int, others: int, reset_at: float, spent: bool) -> None:
        self.left = left  # leased here, not yet served
        self.others = others  # not leased by anyone when this lease was granted
        self.reset_at = reset_at  # time.monotonic() when the store's window ends
        self.spent = spent  # the store had nothing left: refuse until reset_at


class Limiter:
    """The policies of one app, their store, and this process's leases."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.user = Policy("user", settings.rate_limit_user)
        self.address = Policy("address", settings.rate_limit_public)
        self.login_account = Policy("login-account", settings.login_failures_account)
        self.login_address = Policy("login-address", settings.login_failures_address)
        self.store: Store = store or (
            RedisStore(settings.redis_url, settings.redis_prefix) if settings.redis_url else PostgresStore()
        )
        self._leases: dict[str, _Lease] = {}

    async def hit(self, policy: Policy, subject: str) -> Decision:
        """Count one request of ``subject`` under ``policy``, from a lease when one has units."""
        key = f"{policy.name}:{subject}"
        now = time.monotonic()
        lease = self._leases.get(key)
        if lease is not None and now < lease.reset_at:
            if lease.left > 0:
                lease.left -= 1
                return Decision(True, lease.left + lease.others, lease.reset_at - now)
            if lease.spent:
                return Decision(False, 0, lease.reset_at - now)
        granted, used, reset_in = await self.store.take(key, policy.lease, policy.limit.count, policy.limit.seconds)
        if len(self._leases) >= MAX_LOCAL_KEYS:
            self._forget_expired(now)
        lease = _Lease(max(granted - 1, 0), policy.limit.count - used, now + reset_in, granted == 0)
        self._leases[key] = lease
        return Decision(granted > 0, lease.left + lease.others, reset_in)

    def _forget_expired(self, now: float) -> None:
        for key in [key for key, lease in self._leases.items() if lease.reset_at <= now]:
            del self._leases[key]

    async def reserve(self, policy: Policy, subject: str) -> Decision:
        """Take exactly one unit from the store (no lease): for counts that must be exact."""
        granted, used, reset_in = await self.store.take(
            f"{policy.name}:{subject}", 1, policy.limit.count, policy.limit.seconds
        )
        return Decision(granted > 0, policy.limit.count - used, reset_in)

    async def release(self, policy: Policy, subject: str) -> None:
        await self.store.give_back(f"{policy.name}:{subject}", 1)

    @contextlib.asynccontextmanager
    async def login_attempt(self, account: str, address: str) -> AsyncIterator[None]:
        """Guard one password check: 429 while the account or the address has no failure left.

        A unit of each is reserved before the check and given back unless the check fails
        (AuthenticationError), so concurrent wrong attempts can never exceed the quota.
        """
        try:
            # One account however its email is spelled; the limiter keeps no email in clear.
            account_id: str | None = hashlib.sha256(normalize_email(account).encode()).hexdigest()[:32]
        except InvalidBodyError:
            account_id = None  # no such account can exist; the check answers 400
        held: list[tuple[Policy, str]] = []
        try:
            for policy, subject, what in (
                (self.login_account, account_id, "this account"),
                (self.login_address, address, "this address"),
            ):
                if not policy.limit.enabled or subject is None:
                    continue
                decision = await self.reserve(policy, subject)
                if not decision.allowed:
                    raise refusal(policy, decision, f"Too many failed logins for {what}")
                held.append((policy, subject))
            yield
        except AuthenticationError:
            raise  # a failed attempt: it keeps its units
        except BaseException:
            await self._release_all(held)
            raise
        else:
            await self._release_all(held)

    async def _release_all(self, held: list[tuple[Policy, str]]) -> None:
        for policy, subject in held:
            try:
                await self.release(policy, subject)
            except STORE_ERRORS:
                logger.warning("could not give back a login unit for %s", policy.name)

    async def close(self) -> None:
        await self.store.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """The app's lifespan hook: close the store's connections at shutdown."""
        try:
            yield
        finally:
            await self.close()


def client_address(scope: Scope) -> str:
    """The peer uvicorn reports: the proxy's X-Forwarded-For only when uvicorn trusts that proxy."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """Counts each request against ``user`` (after authentication) or ``address``.

    Runs inside the authentication middleware, so ``scope["user"]`` is known. Litestar builds
    one instance per route handler, so which policy applies is worked out once per instance.
    Answers carry ``RateLimit-Policy`` and ``RateLimit``; a spent quota raises the 429.
    """

    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter
        self._policy: Policy | None = None
        self._policy_field = (b"", b"")
        self._resolved = False

    def _resolve(self, scope: Scope) -> Policy | None:
        handler = scope["route_handler"]
        if UNLIMITED_PATHS & set(handler.paths):
            return None
        public = handler.opt.get("exclude_from_auth") or scope["path"].startswith("/schema")
        policy = self.limiter.address if public else self.limiter.user
        return policy if policy.limit.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._resolved:
            self._policy = self._resolve(scope)
            if self._policy is not None:
                self._policy_field = (b"ratelimit-policy", self._policy.header.encode())
            self._resolved = True
        policy = self._policy
        if policy is None or scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        user = scope.get("user") if policy is self.limiter.user else None
        subject = str(user.id) if user is not None else client_address(scope)
        decision = await self.limiter.hit(policy, subject)
        if not decision.allowed:
            detail = "Too many requests for this user" if user is not None else "Too many requests from this address"
            raise refusal(policy, decision, detail)
        fields = (self._policy_field, (b"ratelimit", state_header(policy, decision).encode()))

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *fields]
            await send(message)

        await self.app(scope, receive, send_with_fields)


def rate_limit_middleware(limiter: Limiter) -> DefineMiddleware:
    return DefineMiddleware(RateLimitMiddleware, limiter=limiter)


def limiter_of(app: Any) -> Limiter:
    limiter: Limiter = app.state.limiter
    return limiter
