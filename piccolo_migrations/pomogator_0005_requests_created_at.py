"""llm_requests.created_at indexed: `pomogator usage` reads a period out of a table that gains a row per answer."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz

ID = "2026-11-27T16:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Index the time each model request was made"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.alter_column(
        table_class_name="LLMRequest",
        tablename="llm_requests",
        column_name="created_at",
        db_column_name="created_at",
        params={"index": True},
        old_params={"index": False},
        column_class=Timestamptz,
        old_column_class=Timestamptz,
        schema=None,
    )
    return manager
