"""Stored emails take the form logins now look up: NFKC, lower-cased, NFKC again.

Before, emails were only lower-cased, so an NFD or fullwidth spelling was stored as typed and
could no longer log in once logins are normalised. Each such row is rewritten unless its
normalised form is already taken (two accounts that are one address now): those stay as they
were, and their owners log in with the account that holds the normalised form. The rule is
copied here, not imported, so that this migration never changes after release.
"""

import unicodedata

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder
from piccolo.querystring import QueryString

ID = "2026-11-30T10:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "normalise stored emails (NFKC)"


def _normalised(email: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).strip().lower())


async def normalise_emails() -> int:
    """Rewrite every email not in normalised form whose normal form is free; returns how many."""
    engine = engine_finder()
    assert engine is not None
    rows = await engine.run_querystring(QueryString("SELECT id, email FROM app_user ORDER BY id"))
    taken = {row["email"] for row in rows}
    changed = 0
    for row in rows:
        target = _normalised(row["email"])
        if target == row["email"] or target in taken:
            continue
        await engine.run_querystring(QueryString("UPDATE app_user SET email = {} WHERE id = {}", target, row["id"]))
        taken.add(target)
        changed += 1
    return changed


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="taskapi", description=DESCRIPTION)

    async def run():
        await normalise_emails()

    manager.add_raw(run)
    return manager
