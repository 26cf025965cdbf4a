"""The Piccolo bugs taskapi works around still reproduce (UPSTREAM.md, "Piccolo").

Each script in upstream/ exits 1 while its bug is present and 0 once Piccolo fixes it. When one
of these tests fails, the bug is fixed upstream: remove the workaround named in the message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATABASE_URL

UPSTREAM = Path(__file__).resolve().parent.parent / "upstream"

CASES = [
    (
        "piccolo_transaction_leak.py",
        "4 of 4 leaked",
        "TaskapiTransaction (app/db.py) can go back to Piccolo's PostgresTransaction",
    ),
    (
        "piccolo_unbounded_acquire.py",
        "pool acquire unbounded",
        "TaskapiEngine.acquire's own timeout (app/db.py) can use Piccolo's",
    ),
    (
        "piccolo_foreignkey_dir.py",
        "dir() on ForeignKey access",
        "building a Piccolo query per request costs less; statements are still built once (app/services/query.py)",
    ),
]


@pytest.mark.parametrize(("script", "symptom", "workaround"), CASES, ids=[c[0] for c in CASES])
def test_piccolo_bug_still_reproduces(script: str, symptom: str, workaround: str) -> None:
    result = subprocess.run(
        [sys.executable, str(UPSTREAM / script)],
        env={**os.environ, "REPRO_DSN": DATABASE_URL},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode in (0, 1), output
    assert result.returncode == 1, f"Piccolo fixed what {script} reproduces: {workaround}.\n{output}"
    assert "BUG PRESENT" in result.stdout, output
    assert symptom in result.stdout, output
