"""Rate limits (SPEC "Limits and protection"): 429 + Retry-After + RateLimit fields, per user,
per address, failed logins per account and per address, the Redis store, and the settings.

Each test builds its own app with small limits (the suite's shared app keeps the defaults) and
talks to it from chosen client addresses; counts live in the test database (rate_limit is
truncated after each test) or, for the Redis tests, under a key prefix unique to the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest

from app.settings import Limit, Settings, SettingsError, get_settings, load_settings
from tests.api.problems import assert_problem, run_sql

ME = "/api/v1/users/me"
TOKEN = "/api/v1/auth/token"
REGISTER = "/api/v1/auth/register"
# A Redis the suite may write keys to (under a prefix unique to the run), like TEST_DATABASE_URL.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
RATELIMIT = re.compile(r'^"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


def _settings(**limits: Any) -> Settings:
    return replace(get_settings(), **limits)


@asynccontextmanager
async def _client(app: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def limited() -> Any:
    """``limited(address, **limits)`` -> an httpx client of a fresh app with those limits."""
    from app.asgi import create_app

    apps: dict[tuple[Any, ...], Any] = {}

    def make(address: str = "10.0.0.1", **limits: Any) -> Any:
        key = tuple(sorted(limits.items()))
        if key not in apps:  # one app (one process's leases) per set of limits
            apps[key] = create_app(_settings(**limits))
        return _client(apps[key], address)

    return make


def _state(response: httpx.Response) -> dict[str, int]:
    match = RATELIMIT.match(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return {"r": int(match["r"]), "t": int(match["t"])}


def _members(response: httpx.Response, field: str) -> dict[str, str]:
    """A structured-field list (several policies may apply) as {policy name: member}."""
    members = [member.strip() for member in response.headers[field].split(",")]
    return {member.split(";")[0].strip('"'): member for member in members}


def _assert_429(response: httpx.Response, policy: str, quota: int, window: int) -> None:
    body = assert_problem(response, 429)
    assert body["title"] == "Too Many Requests"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    assert _members(response, "ratelimit-policy")[policy] == f'"{policy}";q={quota};w={window}'
    assert _members(response, "ratelimit")[policy] == f'"{policy}";r=0;t={retry_after}', response.headers


async def test_authenticated_requests_over_the_quota_get_429_and_other_users_do_not(limited, alice, bob):
    async with limited(rate_limit_user=Limit(5, 60)) as http:
        remaining = []
        for _ in range(5):
            response = await http.get(ME, headers=alice.headers)
            assert response.status_code == 200
            assert response.headers["ratelimit-policy"] == '"user";q=5;w=60'
            state = _state(response)
            assert 0 < state["t"] <= 60
            remaining.append(state["r"])
        assert remaining == [4, 3, 2, 1, 0]
        refused = await http.get(ME, headers=alice.headers)
        _assert_429(refused, "user", 5, 60)
        # Another user, same address: their own quota.
        other = await http.get(ME, headers=bob.headers)
        assert other.status_code == 200
        assert _state(other)["r"] == 4


async def test_the_user_quota_follows_the_user_across_addresses(limited, alice):
    async with limited("10.0.0.1", rate_limit_user=Limit(3, 60)) as first:
        for _ in range(3):
            assert (await first.get(ME, headers=alice.headers)).status_code == 200
    async with limited("10.0.0.2", rate_limit_user=Limit(3, 60)) as second:
        _assert_429(await second.get(ME, headers=alice.headers), "user", 3, 60)


async def test_public_endpoints_are_limited_per_address(limited):
    body = {"email": "nobody@example.com", "password": "short"}  # a 400: still a request
    async with limited("10.0.0.1", rate_limit_public=Limit(3, 60)) as http:
        for expected_r in (2, 1, 0):
            response = await http.post(REGISTER, json=body)
            assert response.status_code == 400
            assert response.headers["ratelimit-policy"] == '"address";q=3;w=60'
            assert _state(response)["r"] == expected_r
        _assert_429(await http.post(REGISTER, json=body), "address", 3, 60)
        _assert_429(await http.post(TOKEN, json={"email": "a@example.com", "password": "x"}), "address", 3, 60)
    async with limited("10.0.0.2", rate_limit_public=Limit(3, 60)) as other:
        assert (await other.post(REGISTER, json=body)).status_code == 400


async def test_health_and_ready_are_never_limited(limited):
    async with limited(rate_limit_public=Limit(1, 60), rate_limit_user=Limit(1, 60)) as http:
        for path in ("/health", "/ready") * 3:
            response = await http.get(path)
            assert response.status_code == 200, path
            assert "ratelimit" not in response.headers


async def test_nothing_is_written_by_a_refused_request(limited, alice):
    from tests.conftest import count_rows

    async with limited(rate_limit_user=Limit(1, 60)) as http:
        assert (await http.post("/api/v1/projects", json={"name": "one"}, headers=alice.headers)).status_code == 201
        _assert_429(await http.post("/api/v1/projects", json={"name": "two"}, headers=alice.headers), "user", 1, 60)
    assert await count_rows("project") == 1


async def test_failed_logins_lock_the_account_even_for_the_right_password(limited, alice, bob):
    limits = {"login_failures_account": Limit(3, 900)}
    async with limited("10.0.0.1", **limits) as http:
        for _ in range(3):
            response = await http.post(TOKEN, json={"email": alice.email, "password": "wrong-password"})
            assert response.status_code == 401
        refused = await http.post(TOKEN, json={"email": alice.email, "password": "wrong-password"})
        _assert_429(refused, "login-account", 3, 900)
        assert "account" in refused.json()["detail"]
        right = await http.post(TOKEN, json={"email": alice.email, "password": alice.password})
        _assert_429(right, "login-account", 3, 900)
        # The same account however the email is spelled, and through the OAuth2 form.
        shouted = await http.post(TOKEN, json={"email": alice.email.upper(), "password": alice.password})
        _assert_429(shouted, "login-account", 3, 900)
        form = await http.post(TOKEN, data={"username": alice.email, "password": alice.password})
        _assert_429(form, "login-account", 3, 900)
        # Another account from the same address is not affected.
        assert (await http.post(TOKEN, json={"email": bob.email, "password": bob.password})).status_code == 200
    async with limited("10.0.0.9", **limits) as elsewhere:  # nor does another address unlock it
        _assert_429(
            await elsewhere.post(TOKEN, json={"email": alice.email, "password": alice.password}),
            "login-account",
            3,
            900,
        )
    # Tokens issued before the lock keep working: the lock is about logging in.
    async with limited("10.0.0.1", **limits) as http:
        assert (await http.get(ME, headers=alice.headers)).status_code == 200


async def test_successful_logins_do_not_count(limited, alice):
    async with limited(login_failures_account=Limit(2, 900)) as http:
        for _ in range(5):
            assert (await http.post(TOKEN, json={"email": alice.email, "password": alice.password})).status_code == 200
        for _ in range(2):
            assert (
                await http.post(TOKEN, json={"email": alice.email, "password": "wrong-password"})
            ).status_code == 401
        _assert_429(await http.post(TOKEN, json={"email": alice.email, "password": "wrong"}), "login-account", 2, 900)


async def test_failed_logins_are_limited_per_address_across_accounts(limited, alice):
    limits = {"login_failures_address": Limit(4, 900)}
    async with limited("10.0.0.1", **limits) as http:
        for n in range(4):
            response = await http.post(TOKEN, json={"email": f"guess{n}@example.com", "password": "password1"})
            assert response.status_code == 401
        refused = await http.post(TOKEN, json={"email": "guess9@example.com", "password": "password1"})
        _assert_429(refused, "login-address", 4, 900)
        assert "address" in refused.json()["detail"]
        # The address is locked for every account, the right password included.
        _assert_429(
            await http.post(TOKEN, json={"email": alice.email, "password": alice.password}), "login-address", 4, 900
        )
    async with limited("10.0.0.2", **limits) as other:
        assert (await other.post(TOKEN, json={"email": alice.email, "password": alice.password})).status_code == 200


async def test_concurrent_wrong_passwords_never_exceed_the_quota(limited, alice):
    async with limited(login_failures_account=Limit(3, 900)) as http:
        responses = await asyncio.gather(
            *(http.post(TOKEN, json={"email": alice.email, "password": f"wrong-{n}"}) for n in range(12))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 3 + [429] * 9


async def test_bad_login_input_is_not_a_failed_attempt(limited, alice):
    async with limited(login_failures_account=Limit(1, 900), login_failures_address=Limit(1, 900)) as http:
        for body in ({"email": alice.email}, {"email": "a\u200b@example.com", "password": "x"}):
            assert (await http.post(TOKEN, json=body)).status_code == 400
        assert (await http.post(TOKEN, json={"email": alice.email, "password": alice.password})).status_code == 200


@pytest.fixture
async def redis_settings() -> AsyncIterator[dict[str, Any]]:
    """Redis store settings under a fresh key prefix; the prefix's keys are deleted afterwards."""
    import redis.asyncio as redis

    prefix = f"taskapi-test-{secrets.token_hex(6)}:"
    yield {"redis_url": REDIS_URL, "redis_prefix": prefix}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_redis_store_limits_users_like_postgres(redis_settings, alice, bob):
    import redis.asyncio as redis

    from app.asgi import create_app

    app = create_app(_settings(rate_limit_user=Limit(4, 60), login_failures_account=Limit(2, 900), **redis_settings))
    try:
        async with _client(app, "10.0.0.1") as http:
            assert [_state(await http.get(ME, headers=alice.headers))["r"] for _ in range(4)] == [3, 2, 1, 0]
            _assert_429(await http.get(ME, headers=alice.headers), "user", 4, 60)
            assert (await http.get(ME, headers=bob.headers)).status_code == 200
            for _ in range(2):
                assert (await http.post(TOKEN, json={"email": bob.email, "password": "wrong-pw"})).status_code == 401
            _assert_429(
                await http.post(TOKEN, json={"email": bob.email, "password": bob.password}), "login-account", 2, 900
            )
    finally:
        await app.state.limiter.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        user_key = f"{redis_settings['redis_prefix']}user:{alice.id}"
        assert int(await client.get(user_key)) == 4
        assert 0 < await client.ttl(user_key) <= 60
    finally:
        await client.aclose()
    # Nothing of this app went to PostgreSQL (the rows there are the fixtures' sign-ups).
    rows = await run_sql(
        "SELECT count(*) AS n FROM rate_limit WHERE key LIKE 'user:%' OR used > 0 AND key LIKE 'login-account:%'"
    )
    assert rows[0]["n"] == 0


