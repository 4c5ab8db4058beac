"""users.context_cleared_at: an answer that was streaming when its context was cleared is not stored afterwards."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-27T03:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "When a person last cleared their context"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.add_column(
        table_class_name="User",
        tablename="users",
        column_name="context_cleared_at",
        db_column_name="context_cleared_at",
        column_class_name="Timestamptz",
        column_class=Timestamptz,
        params={
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    return manager
