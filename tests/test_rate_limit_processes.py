"""Rate limits hold across processes: two real ``taskapi serve`` processes on one database.

Requests alternate between the two servers, so each process's leases and the shared counts
both take part; with quotas under 100 the lease is 1 and the totals must be exact.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import DATABASE_URL
from tests.serverproc import ServerProcess, server_env, start_server

pytestmark = pytest.mark.slow

USER_QUOTA = 20
ACCOUNT_FAILURES = 5


@pytest.fixture
def two_servers() -> Iterator[list[ServerProcess]]:
    env = server_env(
        DATABASE_URL,
        TASKAPI_RATE_LIMIT_USER=f"{USER_QUOTA}/60",
        TASKAPI_LOGIN_FAILURES_ACCOUNT=f"{ACCOUNT_FAILURES}/900",
    )
    servers = [start_server(env), start_server(env)]
    try:
        for server in servers:
            server.wait_healthy()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_two_processes_share_the_user_quota_and_the_failed_login_count(two_servers):
    first, second = two_servers
    credentials = {"email": "shared@example.com", "password": "correct-horse-battery"}
    assert httpx.post(f"{first.base_url}/api/v1/auth/register", json=credentials).status_code == 201
    token = httpx.post(f"{second.base_url}/api/v1/auth/token", json=credentials).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    statuses = [
        httpx.get(f"{server.base_url}/api/v1/users/me", headers=headers).status_code
        for _ in range(USER_QUOTA)
        for server in two_servers
    ]
    assert statuses.count(200) == USER_QUOTA, statuses
    assert statuses.count(429) == USER_QUOTA, statuses
    assert statuses[:USER_QUOTA] == [200] * USER_QUOTA  # none refused early

    wrong = {**credentials, "password": "wrong-password"}
    logins = [
        httpx.post(f"{server.base_url}/api/v1/auth/token", json=wrong).status_code
        for _ in range(ACCOUNT_FAILURES)
        for server in two_servers
    ]
    assert logins == [401] * ACCOUNT_FAILURES + [429] * ACCOUNT_FAILURES
    right = httpx.post(f"{first.base_url}/api/v1/auth/token", json=credentials)
    assert right.status_code == 429
    assert int(right.headers["retry-after"]) > 0
