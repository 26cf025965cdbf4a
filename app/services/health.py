"""Readiness: does the database answer?"""

from __future__ import annotations

import asyncio

from app.services import sql

# /ready answers within this many seconds, whatever the database does (README documents it).
READY_TIMEOUT_SECONDS = 2.0


async def database_answers() -> bool:
    """True if ``SELECT 1`` comes back within READY_TIMEOUT_SECONDS."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await sql.PING.fetch()
    except Exception:
        return False
    return True
