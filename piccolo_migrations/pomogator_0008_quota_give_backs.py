"""quota_give_backs: the token of each reservation given back, so that a give-back tried again after a connection
lost in the middle of it (the server may have committed it) cannot take a request back twice."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-28T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "The reservations given back to the daily quotas"

COLUMNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("token", {"length": 32, "primary_key": True, "index": False}),
    ("day", {"length": 10, "primary_key": False, "index": True}),
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    manager.add_table(class_name="QuotaGiveBack", tablename="quota_give_backs", schema=None, columns=None)
    for name, own in COLUMNS:
        manager.add_column(
            table_class_name="QuotaGiveBack",
            tablename="quota_give_backs",
            column_name=name,
            db_column_name=name,
            column_class_name="Varchar",
            column_class=Varchar,
            params={
                **own,
                "default": "",
                "null": False,
                "unique": False,
                "index_method": IndexMethod.btree,
                "choices": None,
                "db_column_name": None,
                "secret": False,
            },
            schema=None,
        )
    return manager
