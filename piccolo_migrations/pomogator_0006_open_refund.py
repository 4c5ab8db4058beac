"""payments.refund_key*: a refund asked of YooKassa whose answer never came keeps its idempotence key, so running the
refund again cannot make it twice."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import Column
from piccolo.columns.column_types import Numeric, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-27T19:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "The refund each payment has asked of YooKassa without an answer"

COLUMNS: tuple[tuple[str, type[Column], dict[str, Any]], ...] = (
    ("refund_key", Varchar, {"length": 64}),
    ("refund_key_amount", Numeric, {"digits": (12, 2)}),
    ("refund_key_at", Timestamptz, {}),
)


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="pomogator", description=DESCRIPTION)
    for name, column_class, own in COLUMNS:
        manager.add_column(
            table_class_name="Payment",
            tablename="payments",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={
                **own,
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
