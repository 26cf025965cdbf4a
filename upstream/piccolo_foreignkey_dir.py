"""Piccolo: every public attribute access on a ForeignKey column calls dir(), so building a query
that mentions a ForeignKey costs far more CPU than the same query on a plain Integer column.

ForeignKey.__getattribute__ runs `name not in dir(self)` (for LazyTableReference) on each access,
though the reference was resolved long ago. Expected: no dir() call once the reference is
resolved. REPRO_DSN names the server (the queries are only built, never run). Exit status 1: the
bug is present.
"""

import os
import timeit
from typing import Any

import piccolo
from piccolo.columns import ForeignKey, Integer, Varchar, column_types
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

DB = PostgresEngine(config={"dsn": os.environ.get("REPRO_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")})


class Manager(Table, db=DB):
    name = Varchar()


class Band(Table, db=DB):
    name = Varchar()
    manager = ForeignKey(Manager)


class PlainBand(Table, db=DB):
    name = Varchar()
    manager = Integer()


def build(table: Any) -> None:
    query = table.select(table.id, table.name, table.manager).where(table.manager == 1)
    query.querystrings[0].compile_string(engine_type="postgres")  # SQL and arguments, as run


calls = 0


def counting_dir(*args: object) -> list[str]:
    global calls  # noqa: PLW0603
    calls += 1
    return dir(*args)


build(Band)  # the reference is resolved by now
column_types.dir = counting_dir  # the module's dir() calls now count
build(Band)
print(f"building one query on Band (ForeignKey): {calls} dir() calls (expected: 0)")
column_types.__dict__.pop("dir")
for table in (Band, PlainBand):
    seconds = min(timeit.repeat(lambda t=table: build(t), number=200, repeat=3)) / 200
    print(f"building it on {table.__name__}: {seconds * 1e6:.0f} us")
print(f"piccolo {piccolo.__VERSION__}:", "BUG PRESENT" if calls else "FIXED", "(dir() on ForeignKey access)")
raise SystemExit(1 if calls else 0)
