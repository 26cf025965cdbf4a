"""Who may see and change what: the one place access is decided.

Each function gives a Piccolo condition on a table for the user bound as ``user``, used inside
every statement that reads or writes the table, so the check and the work are one statement.
"""

from __future__ import annotations

from piccolo.custom_types import Combinable

from app.services.query import Param
from app.tables import Task

USER = Param("user")


def tasks_visible() -> Combinable:
    """The tasks ``user`` can read."""
    return Task.owner == USER


def tasks_writable() -> Combinable:
    """The tasks ``user`` can change or delete."""
    return Task.owner == USER
