"""The one Piccolo engine for taskapi.

With DATABASE_URL set, that server is used. Without it, an embedded PostgreSQL is started (or
reused) in TASKAPI_DATA_DIR (default ``.taskapi/pgdata``), so ``piccolo migrations forwards all``
and ``taskapi serve`` work on a fresh machine with no setup.
"""

from piccolo.conf.apps import AppRegistry

from app.db import make_engine

DB = make_engine()

APP_REGISTRY = AppRegistry(apps=["app.piccolo_app"])