async def test_leases_never_admit_more_than_the_quota(alice):
    """Two limiters (two processes' worth of leases) on one store: at most the quota, in total."""
    from app.ratelimit import Limiter

    settings = _settings(rate_limit_user=Limit(500, 60))
    first, second = Limiter(settings), Limiter(settings)
    assert first.user.lease == 10
    allowed = 0
    for n in range(600):
        decision = await (first if n % 3 else second).hit(first.user, str(alice.id))
        allowed += decision.allowed
    # Each limiter may hold back at most one unspent lease.
    assert 500 - first.user.lease <= allowed <= 500


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TASKAPI_RATE_LIMIT_USER", "lots", "TASKAPI_RATE_LIMIT_USER must be <count>/<seconds>"),
        ("TASKAPI_RATE_LIMIT_PUBLIC", "0/60", "TASKAPI_RATE_LIMIT_PUBLIC"),
        ("TASKAPI_LOGIN_FAILURES_ACCOUNT", "10/0", "TASKAPI_LOGIN_FAILURES_ACCOUNT"),
        ("TASKAPI_LOGIN_FAILURES_ADDRESS", "-1/900", "TASKAPI_LOGIN_FAILURES_ADDRESS"),
        ("TASKAPI_PASSWORD_HASH_CONCURRENCY", "two", "TASKAPI_PASSWORD_HASH_CONCURRENCY"),
    ],
)
def test_bad_limit_settings_are_refused(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_limit_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TASKAPI_RATE_LIMIT_USER", "50/10")
    monkeypatch.setenv("TASKAPI_RATE_LIMIT_PUBLIC", "off")
    monkeypatch.setenv("TASKAPI_PASSWORD_HASH_CONCURRENCY", "3")
    settings = load_settings()
    assert settings.rate_limit_user == Limit(50, 10)
    assert not settings.rate_limit_public.enabled
    assert settings.password_hash_concurrency == 3
    with pytest.raises(SettingsError, match="TASKAPI_PASSWORD_HASH_CONCURRENCY"):
        replace(settings, password_hash_concurrency=0).validate()


def test_defaults_are_the_documented_ones():
    defaults = Settings()
    assert (defaults.rate_limit_user, defaults.rate_limit_public) == (Limit(1200, 60), Limit(1200, 60))
    assert (defaults.login_failures_account, defaults.login_failures_address) == (Limit(10, 900), Limit(60, 300))


async def test_a_limit_that_is_off_sends_no_fields(limited, alice):
    async with limited(rate_limit_user=Limit(0, 60)) as http:
        response = await http.get(ME, headers=alice.headers)
    assert response.status_code == 200
    assert "ratelimit" not in response.headers
