"""Assertions shared by the API tests: the RFC 9457 problem shape and "no 5xx"."""

from __future__ import annotations

from typing import Any

import httpx

PROBLEM_TYPE = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, *fields: str, case: Any = None) -> dict[str, Any]:
    """The response is a ``status`` problem+json naming at least ``fields`` in ``errors``.

    ``case`` (e.g. the body sent) is shown in failure messages, for checks run in a loop.
    """
    where = f"{response.request.method} {response.request.url.path}" + ("" if case is None else f" {case!r:.300}")
    assert response.status_code == status, f"{where}: {response.text[:2000]}"
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_TYPE, (where, response.headers)
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if fields:
        named = {error["field"] for error in body.get("errors", [])}
        missing = set(fields) - named
        assert not missing, f"{where}: {sorted(missing)} not named in {body}"
    return body


def error_fields(response: httpx.Response) -> set[str]:
    return {error["field"] for error in response.json().get("errors", [])}


async def run_sql(query: str, *args: Any) -> Any:
    """Run one SQL statement against the test database (to arrange timestamps for ordering tests)."""
    from piccolo.querystring import QueryString

    from app.db import get_engine

    return await get_engine().run_querystring(QueryString(query, *args))
