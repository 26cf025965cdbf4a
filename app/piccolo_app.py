"""The one Piccolo app: taskapi's tables and their migrations."""

from piccolo.conf.apps import AppConfig

from app.settings import PROJECT_ROOT
from app.tables import ALL_TABLES

APP_CONFIG = AppConfig(
    app_name="taskapi",
    migrations_folder_path=str(PROJECT_ROOT / "piccolo_migrations"),
    table_classes=ALL_TABLES,
    migration_dependencies=[],
    commands=[],
)
