"""Readiness: does the database answer?"""

from __future__ import annotations

import asyncio

from app.db import get_engine


async def database_answers(timeout: float = 2.0) -> bool:  # noqa: ASYNC109
    """True if ``SELECT 1`` comes back within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await get_engine().run_ddl("SELECT 1")
    except Exception:
        return False
    return True
